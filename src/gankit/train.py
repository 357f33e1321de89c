"""One training loop for every model, loss and strategy.

`run_training` resolves the run folder (new or resumed) and hands a `Trainer` the config and the
dataset. The trainer walks the phases a strategy plans for each iteration (`Phase("D")`,
`Phase("G")`), so new strategies and losses plug in without editing the loop. The whole uint8
dataset lives on the training device; a batch is index + scale + flip there, with no DataLoader and
no host sync per step: losses are summed on the device and read only every `log.every` iterations.

Run folder (`runs/<name>/`): config.yaml, metrics.jsonl, tensorboard/, samples/epoch_NNNN.png,
checkpoints/last.pt (+ epoch_NNNN.pt every `log.checkpoint_every` epochs), generator.safetensors.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import gc
import itertools
import math
import os
import shlex
import shutil
import signal
import time
from pathlib import Path

import torch
import yaml

from gankit import console, distributed, runlock, threads
from gankit.checkpoint import (BEST, NUMBERED, delete_numbered, disk_reserve, load_generator, load_latest_checkpoint, numbered_path,
                               prune_numbered, remove_leftovers, room_for_numbered, save_checkpoint, save_generator)
from gankit.config import (CHANGES_KID, CONDITIONAL_ARCHS, CONDITIONAL_ONLY, FILLED_FOR_THE_MACHINE, MEASURING, Config,
                           build_config, check_conditioning, d_is_per_sample, filled_in, flatten, given_keys, incompatible_changes,
                           check_device_name, merged, recipe_line, refuse_ignored, save_yaml, to_dict, unset_keys,
                           warn_settings, with_older_defaults)
from gankit.device import deterministic_kept, set_deterministic, autocast, memory_format, resolve_device, resolve_precision
from gankit.errors import ConfigError, Interrupted, RunError
from gankit.layout import CHECKPOINTS_DIR, CONFIG_FILE, GENERATOR_FILE, METRICS_FILE, SAMPLES_DIR, epoch_digits, epoch_file
from gankit.data import BUILTIN_PREFIX, flips_by_default, is_builtin, is_missing, is_relative, label_file_missing
from gankit.data.augment import AdaptiveP, DiffAugment
from gankit.losses import accuracy, aux_loss, aux_stats, build_loss, clip_weights, gradient_penalty
from gankit.models import build_discriminator, build_generator, sample_z
from gankit.models.layers import use_gemm_wgrad, use_thin_conv
from gankit.runlog import NullLog, RunLog, read_metrics
from gankit.strategies import Phase, build_strategy, lr_factor
from gankit.tricks import NoisyLabels, add_instance_noise, ema_sampler, instance_noise_std, make_ema, top_k, topk_count

# Defaults of a run on the built-in MNIST digits (`gankit train` with no arguments): half-width DCGAN
# and 30 epochs, so the first run finishes in 2-3 minutes on a 2-core CPU with readable digits (README).
BUILTIN_DEFAULTS = {"model": {"ngf": 32, "ndf": 32}, "train": {"epochs": 30}}

# NaN/Inf rollbacks allowed in one run before it stops for good.
MAX_ROLLBACKS = 5
TUNED_PHASES_MAX = 10  # iterations of more D/G phases are timed for the thread tuner phase by phase (`Trainer._tuned`)

# Most columns (noise vectors) of a conditional run's per-epoch grid, one row per class.
LABEL_GRID_COLUMNS = 8
# What is written at epoch ends (the sample grid, last.pt + generator.safetensors, numbered checkpoints, plots) is
# each held to `log.write_share` of the run's time by `_Paced`: every epoch on long epochs, every few on short ones.
# Plots redrawn every epoch took 0.3 s of the default run's 4.6 s epochs on two Zen 3 cores (6%); a DCGAN-64
# checkpoint (76 MB, fsync'd) 0.27 s and its grid 0.24 s (0.1 s of it the forward on a CPU) of host time (README).
EPOCH_END_WRITINGS = ("samples", "checkpoint", "numbered", "plots")
GIF_AND_PLOTS = "evolution.gif and plots to make again"  # what `Trainer.write_pictures` writes, as `_say_unmended` names it


class _Paced:
    """One kind of epoch-end writing held to `share` of the run's time: due once the time since it was last done is
    at least its last duration / share. The first doing's duration (imports, warm-up) is not counted, so the second
    comes at the next epoch end. Share 0: always due."""

    def __init__(self, share: float):
        self.share = share
        self.done_at = -math.inf  # never done yet
        self.cost = 0.0

    def due(self) -> bool:
        return self.share <= 0 or time.perf_counter() - self.done_at >= self.cost / self.share

    @contextlib.contextmanager
    def timed(self):
        start, first = time.perf_counter(), self.done_at == -math.inf
        yield
        self.done_at = time.perf_counter()
        if not first:
            self.cost = self.done_at - start


# --------------------------------------------------------------------------- run folder and config


def resolution_of(cfg: Config) -> int:
    """data.resolution, or its default: 32 px for a built-in dataset, 64 for a folder."""
    return cfg.data.resolution or (32 if is_builtin(cfg.data.path) else 64)


# The most bytes of a dataset's name that a default run folder's name takes.
RUN_NAME_DATA_BYTES = 150


def default_run_dir(cfg: Config) -> Path:
    """runs/<name>, or runs/<dataset>_<res>px_<arch> for a run without a name."""
    from gankit.data.archive import archive_stem, is_archive

    path = cfg.data.path
    if is_builtin(path):
        data = path[len(BUILTIN_PREFIX):] if path else "mnist"
    else:
        data = archive_stem(path) if is_archive(path) else Path(path).name
    # a dataset folder whose name is not UTF-8 gives a run name that is (plots, TensorBoard and pages need one), and
    # a long one (250 bytes: 84 Japanese characters) one that a file system takes (255 bytes a name, with `-N`)
    data = console.printable(data, "_").encode()[:RUN_NAME_DATA_BYTES].decode("utf-8", "ignore")
    if cfg.name:
        return Path("runs") / cfg.name
    tail = f"_{resolution_of(cfg)}px_{cfg.model.arch}"
    shown = data.lstrip(".") or "data"  # a hidden data folder (`.hidroot`) must not give a hidden run folder,
    older = Path("runs") / f"{data}{tail}"  # but one made so before goes on where it is
    return older if shown != data and older.is_dir() else Path("runs") / f"{shown}{tail}"


def check_recipe_data(recipe: Path, layers: list[dict]) -> None:
    """A ConfigError when the --config file `recipe` (`layers[0]`) names its dataset by a relative data.path that no
    later layer replaces, that is not there from the current folder (from which it is read, as --data is) and is from
    the file's own folder: the user wrote it from there."""
    path = (layers[0].get("data") or {}).get("path")
    if not is_relative(path) or not is_missing(path) or merged(*layers).data.path != path:
        return
    beside = os.path.normpath(recipe.parent / os.path.expanduser(path))
    if not is_missing(beside):
        raise ConfigError(f"data.path '{path}' in config file '{recipe}' is read from the current folder, where it is not: "
                          f"from the file's folder it names '{beside}', so write that (or an absolute path) in the file, "
                          f"or pass --data {shlex.quote(beside)}")


def _absolute_data_paths(layers: list[dict], run_data: str | None = None) -> list[dict]:
    """The layers with a local data.path made absolute (from the current folder), so that the saved run resumes and
    evaluates from any folder, and `--data ./x` and `--data x` name the same dataset. So is a data.labels file that
    exists from the current folder, unless the data folder or archive holds one of that relative path, which the
    dataset reader takes first; one that exists nowhere is a path inside the dataset (e.g. `types.csv` of an archive). The data
    folder is the layers' own, else `run_data` (a resumed run's): without either (a resume not yet resolved) a
    relative data.labels is left as it is, for `resolve_config` to make absolute from the run's."""
    paths = [run_data] + [(layer.get("data") or {}).get("path") for layer in layers]
    root = next((os.path.expanduser(p) for p in reversed(paths) if isinstance(p, str) and not is_builtin(p)), None)
    out = []
    for layer in layers:
        data = dict(layer.get("data") or {})
        path, labels = data.get("path"), data.get("labels")
        if isinstance(path, str) and not is_builtin(path):
            data["path"] = os.path.abspath(os.path.expanduser(path))
        if (isinstance(labels, str) and labels != "folders" and os.path.isfile(os.path.expanduser(labels))
                and root is not None and not _in_dataset(labels, root, layers)):  # (the dataset's own file comes first)
            data["labels"] = os.path.abspath(os.path.expanduser(labels))
        out.append({**layer, "data": data} if "data" in layer else layer)
    return out


def _in_dataset(labels: str, root: str, layers: list[dict]) -> bool:
    """Whether the data folder or archive `root` holds the file a relative data.labels names (the dataset reader's
    first choice). An archive is extracted for it, as the reader extracts it next (once, into the layers' cache)."""
    from gankit.data.archive import extract_archive, is_archive

    if is_archive(root) and not os.path.isabs(os.path.expanduser(labels)):
        def setting(section: str, key: str):
            return next((layer[section][key] for layer in reversed(layers)
                         if isinstance(layer.get(section), dict) and layer[section].get(key) is not None), None)

        root = str(extract_archive(root, cache_dir=setting("data", "cache_dir"),
                                   progress=setting("log", "progress") is not False))
    return _in_data_folder(labels, root) is not None


def _label_file(labels: str | None, data_path: str | None) -> str | None:
    """The file a data.labels names, as the dataset reader finds it: a relative path inside the data folder first, else
    from the current folder, absolute; anything else ("folders", a path inside an archive, a file that is not there) as
    it is. `--labels types.csv` and `--labels DIR/types.csv` name the same file of folder DIR."""
    if not isinstance(labels, str) or labels == "folders":
        return labels
    path = _in_data_folder(labels, data_path) or os.path.expanduser(labels)
    return os.path.realpath(path) if os.path.isfile(path) else labels


def _in_data_folder(labels: str, data_path: str | None) -> str | None:
    """The data folder's file that a relative data.labels names, where the folder holds one (the dataset reader's first
    choice, before the current folder's), else None."""
    path = os.path.expanduser(labels)
    if os.path.isabs(path) or not isinstance(data_path, str) or not os.path.isdir(data_path):
        return None
    inside = os.path.join(data_path, path)
    return inside if os.path.isfile(inside) else None


def _labels_moved_with_the_data(saved: Config, cfg: Config) -> str | None:
    """A resumed run's label file when its data folder moved (`--data NEW_PLACE`) and the file was inside it: the
    same file in the new place, else None (the saved path still holds, or the user gave another)."""
    labels = saved.data.labels
    if (cfg.data.path == saved.data.path or cfg.data.labels != labels or not labels or labels == "folders"
            or not os.path.isabs(labels) or os.path.isfile(labels)):
        return None
    try:
        inside = Path(labels).relative_to(saved.data.path)
    except ValueError:
        return None
    return str(Path(cfg.data.path) / inside)


def _data_defaults(layers: list[dict]) -> dict:
    """Defaults that follow from the data, below every user layer: the built-in MNIST's smaller model and
    shorter run; a conditional model (ACGAN) when labels are given and no layer names an architecture."""
    probe = merged(*layers)  # (checked as a whole once on top of the defaults, or of a resumed run's config)
    base = copy.deepcopy(BUILTIN_DEFAULTS) if is_builtin(probe.data.path) else {}
    if probe.data.labels and not any((layer.get("model") or {}).get("arch") for layer in layers):
        base.setdefault("model", {})["arch"] = "acgan"
    return base


def _default_run(layers: list[dict], base: dict) -> tuple[Path, Config, bool]:
    """The run folder when none is given: runs/<dataset>_<res>px_<arch>, resumed if it holds a run of this config,
    else the first of <that>-2, -3, ... that does (resumed) or does not exist yet (new), so that two recipes on one
    dataset never fight over one folder. Returns (folder, config, resuming)."""
    first = default_run_dir(build_config(base, *layers))
    for i in itertools.count(1):
        path = first if i == 1 else first.with_name(f"{first.name}-{i}")
        try:
            cfg, resuming = resolve_config(layers, path, base)
        except RunError:  # a run of another config (or not gankit's) is there
            continue
        if i > 1 and not resuming:
            console.info(f"'{first}' holds a run of another config: this one goes to '{path}' (or pass {distributed.run_option()} DIR)")
        return path, cfg, resuming
    raise AssertionError("unreachable")


def _run_named_like(run_dir: Path, cutoff: float = 0.8) -> Path | None:
    """A run folder beside a new `run_dir` whose name is close to its name (a --run typed wrong), if any: `cutoff`
    is difflib's least similarity (a new run for `train` needs a close name to be asked about)."""
    import difflib

    if run_dir.exists():
        return None
    try:
        runs = [p.name for p in run_dir.parent.iterdir() if (p / CONFIG_FILE).is_file()]
    except OSError:
        return None
    digits = str.maketrans("", "", "0123456789")
    runs = [r for r in runs if r.translate(digits) != run_dir.name.translate(digits)]  # numbered runs are on purpose
    close = difflib.get_close_matches(run_dir.name, runs, n=1, cutoff=cutoff)
    return run_dir.parent / close[0] if close else None


def missing_run(run_dir: Path) -> RunError:
    """The error for a run folder given that does not exist, naming a run beside it with a close name (a typo)."""
    near = _run_named_like(run_dir, cutoff=0.6)  # nothing else is meant: two letters swapped in 'try1' (0.75) are named
    fix = f"did you mean '{near}'?" if near else "pass a folder made by `gankit train`"
    return RunError(f"run folder '{run_dir}' does not exist: {fix}")


def _same_folder(folder: Path, data_path: str | None) -> bool:
    """Whether a data.path names `folder` (which may not exist yet), through links too."""
    if not isinstance(data_path, str) or is_builtin(data_path):
        return False
    try:
        return os.path.samefile(folder, data_path)
    except OSError:  # (one of them is not there yet)
        return os.path.realpath(folder) == os.path.realpath(data_path)


def _resolve_run(layers: list[dict], run_dir: str | Path | None, base: dict,
                 launch_device: torch.device) -> tuple[Path, Config, bool]:
    """(run folder, config, resuming) for these overrides: --run's folder, else the default one (`_default_run`).
    `launch_device` is the command line's own device, which chose torchrun's backend: a resumed run whose saved
    device needs another one is refused."""
    if run_dir:
        run_path = Path(run_dir)
        cfg, resuming = resolve_config(layers, run_path, base)
        near = None if resuming else _run_named_like(run_path)
        if near is not None and _would_resume(layers, near, base):  # not a sibling run of another recipe
            console.info(f"'{run_path}' is a new run folder; '{near}' holds a run: pass {distributed.run_option()} {near} to resume that one")
    else:
        run_path, cfg, resuming = _default_run(layers, base)
    if _same_folder(run_path, cfg.data.path):
        raise RunError(f"the run folder '{run_path}' is the data folder: its sample grids and plots would become training "
                       f"images there: pass another {distributed.run_option()} folder (e.g. runs/NAME)")
    if not resuming:
        _refuse_a_folder_of_runs(run_path)
    if resuming:
        _check_resumed_data(run_path, cfg)
        _say_measuring_changes(run_path, cfg)
        _say_device_kept(run_path, cfg, layers)
    if distributed.world_size() > 1 and resolve_device(cfg.train.device).type != launch_device.type:
        raise RunError(f"run '{run_path}' trains on device {cfg.train.device} (its config.yaml): give every process "
                       f"--device {cfg.train.device} to resume it under torchrun")
    return run_path, cfg, resuming


def _say_device_kept(run_path: Path, cfg: Config, layers: list[dict]) -> None:
    """A resume without --device trains on the device its run was started with (--device cpu: the user's choice); a
    line says so where a GPU the run does not use is available here, and how to move the run to it."""
    from gankit.device import mps_is_available

    saved = cfg.train.device
    if saved == "auto" or "train.device" in given_keys(layers):
        return
    other = "cuda" if torch.cuda.is_available() else "mps" if mps_is_available() else None
    if other is not None and not saved.startswith(other):
        console.info(f"run '{run_path}' trains on {saved} as it was started (--device {saved}), though a GPU is "
                     f"available here: resume it with --device {other} to move it there")


def _refuse_a_folder_of_runs(run_path: Path) -> None:
    """A new run in a folder that holds runs (`--run runs`, meaning to resume one) would write its files among them,
    and `gankit compare runs/*` then finds one more half-run: refused, naming them."""
    from gankit.data.folder import runs_held

    held = [d.name for d in runs_held(run_path)]
    if held:
        option = distributed.run_option()
        raise RunError(f"'{run_path}' holds runs ({console.short_list(held)}), it is not one: pass one of them to resume "
                       f"it ({option} {run_path / held[0]}) or a new folder ({option} {run_path / 'NAME'})")


def logged_iteration(run_dir: Path) -> int:
    """The last iteration the run folder's metrics.jsonl logged (0 when none)."""
    return max((r["step"] for r in read_metrics(run_dir / METRICS_FILE) if isinstance(r.get("step"), int)), default=0)


def _check_process_0_holds_the_run(run_path: Path, device: torch.device) -> None:
    """Under torchrun on machines that do not share a disk, the run folder is where process 0 runs: a resume
    whose process 0 landed on another machine would start the run again there. Refused (on every process) when
    any machine's copy of the run folder has logged more iterations than process 0's."""
    if distributed.world_size() == 1:
        return
    own = logged_iteration(run_path)
    furthest = int(distributed.max_over_ranks(own, device))

    def check() -> None:
        if furthest > own:
            raise RunError(f"another machine holds run '{run_path}' at iteration {furthest}, process 0's at {own or 'none'}: "
                           "start process 0 on the machine that holds the run (torchrun --node-rank 0 there, with "
                           "--master-addr naming it), or keep run folders on a disk all machines share")

    distributed.from_main(check)


def _check_same_images(data, device: torch.device) -> None:
    """Under torchrun every machine decodes its own copy of the images: a RunError on every process when the copies
    differ (their number, shape, labels or pixels), which would otherwise train on a mix, or fail on an index."""
    if distributed.world_size() == 1:
        return
    import hashlib

    digest = hashlib.sha256()
    for t in (data.images, data.labels if data.labels is not None else torch.zeros(0)):
        digest.update(memoryview(t.contiguous().numpy()).cast("B"))  # no copy: ~1 s per GB
    fingerprint = [*data.images.shape, int.from_bytes(digest.digest()[:8], "little", signed=True)]
    if not distributed.same_on_all_ranks(fingerprint, device):
        raise RunError(f"the processes' images differ ({console.count(len(data.images), 'image')} at {data.images.shape[-1]}px from "
                       f"'{data.name}' in process 0): every machine needs the same copy of the dataset")


def _saved_config(run_dir: Path) -> tuple[dict, list[str]]:
    """The run's config.yaml as a dict (a key it was written without counting as `with_older_defaults` says), and
    what an older gankit saved as typed and is read here from the current folder, as that gankit read it (a note
    each): a relative data.path, and a relative data.labels that is not inside the dataset, made absolute so that the
    same command resumes the run and config.yaml no longer depends on the folder it is run from."""
    from gankit.data.archive import is_archive

    saved = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(saved, dict):  # an empty (truncated) file is no config of defaults to compare a resume with
        raise ValueError("it is empty" if saved is None else f"it holds a {type(saved).__name__}, not a config's keys")
    saved = with_older_defaults(saved)
    data = saved.get("data")
    if not isinstance(data, dict):
        return saved, []
    notes = []
    path, labels = data.get("path"), data.get("labels")
    if is_relative(path):
        data["path"] = os.path.abspath(os.path.expanduser(path))
        notes.append(f"data.path '{path}' as {data['path']}")
    if (isinstance(labels, str) and labels != "folders" and not os.path.isabs(os.path.expanduser(labels))
            and isinstance(data.get("path"), str) and not is_builtin(data["path"]) and not is_archive(data["path"])
            and not os.path.isfile(os.path.join(data["path"], labels)) and os.path.isfile(labels)):
        data["labels"] = os.path.abspath(labels)
        notes.append(f"data.labels '{labels}' as {data['labels']}")
    return saved, notes


def _check_resumed_data(run_path: Path, cfg: Config) -> None:
    """A resumed run's dataset: a one-line error when it is gone, a line when it is read from a new place."""
    saved_dict, notes = _saved_config(run_path)
    if notes:
        console.info(f"run '{run_path}' names its data relative to the folder it was started from (an older gankit "
                     f"wrote its config.yaml): reading {' and '.join(notes)}; pass --data (and --labels) if that is "
                     "not the run's")
    saved_cfg = build_config(saved_dict, training=False)
    try:  # a combination refused now that an older gankit accepted, and ignored, as the resumed run goes on to
        refuse_ignored(saved_cfg)
    except ConfigError as e:
        console.warn(f"run '{run_path}' holds a setting that has no effect, which the gankit that made it accepted: {e}; "
                     "the run goes on as it was trained")
    saved = saved_cfg.data.path
    if cfg.data.path == saved and is_missing(saved):
        raise RunError(f"run '{run_path}' was trained on '{saved}', which does not exist any more: "
                       "pass --data with its new place to resume it")
    if cfg.data.path != saved and not is_missing(cfg.data.path):  # (a --data that is not there says so itself)
        console.info(f"'{saved}' is gone: resuming on the images in '{cfg.data.path}'")
    if not is_missing(cfg.data.path) and label_file_missing(cfg.data.labels, cfg.data.path):
        raise RunError(f"run '{run_path}' was trained with the labels in '{cfg.data.labels}', which is not there (from "
                       "here): pass --labels with its place to resume it")


def _say_measuring_changes(run_path: Path, cfg: Config) -> list[str]:
    """A warning when a resume changes how the run's FID/KID are measured (config.MEASURING; eval.fake_classes for a
    conditional run only) after it has evaluated, and while it evaluates: its FID curve and best.pt would compare two
    measures. A resume may change eval.* (more images for the rest of a long run is the user's choice), so it is
    said, not refused. Returns the changes said."""
    if cfg.eval.every == 0 or not any(r.get("kind") == "eval" for r in read_metrics(run_path / METRICS_FILE)):
        return []
    saved, now = (flatten(to_dict(c)) for c in (build_config(_saved_config(run_path)[0], training=False), cfg))
    changed = [k for k in MEASURING if saved[k] != now[k]
               and (k not in CONDITIONAL_ONLY or cfg.model.arch in CONDITIONAL_ARCHS)]
    if changed:
        why = [CHANGES_KID[k] for k in changed if k in CHANGES_KID]
        console.warn(f"{'; '.join(f'{k}: {saved[k]!r} -> {now[k]!r}' for k in changed)} "
                     f"{'changes' if len(changed) == 1 else 'change'} how "
                     f"{'FID and KID are' if why else 'FID is'} measured "
                     f"({'; '.join(why) if why else 'FID falls as it sees more images'}) from the run's evaluations "
                     "so far: its FID curve and best.pt (its best FID) would mix two measures; drop the change to keep "
                     "them comparable, or measure its checkpoints afterwards with gankit evaluate")
    return changed


def _would_resume(layers: list[dict], run_dir: Path, base: dict) -> bool:
    """Whether these overrides could resume the run in `run_dir` (its config allows them)."""
    try:
        return resolve_config(layers, run_dir, base)[1]
    except RunError:
        return False


def resolve_config(layers: list[dict], run_dir: Path, base: dict | None = None) -> tuple[Config, bool]:
    """The run's config: saved config.yaml + the user's overrides for a resumed run, else defaults + `base`
    (a dataset's own defaults, below every user layer) + overrides. Returns (config, resuming). A resume shows
    progress unless it is given --no-progress again, whatever the run was started with; it may take its data
    from a new --data folder when the one it was trained on is gone."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists() and not _restore_config(run_dir):
        return build_config(base or {}, *layers), False
    try:
        saved = _saved_config(run_dir)[0]
        if isinstance(saved.get("log"), dict):  # how this invocation shows progress, not a property of the run
            saved["log"].pop("progress", None)
        saved_cfg = build_config(saved, training=False)  # (a setting it ignored, an older gankit accepted: see below)
    except Exception as e:  # noqa: BLE001
        raise RunError(f"'{saved_path}' is not a gankit config ({' '.join(str(e).split())}): mend it, or delete it to have it written again from "
                       f"the run's checkpoint, or use another {distributed.run_option()} folder") from None
    layers = _absolute_data_paths(layers, saved_cfg.data.path)  # a --labels without --data: of the run's data folder
    try:
        cfg = build_config(saved, *layers, training=False)
    except ConfigError:  # a combination that is wrong because an override changes what the run cannot change
        _refuse_changes(run_dir, saved_cfg, merged(saved, *layers))
        raise
    _refuse_changes(run_dir, saved_cfg, cfg)
    return cfg, True


def _refuse_changes(run_dir: Path, saved_cfg: Config, cfg: Config) -> None:
    """A RunError naming the keys that a resume's overrides would change and that the run cannot change. Sets `cfg`'s
    label file to the run's when both name the same file, or when it moved with the data (`_labels_moved_with_the_data`)."""
    if _label_file(cfg.data.labels, cfg.data.path) == _label_file(saved_cfg.data.labels, saved_cfg.data.path):
        cfg.data.labels = saved_cfg.data.labels  # the same file, spelled another way (`types.csv` in the data folder)
    # a dataset folder that moved (or a run continued on another machine): --data says where it is now, and a label
    # file that was inside it moved with it (one that is gone may be given anew with --labels)
    cfg.data.labels = _labels_moved_with_the_data(saved_cfg, cfg) or cfg.data.labels
    moved = ("data.path",) if is_missing(saved_cfg.data.path) else ()
    if label_file_missing(saved_cfg.data.labels, saved_cfg.data.path) or (saved_cfg.data.labels and moved):
        moved += ("data.labels",)
    diffs = incompatible_changes(saved_cfg, cfg, moved)
    if diffs:
        raise RunError(
            f"run folder '{run_dir}' was made with a different config ({_listed(diffs)}): "
            f"pass a new {distributed.run_option()} DIR, or drop those overrides to resume it"
        )


def _listed(diffs: list[str], shown: int = 4) -> str:
    """The first few of `incompatible_changes`' keys, and how many more."""
    return "; ".join(diffs[:shown]) + (f"; and {len(diffs) - shown} more" if len(diffs) > shown else "")


def _restore_config(run_dir: Path) -> bool:
    """A run folder that lost its config.yaml: written again from the config its newest usable checkpoint carries
    (True: it resumes). Without such a checkpoint, one whose log shows training is refused (a new run would
    overwrite that log and its sample grids); any other folder takes a new run (False)."""
    ckpt_dir = run_dir / CHECKPOINTS_DIR
    found = load_latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    if found is None or not isinstance(found[0].get("config"), dict):
        trained = logged_iteration(run_dir)
        if trained > 0:
            raise RunError(f"run '{run_dir}' has trained to iteration {trained} (metrics.jsonl) but its config.yaml is "
                           f"gone and no checkpoint holds one: pass a new {distributed.run_option()} folder, or delete "
                           f"'{run_dir / 'metrics.jsonl'}' to start this one again from iteration 0")
        return False
    path = run_dir / CONFIG_FILE
    try:
        save_yaml(found[0]["config"], path, found[0].get("filled_in", ()))
    except OSError as e:
        raise RunError(f"'{path}' is gone and cannot be written again from {found[1].name} ({e.strerror or e}): "
                       "check the run folder's permissions") from None
    console.info(f"'{path}' was gone: written again from the config in {found[1].name}")
    return True


def machine_defaults(device: torch.device) -> dict:
    """What a run fills in for the machine it trains on where left unset (FILLED_FOR_THE_MACHINE): the CPU kernels
    on a CPU, FID/KID every 10 epochs on a CUDA GPU."""
    cpu = device.type == "cpu"
    return {"train.gemm_wgrad": cpu, "train.thin_conv": cpu, "eval.every": 10 if device.type == "cuda" else 0}


def _unfill_machine_keys(cfg: Config, filled: list[str]) -> dict:
    """The keys of `filled` (what a resumed run filled in for itself) that its machine decided (FILLED_FOR_THE_MACHINE)
    unset again in `cfg`, for `finalize_config` to work them out for the machine it resumes on: the same values on the
    same machine. Returns their values before."""
    before = {}
    for key in filled:
        if key in FILLED_FOR_THE_MACHINE:
            section, name = key.split(".")
            before[key] = getattr(getattr(cfg, section), name)
            setattr(getattr(cfg, section), name, None)
    return before


def _say_machine_keys_changed(run_path: Path, cfg: Config, before: dict) -> None:
    """A line naming what a run resumed on another machine filled in anew for it (`_unfill_machine_keys`), and
    what that means for its FID curve."""
    now = flatten(to_dict(cfg))
    changed = [k for k, v in before.items() if now[k] != v]
    if not changed or not distributed.is_main():
        return
    every = ""
    if "eval.every" in changed:
        every = (f"; it measures FID no more (--set eval.every={before['eval.every']} goes on measuring it)"
                 if not now["eval.every"] else "; its FID curve starts at this resume (--set eval.every=0 keeps FID off)")
    console.info(f"run '{run_path}' resumes on {resolve_device(cfg.train.device)}: what it filled in for the machine it "
                 f"ran on is worked out for this one ({', '.join(f'{k} {before[k]} -> {now[k]}' for k in changed)}){every}")


def finalize_config(cfg: Config, data, resuming: Path | None = None) -> Config:
    """Fill the values that depend on the dataset (so config.yaml is fully resolved); `resuming`: the run folder of a
    resumed run (its dataset may have lost images since; its saved model.channels and num_classes are not the
    user's to be warned about)."""
    cfg.data.resolution = resolution_of(cfg)
    cfg.data.flip = flips_by_default(cfg.data.path) if cfg.data.flip is None else cfg.data.flip
    check_conditioning(cfg, data)
    derived = {"channels": int(data.images.shape[1]),
               "num_classes": len(data.class_names) if cfg.model.arch in CONDITIONAL_ARCHS else 0}
    for key, value in derived.items():
        given = getattr(cfg.model, key)
        # a --set or a recipe that names it: the data decides. Not on a resume, whose value is the one its config.yaml
        # saved (another given one is refused as a config change): a changed label file is said by Trainer._load
        if given not in (None, 0, value) and resuming is None:
            console.warn(f"model.{key} {given} is ignored: it follows from the data ({value} here)")
        setattr(cfg.model, key, value)
    if cfg.train.fuse_d is None:
        cfg.train.fuse_d = d_is_per_sample(cfg) and not cfg.train.d_split
    for key, value in machine_defaults(resolve_device(cfg.train.device)).items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) is None:
            setattr(getattr(cfg, section), name, value)
    if cfg.eval.every:
        from gankit.evaluate import check_feature_memory

        check_feature_memory(cfg.eval.n_fake, "eval.n_fake")

    if cfg.train.batch_size > len(data.images) and resuming is not None:  # the run's batch size cannot change
        raise RunError(f"run '{resuming}' trains batches of {console.count(cfg.train.batch_size, 'image')} but its dataset "
                       f"'{cfg.data.path}' now holds {len(data.images)}: put back the images it was trained on (or pass "
                       f"--data with them), or train a new {distributed.run_option()} folder")
    if cfg.train.batch_size > len(data.images):
        n, unlabelled = len(data.images), getattr(data, "unlabelled", 0)  # (images a label file left out: it said them)
        held = f"{console.count(n, 'labelled image')}: {unlabelled:,} of the {n + unlabelled:,} " \
            f"{'has' if unlabelled == 1 else 'have'} no label" if unlabelled else console.count(n, "image")
        label = ", or give the images without one a label" if n + unlabelled >= cfg.train.batch_size else ""
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is larger than the dataset ({held}): "
                          f"use --batch-size {max(1, n)} or less{label}")
    group, local = cfg.model.d_mbstd_group, distributed.local_batch(cfg.train.batch_size)
    if cfg.train.fuse_d and group > 1 and local % group:
        raise ConfigError(f"model.d_mbstd_group {group} does not divide the {console.count(local, 'image')} each process gives D, so "
                          "one group would mix real and fake images in the fused D forward: use a batch size that "
                          f"is a multiple of {group} per process, another group, or --set train.fuse_d=false")
    return cfg


# --------------------------------------------------------------------------- data on the device


DATASET_SHARE_OF_FREE_GPU_MEMORY = 0.5


def dataset_home(nbytes: int, device: torch.device) -> torch.device:
    """Where the uint8 dataset is kept: on the training device, unless that is a GPU on which it would take more
    than half of the free memory (the models, optimizers and activations need the rest): then in host memory."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes <= free * DATASET_SHARE_OF_FREE_GPU_MEMORY:
        return device
    console.warn(f"the dataset ({nbytes / 2**30:.1f} GiB as uint8) would take more than half of the GPU's free memory "
                 f"({free / 2**30:.1f} GiB): it stays in host memory and each batch is copied to the GPU (slower)")
    return torch.device("cpu")


def _image_classes(data) -> dict[str, str] | None:
    """Each image's class name by its file (relative path or built-in id); None for a dataset without labels."""
    if data.labels is None:
        return None
    return dict(zip(data.files, (data.class_names[i] for i in data.labels.tolist())))


class Batches:
    """The uint8 dataset on the training device (or in host memory when it is too large for the GPU:
    `dataset_home`), served as float batches in [-1, 1] on the device.

    Batch `cursor` (batches consumed since the start) maps deterministically to images: epoch
    e = cursor // steps_per_epoch uses a permutation seeded by (seed, e), so a resumed run needs
    only the cursor to continue with exactly the same batches. `batch_size` is the global batch:
    under DDP every rank draws the whole batch's indices and flips and keeps its own slice.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, flip: bool,
                 seed: int, device: torch.device, fmt: torch.memory_format):
        self.home = dataset_home(images.numel() * images.element_size(), device)
        self.images = images.to(self.home)
        self.labels = labels.to(self.home) if labels is not None else None
        self.batch_size = batch_size
        self.flip = flip
        self.seed = seed
        self.device = device
        self.fmt = fmt
        self.steps_per_epoch = max(1, len(images) // batch_size)
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.images), generator=g).to(self.home)
            self._perm_epoch = epoch
        return self._perm

    def get(self, cursor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, i = divmod(cursor, self.steps_per_epoch)
        idx = distributed.shard(self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size])
        x = self.images[idx].to(self.device, non_blocking=True).float().mul_(2 / 255).sub_(1)
        if self.flip:
            mask = distributed.shard(torch.rand(self.batch_size, 1, 1, 1, device=self.device) < 0.5)
            x = torch.where(mask, x.flip(3), x)
        x = x.contiguous(memory_format=self.fmt)
        return x, (self.labels[idx].to(self.device) if self.labels is not None else None)


# --------------------------------------------------------------------------- the trainer


def build_optimizer(params, lr: float, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=t.rmsprop_alpha, eps=t.eps)
    # fused: one kernel for all parameters (CPU and CUDA); ~4x faster than foreach on CPU (README Performance)
    return torch.optim.Adam(params, lr=lr, betas=(t.beta1, t.beta2), eps=t.eps, fused=True)


#: What a checkpoint must hold to be resumed; the rest of `Trainer.state_dict` (added by later versions) may be
#: missing from an older gankit's checkpoint and then starts as in a new run.
ESSENTIAL_STATE = ("G", "D", "opt_g", "opt_d", "scaler", "iteration", "cursor", "elapsed", "fixed_noise", "rng_cpu")


class Trainer:
    def __init__(self, cfg: Config, data, run_dir: Path, resume: bool = False, filled_in: list[str] | tuple[str, ...] = ()):
        self.cfg = cfg
        self.filled_in = list(filled_in)  # the keys of config.FILLED_FOR_THE_RUN the run filled in (config.yaml says them)
        self.run_dir = Path(run_dir)
        self.device = distributed.local_device(resolve_device(cfg.train.device))
        self.local_batch = distributed.local_batch(cfg.train.batch_size)  # this process's share of each batch
        self.amp_dtype = resolve_precision(cfg.train.precision, self.device)
        self.fmt = memory_format(cfg.train.channels_last, self.device, cfg.train.compile)
        self.class_names = list(data.class_names)
        self.image_classes = _image_classes(data) if cfg.model.num_classes else None
        set_deterministic(cfg.train.deterministic)
        torch.manual_seed(cfg.train.seed)

        # Under torchrun, G and D are DDP-wrapped (gradients averaged over ranks in backward); G_raw/D_raw
        # are the plain modules, for forwards whose gradients are not needed (no_grad, frozen D).
        self.G = distributed.wrap(build_generator(cfg).to(self.device, memory_format=self.fmt), self.device,
                                  cfg.train.sync_batchnorm)
        self.D = distributed.wrap(build_discriminator(cfg).to(self.device, memory_format=self.fmt), self.device,
                                  cfg.train.sync_batchnorm)
        self.G_raw, self.D_raw = distributed.unwrap(self.G), distributed.unwrap(self.D)
        for net in (self.G_raw, self.D_raw):
            use_gemm_wgrad(net, bool(cfg.train.gemm_wgrad))
            use_thin_conv(net, bool(cfg.train.thin_conv))
        self.cuda_graphs = cfg.train.compile and cfg.train.compile_mode != "default" and self.device.type == "cuda"
        if cfg.train.compile:
            self.G = torch.compile(self.G, mode=cfg.train.compile_mode)
            if cfg.train.loss != "wgan_gp":  # the gradient penalty's double backward cannot run through compiled graphs
                self.D = torch.compile(self.D, mode=cfg.train.compile_mode)
        self.opt_g = build_optimizer(self.G.parameters(), cfg.train.lr_g, cfg)
        self.opt_d = build_optimizer(self.D.parameters(), cfg.train.lr_d, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.loss = build_loss(cfg)
        self.num_classes = cfg.model.num_classes
        self.noisy_labels = NoisyLabels(cfg.train.label_swap, cfg.train.seed)
        t = cfg.train
        self.augment = DiffAugment(t.augment, t.augment_p) if t.augment else None
        self.ada = AdaptiveP(target=t.ada_target, p=t.augment_p) if self.augment and t.ada_target > 0 else None
        self.G_ema = make_ema(self.G_raw, t.ema)
        self._standing: tuple[int, torch.nn.Module] | None = None  # (iteration, EMA G with its own BN statistics)
        self.batches = Batches(data.images, data.labels, cfg.train.batch_size, cfg.data.flip, cfg.train.seed,
                               self.device, self.fmt)
        self.strategy = build_strategy(cfg, self.batches.steps_per_epoch)
        g = torch.Generator().manual_seed(cfg.train.seed + 12345)
        self.fixed_noise = sample_z(cfg.log.n_samples, cfg, "cpu", generator=g)

        self.iteration = 0  # strategy iterations done
        self.cursor = 0  # real batches consumed
        self.elapsed = 0.0  # training seconds, across resumes
        self.writing_seconds = 0.0  # of this process's loop: grids, evaluations, checkpoints and plots (not training)
        self.eval_seconds = 0.0  # of this process's loop: its FID/KID evaluations
        self._last_eval: tuple[int, float] | None = None  # (iteration, seconds) of this process's latest evaluation
        self.thread_tuner: threads.ThreadTuner | None = None  # the CPU thread count's, while `fit` runs (gankit.threads)
        self.d_updates = 0
        self.g_updates = 0
        self.d_skipped = 0  # gated D steps the strategy refused (monitored)
        self.last_g_loss: float | None = None  # read only for strategies that compare losses
        # Under --deterministic last.pt is written at every epoch end: a NaN rollback goes back to it, and where it
        # goes must not depend on how long the writings took.
        self._paced = {name: _Paced(0 if name == "checkpoint" and t.deterministic else cfg.log.write_share)
                       for name in EPOCH_END_WRITINGS}
        self._paced["eval"] = _Paced(cfg.eval.share)
        self._numbered_held = False  # numbered checkpoints held back by a nearly full disk (warned once)
        self._unmended: list[tuple[str, BaseException | None]] = []  # (what, why) a complete run's folder refused (`_mend`)
        self._grid_epoch = self._saved_iteration = None  # the epoch of the last grid written, the iteration last saved
        self._saved_at = time.perf_counter()  # when last.pt was last written (or this process started)
        self._resumes_from: tuple[Path, int] | None = None  # (checkpoint, its iteration) that a resume would use now
        self.rollbacks = 0  # NaN/Inf rollbacks so far
        self.best_fid = float("inf")
        self.data = data
        self._reset_sums()  # the metrics of the logging interval in progress (restored by a resume)
        self.epoch_values: list[dict] = []  # step lines of the current epoch, averaged into its epoch line
        self._epoch_mark = (0.0, 0, 0.0)  # (elapsed, images, writing_seconds) where the epoch began (`_epoch_rate`)
        self._evaluator = None
        self._interrupted: _InterruptFlag | None = None  # fit's, while it runs

        self.ckpt_dir = self.run_dir / CHECKPOINTS_DIR
        self.epoch_digits = epoch_digits(cfg.train.epochs)  # in grid and numbered checkpoint names (`_widen_epoch_names`)
        resumed = False
        self._trained_config: dict | None = None  # the config of the checkpoint resumed from (`_log_config`)
        # last.pt, else the newest good one; read by rank 0 and sent to the others (they may not share its disk)
        found = distributed.from_main(self._checkpoint_to_resume) if resume else None
        if found is not None:
            self._refuse_edited_config(found[0].get("config"))
            self._trained_config = found[0].get("config")
            self._load(found[0])
            self._resumes_from = (found[1], self.iteration)
            resumed = True
            saved = found[0].get("config", {}).get("train", {})  # for `lr_rescheduled`
            self._budget_was = tuple(saved.get(k) for k in ("epochs", "max_steps", "minutes"))
            self._lr_factor_was = self.opt_g.param_groups[0]["lr"] / cfg.train.lr_g  # as last scheduled
        self.resumed = resumed
        self._run_existed = resume  # a run folder (config.yaml) that may hold a kill's unfinished writes
        # resumed from an older checkpoint, last.pt being damaged: the next save replaces it instead of keeping it as
        # last.prev.pt over the good one
        self._last_damaged = found is not None and found[1].name != "last.pt" and (self.ckpt_dir / "last.pt").exists()
        self.log = (RunLog(self.run_dir, self.iteration if resumed else None, cfg.log.tensorboard)
                    if distributed.is_main() and not self._complete_as_it_is() else NullLog())

    def _complete_as_it_is(self) -> bool:
        """A resumed run with nothing left to train or evaluate: its log is not opened (to be rewritten as it is, and
        a new TensorBoard event file made), so that saying it is complete writes nothing (its folder may be
        read-only)."""
        return self.resumed and self.progress() >= 1.0 and not self._final_evaluation_left_out()

    def _log_config(self) -> None:
        """config.yaml and the recipe line into TensorBoard (`RunLog.config`): at a new run's start (step 0); on
        resume only where the config differs from its checkpoint's, at the first iteration trained with it, which a
        resume from that checkpoint again hides (purged with what came after it): never twice at one step."""
        if self.resumed and self._trained_config == to_dict(self.cfg):
            return
        self.log.config((self.run_dir / CONFIG_FILE).read_text(encoding="utf-8"), recipe_line(self.cfg),
                        self.iteration + 1 if self.resumed else 0)

    def say_if_g_steps_span_epochs(self) -> None:
        """One line where a small dataset's epoch has fewer batches than one G step's critic batches: epochs end
        inside G steps, and the run ends after the one that finishes its epochs, past them (a step is not cut)."""
        t, spe = self.cfg.train, self.batches.steps_per_epoch
        per_g = max(t.n_critic, t.critic_boost) if t.strategy == "critic" else 1
        if per_g > spe:
            console.info(f"one G step takes up to {per_g} critic batches and an epoch has {spe} batch{'' if spe == 1 else 'es'}:"
                         " epochs end inside G steps, so the run ends after the G step that finishes its epochs "
                         "(a step line carries the epoch its last batch is in)")

    def say_if_grid_leaves_out_classes(self) -> None:
        """One line where a conditional run's `log.n_samples` is below its classes: the sample grids show the first
        `log.n_samples` classes (`write_samples`), and the others never appear in them (17 Pokemon types at
        log.n_samples=16 left 'water' out, unsaid)."""
        n, classes = self.cfg.log.n_samples, self.class_names if self.num_classes else []
        if n >= len(classes):
            return
        left_out = console.short_list([f"'{console.printable(c)}'" for c in classes[n:]])
        console.warn(f"the sample grids show the first {n} of the {len(classes)} classes, not {left_out}: "
                     f"--set log.n_samples={len(classes)} (or a multiple, up to {LABEL_GRID_COLUMNS * len(classes)}) "
                     "shows every class")

    def _checkpoint_to_resume(self) -> tuple[dict, Path] | None:
        """(state, path) of the checkpoint a resume continues from; None, or RunError where a log shows training
        (`_refuse_restart_over_a_log`), when there is none."""
        found = load_latest_checkpoint(self.ckpt_dir)
        if found is None:
            self._refuse_restart_over_a_log()
        return found

    def _refuse_restart_over_a_log(self) -> None:
        """A run folder whose checkpoints are gone but whose log shows training would restart at iteration 0
        and overwrite that log and its sample grids: refused, so that nothing is lost without being asked."""
        trained = logged_iteration(self.run_dir)
        if trained > 0:
            raise RunError(f"run '{self.run_dir}' has trained to iteration {trained} (metrics.jsonl) but has no "
                           f"checkpoint in '{self.ckpt_dir}' to resume from: pass a new {distributed.run_option()} folder, or delete "
                           f"'{self.run_dir / 'metrics.jsonl'}' to start this one again from iteration 0")

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {
            "format": 1,
            "G": self.G_raw.state_dict(),
            "D": self.D_raw.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "noisy_labels": self.noisy_labels.state_dict(),
            "ada": self.ada.state_dict() if self.ada else None,
            "G_ema": self.G_ema.state_dict() if self.G_ema else None,
            "last_g_loss": self.last_g_loss,
            "d_skipped": self.d_skipped,
            "rollbacks": self.rollbacks,
            "iteration": self.iteration,
            "epoch": self.epoch,  # (derived from the cursor: said by `gankit evaluate --json`, not read on resume)
            "cursor": self.cursor,
            # the metrics of the logging interval and of the epoch in progress: a stop inside them (Ctrl-C, kill -9
            # after a save inside the epoch) resumes to the same lines as a run that went on
            "log_sums": {k: [self.sums[k].tolist(), self.counts[k]] for k in self.sums},
            "epoch_values": [dict(v) for v in self.epoch_values],
            "n_images": len(self.data.images),  # what the cursor's epochs count (a resume may find the dataset changed)
            "elapsed": self.elapsed,
            "d_updates": self.d_updates,
            "g_updates": self.g_updates,
            "fixed_noise": self.fixed_noise,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rng_device": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "rng_mps": torch.mps.get_rng_state() if self.device.type == "mps" else None,  # the Apple GPU's stream
            "class_names": self.class_names,
            "image_classes": self.image_classes,  # each image's class: a label file edited since is said on resume
            "best_fid": self.best_fid,
            "config": to_dict(self.cfg),
            "filled_in": self.filled_in,  # what config.yaml's first line says (written again from here when it is gone)
        }

    def _refuse_edited_config(self, trained: dict | None) -> None:
        """A RunError when config.yaml (checked against the overrides already) differs from the config the checkpoint
        was trained with in what a resume cannot change: an edit by hand would be half applied (a learning rate
        lives on in the optimizer's state). Its data may have moved (`--data NEW_PLACE`); what follows from the data
        (channels, classes) has checks of its own (`_load`)."""
        if not isinstance(trained, dict):
            return
        try:
            trained_cfg = build_config(trained, training=False)
        except ConfigError:  # (an older gankit's keys: nothing to compare with)
            return
        diffs = incompatible_changes(trained_cfg, self.cfg, ("data.path", "data.labels", "model.channels",
                                                             "model.num_classes"))
        if diffs:
            raise RunError(f"'{self.run_dir / CONFIG_FILE}' differs from the config its checkpoint was trained with "
                           f"({_listed(diffs)}), which a resume cannot change: put it back as it was (or delete it: it "
                           f"is written again from the checkpoint), or train a new {distributed.run_option()} folder")

    def _load(self, state: dict) -> None:
        saved = state.get("class_names")  # a changed label file: say so, not "does not match this model" (or nothing)
        if self.cfg.model.num_classes and saved is not None and list(saved) != self.class_names:
            new, gone = [c for c in self.class_names if c not in saved], [c for c in saved if c not in self.class_names]
            changed = "; ".join(f"{what}: {console.short_list(names)}" for what, names in (("new", new), ("gone", gone))
                                if names)  # what to look for in a file of many classes
            raise RunError(f"the run was trained on {len(saved)} classes ({console.short_list(saved)}) but its labels now give "
                           f"{len(self.class_names)} ({changed}) from '{self.cfg.data.labels}': put "
                           f"back the label file it was trained with, or train a new {distributed.run_option()} folder")
        self._labels_changed(state.get("image_classes"))
        lacking = [k for k in ESSENTIAL_STATE if k not in state]
        if lacking:
            raise RunError(f"checkpoint in '{self.ckpt_dir}' lacks {', '.join(lacking)}: it cannot be resumed (gankit "
                           f"sample and evaluate can still use its generator); train a new {distributed.run_option()} folder")
        try:
            self.G_raw.load_state_dict(state["G"])
            self.D_raw.load_state_dict(state["D"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler.load_state_dict(state["scaler"])
            if self.G_ema is not None and state.get("G_ema") is not None:
                self.G_ema.load_state_dict(state["G_ema"])
                self._standing = None
            elif self.G_ema is not None:  # a checkpoint of a run without EMA, or of a gankit before it: start it at G
                self.G_ema.module.load_state_dict(self.G_raw.state_dict())
                self._standing = None
        except (KeyError, RuntimeError, ValueError) as e:
            raise RunError(f"checkpoint in '{self.ckpt_dir}' does not match this model ({str(e).splitlines()[0]}): "
                           f"use a new {distributed.run_option()} folder") from None
        # what older gankits' checkpoints lack starts as in a new run
        if state.get("strategy") is not None:
            self.strategy.load_state_dict(state["strategy"])
        if state.get("noisy_labels") is not None:
            self.noisy_labels.load_state_dict(state["noisy_labels"])
        if self.ada is not None and state.get("ada"):
            self.ada.load_state_dict(state["ada"])
        for k in ("iteration", "cursor", "elapsed", "d_updates", "g_updates", "best_fid", "last_g_loss",
                  "d_skipped", "rollbacks"):
            setattr(self, k, state.get(k, getattr(self, k)))
        self._dataset_changed(state.get("n_images"))
        self._reset_sums()
        for k, (total, count) in (state.get("log_sums") or {}).items():
            self.sums[k], self.counts[k] = torch.tensor(total, dtype=torch.float32, device=self.device), count
        self.epoch_values = [dict(v) for v in state.get("epoch_values") or []]
        self.fixed_noise = state["fixed_noise"]
        n = self.cfg.log.n_samples  # a log.n_samples changed on resume: the first n, or more drawn after them
        if n < len(self.fixed_noise):
            self.fixed_noise = self.fixed_noise[:n]
        elif n > len(self.fixed_noise):
            g = torch.Generator().manual_seed(self.cfg.train.seed + 12345 + len(self.fixed_noise))
            more = sample_z(n - len(self.fixed_noise), self.cfg, "cpu", generator=g)
            self.fixed_noise = torch.cat([self.fixed_noise, more.to(self.fixed_noise.dtype)])
        torch.set_rng_state(state["rng_cpu"])
        if torch.cuda.is_available() and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if self.device.type == "cuda" and state.get("rng_device") is not None:  # every DDP rank continues rank 0's stream
            torch.cuda.set_rng_state(state["rng_device"], self.device)
        if self.device.type == "mps" and state.get("rng_mps") is not None:
            torch.mps.set_rng_state(state["rng_mps"])

    def _dataset_changed(self, saved_images: int | None) -> None:
        """A dataset that gained or lost images since the checkpoint: said in one line, and the position re-counted
        in epochs of the images there now, so that epochs done (and what follows them: schedules, the next grid's
        number, the end) stay where they were instead of jumping (12 -> 4 images made a half-done run complete)."""
        now = len(self.data.images)
        if saved_images is None or saved_images == now:
            return
        old_spe = max(1, saved_images // self.cfg.train.batch_size)
        epochs, within = divmod(self.cursor, old_spe)
        self.cursor = epochs * self.batches.steps_per_epoch + within * self.batches.steps_per_epoch // old_spe
        console.warn(f"the dataset '{self.cfg.data.path}' holds {console.count(now, 'image')}, {saved_images} when this run's "
                     f"checkpoint was written: training goes on with the {console.count(now, 'image')}, its {console.count(epochs, 'epoch')} "
                     "done kept (put back the images it was trained on if that is not what you want)")

    def _labels_changed(self, saved: dict | None) -> None:
        """Images whose class changed since the checkpoint (a label file edited within its classes): said in one line,
        and training goes on with the new labels. Older checkpoints (without `image_classes`) say nothing."""
        if not saved or self.image_classes is None:
            return
        changed = [f for f, c in self.image_classes.items() if saved.get(f, c) != c]
        if changed:
            f = changed[0]
            console.warn(f"{console.count(len(changed), 'image')} of '{self.cfg.data.path}' changed class since this run's "
                         f"checkpoint was written (e.g. '{console.printable(f)}': {saved[f]} -> {self.image_classes[f]}, "
                         f"from '{self.cfg.data.labels}'): training goes on with the new labels (put back the label "
                         "file it was trained with if that is not what you want)")

    def save(self, numbered: bool = False, best: bool = False) -> None:
        if not distributed.is_main():
            return
        state = self.state_dict()
        if best:  # before last.pt, whose best_fid says it is written: a kill or full disk between them repeats the epoch
            save_checkpoint(state, self.ckpt_dir / BEST)
        with self._paced["checkpoint"].timed():
            save_checkpoint(state, self.ckpt_dir / "last.pt", keep_previous=not self._last_damaged)
            self._last_damaged = False
            self._save_generator()
        self._saved_iteration, self._saved_at = self.iteration, time.perf_counter()
        self._resumes_from = (self.ckpt_dir / "last.pt", self.iteration)
        if numbered:
            with self._paced["numbered"].timed():
                self._save_numbered(state)

    def _save_generator(self) -> None:
        save_generator(self.sampler.state_dict(), {**to_dict(self.cfg), "class_names": self.class_names,
                                                   "iteration": self.iteration, "epoch": self.epoch},
                       self.run_dir / GENERATOR_FILE)

    def _generator_behind(self) -> bool:
        """Whether generator.safetensors is missing, unreadable or not of the sampler's weights now (a kill between
        last.pt and it, a resume from an older checkpoint)."""
        try:
            saved, _ = load_generator(self.run_dir / GENERATOR_FILE)
        except RunError:
            return True
        now = self.sampler.state_dict()
        return saved.keys() != now.keys() or not all(torch.equal(saved[k], now[k].detach().cpu()) for k in now)

    def _numbered_epoch(self, epoch: int) -> bool:
        """Whether the end of `epoch` has a numbered checkpoint: every `log.checkpoint_every` epochs, none for 0."""
        every = self.cfg.log.checkpoint_every
        return bool(every) and epoch % every == 0

    def _save_numbered(self, state: dict) -> None:
        """epoch_NNNN.pt of this epoch, where the disk has room for it (`_room_for_numbered`), then the oldest beyond
        log.keep_checkpoints deleted."""
        first = self._room_for_numbered()  # the old ones to delete first to make room
        if first is None:
            return
        if len(delete_numbered(first)) < len(first):  # one open elsewhere on Windows: no room this epoch end
            return
        save_checkpoint(state, numbered_path(self.ckpt_dir, self.epoch, self.epoch_digits))
        prune_numbered(self.ckpt_dir, self.cfg.log.keep_checkpoints)

    def _mend_a_kill(self) -> None:
        """What a kill during a save left behind, mended when the run resumes (process 0): the temporary files of its
        unfinished writes; generator.safetensors, written after last.pt (a kill between them left the weights of the
        save before, which `gankit sample` drew from); the numbered checkpoint of the epoch end resumed from, written
        after both (lost for good: the resume starts after that epoch end). A complete run whose folder refuses them
        (read-only) is still complete: what it could not mend is named in one line (`_say_unmended`)."""
        self._remove_leftovers()
        self._remove_later_grids()
        if self._generator_behind():
            self._mend(f"{GENERATOR_FILE} (behind last.pt)", self._save_generator)
        epoch, spe = self.epoch, self.batches.steps_per_epoch
        if (epoch and self.cursor % spe == 0 and self._numbered_epoch(epoch)
                and not numbered_path(self.ckpt_dir, epoch, self.epoch_digits).exists()):
            self._mend(f"the missing numbered checkpoint of epoch {epoch}", lambda: self._save_numbered(self.state_dict()))

    def _mend(self, what: str, mend) -> bool:
        """`mend()`, one of `_mend_a_kill`'s writes; whether it was done. Where a complete run's folder refuses it
        (`_complete_as_it_is`: read-only, a full disk) `what` is kept for `_say_unmended` instead of failing: the run
        has nothing else to write."""
        try:
            mend()
            return True
        except (RunError, OSError) as e:  # (OSError: a file removed, older numbered ones deleted to make room)
            if not self._complete_as_it_is():
                raise
            self._unmendable(what, e if isinstance(e, OSError) else e.__context__)  # (RunError: from the OSError)
            return False

    def _unmendable(self, what: str, why: BaseException | None) -> None:
        if what not in (known for known, _ in self._unmended):
            self._unmended.append((what, why))

    def _say_unmended(self) -> None:
        """One warning line naming what a complete run's folder kept `_mend_a_kill` from mending, and how to mend it."""
        if not self._unmended:
            return
        why = self._unmended[0][1]
        full = isinstance(why, OSError) and why.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = f" ({why.strerror})" if isinstance(why, OSError) and why.strerror else ""
        console.warn(f"could not mend what a stop left in run '{self.run_dir}'{reason}: "
                     f"{', '.join(what for what, _ in self._unmended)}: "
                     f"{'free some space' if full else 'make the folder writable'} and run the same command again")

    def _remove_leftovers(self) -> None:
        """The temporary files of the writes a kill cut short (`checkpoint.remove_leftovers`), named in one line; those
        a complete run's folder keeps, named by `_say_unmended`."""
        kept: list[OSError] = []
        removed = remove_leftovers(self.run_dir, kept)
        if removed:
            console.info(f"removed {console.count(len(removed), 'unfinished file')} of writes a stop cut short: "
                         f"{console.short_list([p.name for p in removed])}")
        if kept and self._complete_as_it_is():
            self._unmendable(f"{console.count(len(kept), 'unfinished file')} to remove", kept[0])

    def _widen_epoch_names(self) -> None:
        """The grids and numbered checkpoints of a run resumed with a longer budget (`--epochs 20000` after 3,000) renamed
        to its epochs' digits (epoch_0001.png -> epoch_00001.png), so that they sort in epoch order beside those to
        come; names wider than the budget's (a run resumed with a shorter one) keep their width, and so do the new
        ones (`epoch_digits`). Process 0, at the start of `fit`."""
        from gankit.report.runs import GRID_RE

        grids = ((path, GRID_RE.match(path.name)) for path in (self.run_dir / SAMPLES_DIR).glob("epoch_*.png"))
        found = [(path, m[1], f"_batch_{m[2]}.png" if m[2] else ".png") for path, m in grids if m]
        numbered = ((path, NUMBERED.fullmatch(path.name)) for path in self.ckpt_dir.glob("epoch_*.pt"))
        found += [(path, m[1], ".pt") for path, m in numbered if m]
        self.epoch_digits = max([self.epoch_digits] + [len(number) for _, number, _ in found])
        for path, number, rest in found:
            if len(number) < self.epoch_digits:
                path.rename(path.with_name(epoch_file(int(number), rest, self.epoch_digits)))

    def _remove_later_grids(self, gone: str = "resumed from") -> None:
        """The sample grids of a later point than the checkpoint resumed from (the run went on past it, then lost or
        was rid of its later checkpoints; or a kill came between a grid and the save after it) or rolled back to (a
        NaN after epoch ends whose last.pt pacing skipped), removed as metrics.jsonl's later lines are, and
        evolution.gif made again without them: they showed a future that this run no longer has (also in `gankit
        compare`). Training writes them again when it gets there. The grid of the epoch that the checkpoint is inside
        of is kept. `gone` says how the run went back to the checkpoint."""
        from gankit.report.runs import GRID_RE

        spe, later = self.batches.steps_per_epoch, []
        for path in (self.run_dir / SAMPLES_DIR).glob("epoch_*.png"):
            m = GRID_RE.match(path.name)
            if m and (int(m[1]) > self.epoch_of_last_step if m[2] is None else
                      (int(m[1]) - 1) * spe + int(m[2]) > self.cursor):
                later.append(path)

        def remove() -> None:
            for path in later:
                path.unlink(missing_ok=True)

        if later and self._mend(f"{console.count(len(later), 'sample grid')} of later epochs to remove", remove):
            console.info(f"removed {console.count(len(later), 'sample grid')} of epochs after the checkpoint {gone} "
                         f"(iteration {self.iteration})")
            if self.cfg.log.plots:
                self._mend(GIF_AND_PLOTS, self.write_pictures)

    def _room_for_numbered(self) -> list[Path] | None:
        """Whether a numbered checkpoint fits (`checkpoint.room_for_numbered`); None, with one warning per process, while
        the disk has too little room for one beside the next last.pt: a run that fills its disk loses its last.pt."""
        size = (self.ckpt_dir / "last.pt").stat().st_size
        room = room_for_numbered(self.ckpt_dir, size, self.cfg.log.keep_checkpoints)
        if room is None and not self._numbered_held:
            mb = lambda n: f"{n / 2**20:.0f} MB"  # noqa: E731
            fewer = " or keep fewer with --set log.keep_checkpoints=N" if self.cfg.log.keep_checkpoints != 1 else ""
            console.warn(f"the disk of '{self.ckpt_dir}' has {mb(shutil.disk_usage(self.ckpt_dir).free)} free: a "
                         f"numbered checkpoint ({mb(size)}) would leave less than the next last.pt and "
                         f"{mb(disk_reserve(self.ckpt_dir))} spare, so numbered ones are skipped while it does (last.pt "
                         f"goes on); free some space{fewer}")
        self._numbered_held = room is None
        return room

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator used for samples, FID and the shared file: the EMA copy when train.ema > 0, with
        BatchNorm statistics measured on its own outputs (`tricks.standing_stats`, once per iteration) unless
        train.ema_standing_stats is false."""
        if self.G_ema is None:
            return self.G_raw
        if self._standing is None or self._standing[0] != self.iteration:
            with autocast(self.device, self.amp_dtype):
                self._standing = (self.iteration, ema_sampler(self.G_ema.module, self.cfg))
        return self._standing[1]

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self.cursor // self.batches.steps_per_epoch

    @property
    def epochs_done(self) -> float:
        """Epochs trained, fractional: batches consumed over batches per epoch (the `epochs_done` of metrics lines)."""
        return self.cursor / self.batches.steps_per_epoch

    @property
    def epoch_of_last_step(self) -> int:
        """The epoch (counted from 1) the last step belongs to: the one in progress, or the one that just ended."""
        return -(-self.cursor // self.batches.steps_per_epoch)

    # ---------------------------------------------------------------- one iteration

    def _reset_sums(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def _add(self, name: str, value: torch.Tensor) -> None:
        v = value.detach().float()
        self.sums[name] = self.sums[name] + v if name in self.sums else v
        self.counts[name] = self.counts.get(name, 0) + 1

    def _z(self, n: int) -> torch.Tensor:
        """n noise vectors for this process (n = its share, e.g. `self.local_batch`). Under DDP every rank
        draws the noise of all ranks from the same generator and keeps its slice, as `Batches` does."""
        return distributed.per_sample(lambda m: sample_z(m, self.cfg, self.device), n)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        """Classes asked of G for a batch of fakes (uniform), or None for unconditional models."""
        if not self.num_classes:
            return None
        return distributed.per_sample(lambda m: torch.randint(0, self.num_classes, (m,), device=self.device), n)

    def _d_view(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of an image batch: DiffAugment (same family for real and fake), then instance noise."""
        if self.augment is not None:
            if self.ada is not None:
                self.augment.p = self.ada.p
            x = self.augment(x)
        return add_instance_noise(x, self._instance_noise())

    def _instance_noise(self) -> float:
        """Std of the instance noise now: annealed over the epochs done so far (fractional)."""
        t = self.cfg.train
        return instance_noise_std(t.instance_noise, self.cursor / self.batches.steps_per_epoch, t.instance_noise_epochs)

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def _d_phase(self, phase: Phase, keep_fake_for_g: bool):
        """One D update on a fresh real batch. Returns (fake, labels, D's scores of the real batch) for a following
        G phase to reuse, or None when no G phase follows."""
        real, labels = self.batches.get(self.cursor)
        self.cursor += 1
        n = real.shape[0]
        z, y_fake = self._z(n), self._fake_labels(n)
        swap = phase.swap or self.noisy_labels.swap()
        kept = None
        t = self.cfg.train
        with autocast(self.device, self.amp_dtype):
            if keep_fake_for_g:  # the following G phase reuses this forward, as the reference DCGAN step does
                fake_g = self.G(z, y_fake)
                fake = fake_g.detach()
            else:
                with torch.no_grad():
                    fake = self.G(z, y_fake)
            if t.d_split:  # seed 004: an update on the real batch, then one on the fakes (D scores them updated)
                real_out, real_aux = self.D(self._d_view(real))
                loss_real = self.loss.d_side(real_out, True, swap)
                if self.num_classes:
                    loss_real = loss_real + t.aux_weight * aux_loss(real_aux, labels)
                self._d_update(loss_real)
                fake_out, fake_aux = self.D(self._d_view(fake))
                loss_fake = self.loss.d_side(fake_out, False, swap)
                if self.num_classes:
                    loss_fake = loss_fake + t.aux_weight * aux_loss(fake_aux, y_fake)
                self._d_update(loss_fake)
            elif t.fuse_d:  # D scores each image alone: one forward of 2n images instead of two of n
                out, aux = self.D(torch.cat([self._d_view(real), self._d_view(fake)]))
                real_out, fake_out = out.split(n)
                real_aux, fake_aux = aux.split(n) if aux is not None else (None, None)
            else:
                real_out, real_aux = self.D(self._d_view(real))
                fake_out, fake_aux = self.D(self._d_view(fake))
            loss = (loss_real + loss_fake).detach() if t.d_split else self.loss.d_loss(real_out, fake_out, swap=swap)
            if keep_fake_for_g:  # with this real batch's scores, for a relativistic G loss (D before its update)
                kept = (fake_g, y_fake, real_out.detach())
            if self.num_classes and not t.d_split:
                loss = loss + t.aux_weight * (aux_loss(real_aux, labels) + aux_loss(fake_aux, y_fake))
            if t.loss == "wgan_gp":
                gp = gradient_penalty(lambda x: self.D(self._d_view(x))[0], real, fake)
                loss = loss + t.gp_lambda * gp
                self._add("gp", gp)
        self._add("d_loss", loss)
        if phase.gated and not self.strategy.allow_update(float(distributed.mean_over_ranks(loss.detach())),
                                                          self.last_g_loss):
            self.d_skipped += 1
            return kept
        if not t.d_split:
            self._d_update(loss)
        judged_real, judged_fake = self.loss.judged(real_out.detach(), fake_out.detach())
        if self.ada is not None:
            self.ada.observe(judged_real)
        self.d_updates += 1
        if self.loss.wasserstein:
            self._add("wasserstein", real_out.detach().float().mean() - fake_out.detach().float().mean())
        acc_real, acc_fake = accuracy(judged_real, judged_fake)
        self._add("d_acc_real", acc_real)
        self._add("d_acc_fake", acc_fake)
        if self.num_classes:
            acc_r, _ = aux_stats(real_aux, labels)
            acc_f, entropy = aux_stats(fake_aux, y_fake)
            self._add("aux_acc_real", acc_r)
            self._add("aux_acc_fake", acc_f)
            self._add("aux_entropy", entropy)
        return kept

    def _d_update(self, loss: torch.Tensor) -> None:
        """One optimizer step of D on `loss`, then WGAN's weight clipping."""
        self._step(self.opt_d, loss)
        if self.cfg.train.loss == "wgan":
            clip_weights(self.D, self.cfg.train.clip)

    def _g_phase(self, kept) -> None:
        self.D.requires_grad_(False)  # no D weight gradients in the G phase: they would be thrown away
        with autocast(self.device, self.amp_dtype):
            if kept is None:  # fresh noise: a G phase alone, or on g_batch_factor batches of it (seed 004: 2)
                n = self.local_batch * self.cfg.train.g_batch_factor
                y = self._fake_labels(n)
                fake, real_out = self.G(self._z(n), y), None
            else:
                fake, y, real_out = kept
            if self.loss.needs_real_for_g and real_out is None:  # no D phase before: score the next real batch
                with torch.no_grad():
                    real_out = self.D_raw(self._d_view(self.batches.get(self.cursor)[0]))[0]
            out, aux = self.D(self._d_view(fake))
            t = self.cfg.train
            keep = top_k(out, topk_count(out.shape[0], t.topk, t.topk_gamma, self.epoch))
            if keep is not None:  # top-k: the fakes D finds least real give G no gradient
                out, aux, y = out[keep], aux[keep] if aux is not None else None, y[keep] if y is not None else None
            loss = self.loss.g_loss(out, real_out)
            if self.num_classes:
                loss = loss + t.aux_weight * aux_loss(aux, y)
        self._step(self.opt_g, loss)
        self.D.requires_grad_(True)
        if self.G_ema is not None:
            self.G_ema.update_parameters(self.G_raw)
        self.g_updates += 1
        self._add("g_loss", loss)
        if self.strategy.reads_losses:
            self.last_g_loss = float(distributed.mean_over_ranks(loss.detach()))

    def budget_spent(self) -> dict[str, float]:
        """The fraction of each budget the run has, by its flag: --epochs, and --max-steps / --minutes when set."""
        t = self.cfg.train
        parts = {"--epochs": self.cursor / (t.epochs * self.batches.steps_per_epoch)}
        if t.max_steps is not None:
            parts["--max-steps"] = self.iteration / t.max_steps
        if t.minutes is not None:
            parts["--minutes"] = self.elapsed / (60 * t.minutes)
        return parts

    def progress(self) -> float:
        """How far the run is, from 0 to 1: the largest of its budget fractions (the first to run out ends it)."""
        return min(1.0, max(self.budget_spent().values()))

    def _lr_factor(self) -> float:
        """The learning rates' multiplier at this point of the run: train.lr_decay's, x nan_lr_factor per rollback."""
        t = self.cfg.train
        return lr_factor(t.lr_decay, t.lr_decay_start, self.progress()) * t.nan_lr_factor ** self.rollbacks

    def lr_rescheduled(self) -> tuple[float, float] | None:
        """(at the checkpoint, now): the learning rates' multiplier, when this resume gave a decaying schedule
        another budget (--epochs / --max-steps / --minutes) that moves it; else None."""
        t = self.cfg.train
        if not self.resumed or t.lr_decay == "none" or self._budget_was == (t.epochs, t.max_steps, t.minutes):
            return None
        was, now = self._lr_factor_was, self._lr_factor()
        return (was, now) if abs(now - was) >= 0.005 else None

    def _schedule_lr(self) -> None:
        """Both learning rates at this point of the run (`_lr_factor`)."""
        t = self.cfg.train
        if t.lr_decay == "none" and not self.rollbacks:
            return
        factor = self._lr_factor()
        for opt, lr in ((self.opt_g, t.lr_g), (self.opt_d, t.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def train_iteration(self) -> None:
        self._schedule_lr()
        if self.cuda_graphs:  # a new step: the graphs' previous outputs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        phases = self.strategy.plan(self.iteration)
        by_phase = len(phases) > TUNED_PHASES_MAX
        kept = None
        with self._tuned(not by_phase):
            for i, phase in enumerate(phases):
                with self._tuned(by_phase):
                    if phase.net == "D":
                        next_is_g = i + 1 < len(phases) and phases[i + 1].net == "G"
                        kept = self._d_phase(phase, keep_fake_for_g=next_is_g and self.cfg.train.g_batch_factor == 1)
                    else:
                        self._g_phase(kept)
                        kept = None
            self.iteration += 1

    @contextlib.contextmanager
    def _tuned(self, on: bool):
        """Training work the thread tuner (gankit.threads) picks a count for and times, where `on`: an iteration, or
        each phase of a long one (seed 004's bursts of 100 critic batches: the tuner then probes and notices busy
        cores in fractions of a second, not in tens of seconds). Its kind: the batches it took, the D and G updates
        it made (the tuner compares like with like)."""
        tuner = self.thread_tuner
        if tuner is None or not on:
            yield
            return
        tuner.before_iteration()
        before = self.cursor, self.d_updates, self.g_updates
        start = time.perf_counter()
        yield
        kind = (self.cursor - before[0], self.d_updates - before[1], self.g_updates - before[2])
        if said := tuner.after_iteration(time.perf_counter() - start, kind):
            console.info(said)

    # ---------------------------------------------------------------- outputs

    def _read_sums(self) -> dict[str, float]:
        """Mean of each metric since the last read, plus `weights` (sum of all G and D weights, finite or
        not) so NaN/Inf in the weights is caught with the losses: the one host sync per logging interval."""
        if not self.sums:
            return {}
        names = list(self.sums)
        weights = torch.stack([p.detach().float().sum() for p in (*self.G.parameters(), *self.D.parameters())]).sum()
        means = distributed.mean_over_ranks(torch.stack([self.sums[n] / self.counts[n] for n in names] + [weights]))
        values = means.tolist()
        return dict(zip(names + ["weights"], values))

    @torch.no_grad()
    def write_samples(self, epoch: int | None = None, batch: int | None = None) -> Path | None:
        """The fixed-noise grid of this epoch, or of `epoch` (eval mode: BatchNorm uses its running statistics),
        also logged to TensorBoard; rank 0 only. A conditional run's grid has one row per class, named at its left
        (the first `log.n_samples` classes), and the same noise down each column (`log.n_samples` // classes
        columns, 1 to 8); a grid over TRAINING_GRID_SIDE px is saved reduced. With `batch`, a grid inside epoch `epoch`
        after that many of its batches (`log.grids_per_epoch`): written as asked, not held to `log.write_share`."""
        from gankit.report.grids import TRAINING_GRID_SIDE, label_grid, save_grid

        if not distributed.is_main():
            return None
        epoch = self.epoch if epoch is None else epoch
        inside = "" if batch is None else f"_batch_{batch:04d}"
        path = self.run_dir / SAMPLES_DIR / epoch_file(epoch, f"{inside}.png", self.epoch_digits)
        with self._paced["samples"].timed() if batch is None else contextlib.nullcontext():
            if not self.num_classes:
                save_grid(self._generate(self.fixed_noise.to(self.device), None), path, max_side=TRAINING_GRID_SIDE)
            else:
                rows = min(self.num_classes, len(self.fixed_noise))
                k = min(LABEL_GRID_COLUMNS, len(self.fixed_noise) // rows)
                z = self.fixed_noise[:k].repeat(rows, *[1] * (self.fixed_noise.dim() - 1))
                images = self._generate(z.to(self.device), torch.arange(rows, device=self.device).repeat_interleave(k))
                label_grid(images.reshape(rows, k, *images.shape[1:]), self.class_names[:rows], path,  # the classes' names
                           max_side=TRAINING_GRID_SIDE)
            self.log.image("samples", path, self.iteration)  # also in TensorBoard's Images tab, slider by step
        if batch is None:
            self._grid_epoch = epoch
        return path

    def _grids_inside_epoch(self, before: int) -> float:
        """`log.grids_per_epoch` - 1 grids inside each epoch, after batches round(k * batches / N): the ones that the
        batches from cursor `before` to now passed. Returns the seconds they took."""
        n, spe = self.cfg.log.grids_per_epoch, self.batches.steps_per_epoch
        if n <= 1 or not distributed.is_main():
            return 0.0
        started = time.perf_counter()
        for cursor in range(before + 1, self.cursor + 1):
            at = cursor % spe  # batches of its epoch done
            if at and any(round(k * spe / n) == at for k in range(1, n)):
                self.write_samples(cursor // spe + 1, at)
        return time.perf_counter() - started

    @torch.no_grad()
    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Images in [-1, 1] from the sampler in eval mode (BatchNorm uses its running statistics)."""
        G = self.sampler
        was_training = G.training
        G.eval()
        with autocast(self.device, self.amp_dtype):
            images = G(z, labels).float()
        G.train(was_training)
        return images

    # ---------------------------------------------------------------- the loop

    def fit(self, stop_when=None) -> dict:
        """Train until the budget (epochs, max_steps, minutes) is spent. `stop_when`, a callable checked at each
        epoch end after that epoch's checkpoint, ends the run there when it returns True (the sanity test stops
        once G reproduces its target; one process only: under DDP every rank would have to agree)."""
        cfg = self.cfg
        spe = self.batches.steps_per_epoch

        def more() -> bool:  # epochs, max_steps and minutes left (the first of them to run out ends the run)
            return self.progress() < 1.0

        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._mend("the epochs' digits in grid and checkpoint names", self._widen_epoch_names)
            if more() or not self.resumed:  # (a resume with nothing left to train keeps the run's own budget)
                save_yaml(cfg, self.run_dir / CONFIG_FILE, self.filled_in)
                self._log_config()
            if self.resumed:
                self._mend_a_kill()
            elif self._run_existed:  # killed during its first save: no checkpoint, but that save's partial files
                self._remove_leftovers()
        if not more():
            if self._final_evaluation_left_out():  # by a stop during it: this resume does it
                self.save(best=self._maybe_evaluate())
            if cfg.log.plots and distributed.is_main() and self._pictures_behind():  # a stop during the last writes
                self._mend(GIF_AND_PLOTS, self.write_pictures)
            self._say_unmended()
            spent = [flag for flag, fraction in self.budget_spent().items() if fraction >= 1]
            done = self.cursor / spe
            epochs = (f"{done:.4g} of {console.count(cfg.train.epochs, 'epoch')}" if done <= cfg.train.epochs else
                      f"{done:.4g} epochs, more than the {cfg.train.epochs} asked for")
            console.info(f"run '{self.run_dir}' is already complete ({console.count(self.iteration, 'iteration')}, "
                         f"{epochs}, {console.clock(self.elapsed)} in): raise {' and '.join(spent)} to train longer")
            self.log.close()
            return {"iterations": self.iteration, "epochs": self.epoch, "elapsed": self.elapsed}

        t_start = time.perf_counter()
        elapsed_base = self.elapsed

        def own_clock() -> float:
            """This process's training seconds, across resumes: under DDP `self.elapsed` is the agreed clock, behind it
            between the iterations where the processes agree."""
            return elapsed_base + time.perf_counter() - t_start

        # the lines' clock is this process's own (with the agreed one, the line after an epoch end's FID said "0:01
        # in" and "4 img/s")
        progress = _progress(cfg.log.progress, spe, f"{self.run_dir.name}", cfg.train.epochs,
                             lambda: (self.progress(), own_clock(), self._images(), self.writing_seconds))
        last_log_t, last_log_cursor, last_log_writing = time.perf_counter(), self.cursor, self.writing_seconds
        line_clock, line_due = self.elapsed, False  # training time at the last metric line; a line due by time
        self._epoch_mark = (self.elapsed, self._images(), self.writing_seconds)
        progress.reset_epoch(self.epoch, self.cursor % spe)

        def line_rate() -> float:
            """Images per second of training since the last step line (the grids, FID... left out), for the step
            line written now; the next line's count starts here."""
            nonlocal last_log_t, last_log_cursor, last_log_writing
            now = time.perf_counter()
            training = now - last_log_t - (self.writing_seconds - last_log_writing)  # not the grids, FID...
            ips = (self.cursor - last_log_cursor) * cfg.train.batch_size / max(training, 1e-9)
            last_log_t, last_log_cursor, last_log_writing = now, self.cursor, self.writing_seconds
            return ips

        def rolled_back() -> tuple[float, int, float, int]:
            """After a NaN rollback, inside the loop or at the run's last step line: the progress shown and the
            epoch's img/s count from the restored iteration; returns the last line's (time, cursor, writing
            seconds) and the saved iteration, which it is."""
            self._epoch_mark = (own_clock(), self._images(), self.writing_seconds)
            progress.roll_back(self.epoch, self.cursor % spe, self._epoch_mark)
            return time.perf_counter(), self.cursor, self.writing_seconds, self.iteration

        saved_at_iteration = self.iteration  # the last epoch end (or the checkpoint this run starts from) saved it
        threads_before = torch.get_num_threads()
        interrupted = self._interrupted = _InterruptFlag()
        try:  # (from here: the signals are ours until `finally` gives them back, also after a failed first save)
            if not (self.ckpt_dir / "last.pt").exists():
                self.save()  # a run folder always holds a checkpoint to resume or roll back to
            if cfg.train.threads is not None:
                torch.set_num_threads(cfg.train.threads)
            tuner = self.thread_tuner = threads.tuner_for(cfg.train.threads, self.device, cfg.train.deterministic,
                                                          cfg.train.seed)
            while True:
                while more():
                    epoch_before = self.epoch
                    before = self.cursor
                    try:
                        self.train_iteration()  # (and the thread tuner's timing, `_tuned`)
                        clock = own_clock()
                        line = self.iteration % cfg.log.every == 0 or line_due or (
                            distributed.world_size() == 1 and self._line_due(clock - line_clock))
                        if distributed.world_size() == 1:
                            self.elapsed = clock
                        elif line or self.epoch > epoch_before or not more():
                            # DDP: the ranks agree on one clock (the latest) where they write or stop (logging
                            # iterations, epoch ends, the last step: one all-reduce there, no device sync in between),
                            # so that all stop after the same step, decay their rates alike and log the same time
                            self.elapsed = distributed.max_over_ranks(clock, self.device)
                        if line:
                            self._log_step(line_rate(), progress)
                            line_clock, line_due = self.elapsed, False
                        progress.advance(self.cursor - before)
                        self.writing_seconds += self._grids_inside_epoch(before)
                        if self.epoch == epoch_before and more():  # (an epoch's or the run's end saves anyway)
                            self._save_inside_epoch()
                        if self.epoch > epoch_before:
                            rate = line_rate()  # the epoch's step line's: training's, before the epoch end's writings
                            ended = time.perf_counter()
                            if tuner is not None:  # (FID/KID on the count training found best, not a probe's)
                                tuner.settle()
                            self._end_epoch(progress, rate)
                            saved_at_iteration = self.iteration
                            self.writing_seconds += time.perf_counter() - ended  # img/s is training's (lines, metrics)
                            line_clock, line_due = self.elapsed, False
                            if stop_when is not None and stop_when():
                                self._write_skipped()
                                break
                    except _RolledBack:
                        last_log_t, last_log_cursor, last_log_writing, saved_at_iteration = rolled_back()
                    # a stop during a finished run's last writes lets them finish (it is done), unless it left out the
                    # run's final evaluation: then it stops as a stop does, and the resume evaluates
                    if interrupted.stop(self.iteration, own_clock(), self.device) \
                            and (more() or self._final_evaluation_left_out()):
                        raise KeyboardInterrupt
                    if interrupted.agreed is not None and interrupted.agreed[0] == self.iteration:
                        line_due = line_due or self._line_due(interrupted.agreed[1] - line_clock)  # DDP: a clock all
                        # ranks agreed on just now, so that all of them write the line at the next iteration
                # max_steps or minutes ended the run inside an epoch, or after G-only iterations past an epoch's end
                # (a boost strategy's G boost, alternating's G half): iterations no epoch end saved. (An iteration of
                # several batches that ended an epoch and the run, n_critic batches past it, has had its epoch end's
                # writings: no grid of the next epoch, which the run did not reach.)
                if self.iteration != saved_at_iteration:
                    rate = line_rate()  # its step line's, as at an epoch end
                    if tuner is not None:
                        tuner.settle()
                    try:
                        self._end_early(progress, rate)
                    except _RolledBack:
                        last_log_t, last_log_cursor, last_log_writing, saved_at_iteration = rolled_back()
                        continue
                break
            progress.close()
            self.log.close()
            if cfg.log.plots:  # (a stop now lets them finish: the run is done; the signals stay ours until then)
                self.write_pictures()
            self._say_if_evaluations_took_most(time.perf_counter() - t_start)
            self._say_what_came_after_the_minutes()
        except KeyboardInterrupt:
            progress.close()
            if interrupted.forced:  # mid-iteration, perhaps mid-save (checkpoints are renamed into place whole)
                console.info(f"stopped at once; not saved since the last checkpoint ({self.ckpt_dir / 'last.pt'}, kept "
                             f"intact). {self.resume_hint()}")
                raise Interrupted(exit_code=interrupted.exit_code) from None
            finite = self._weights_finite()
            if finite:
                self.save()
            self.log.close()
            if cfg.log.plots:
                self.write_pictures()
            console.info(f"interrupted at iteration {self.iteration}; {self._said_of_the_stop_save(finite)}. "
                         f"{self.resume_hint()}")
            raise Interrupted(exit_code=interrupted.exit_code) from None
        finally:
            interrupted.restore()
            self._interrupted = None
            self.log.close()  # (a failure too: its TensorBoard thread and files are not left to the caller's process)
            torch.set_num_threads(threads_before)
            self.thread_tuner = None  # (train_iteration outside fit, e.g. benchmarks' timed steps, keeps the count)
        return {"iterations": self.iteration, "epochs": self.epoch, "elapsed": self.elapsed}

    def _log_step(self, ips: float | None, progress, epoch: int | None = None) -> None:
        values = self._read_sums()
        self._reset_sums()
        if not values:
            return
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            self._rollback(bad)
        del values["weights"]
        values.update(d_updates=self.d_updates, g_updates=self.g_updates)
        if self.strategy.name == "monitored":
            values["d_skipped"] = self.d_skipped
        if self.ada is not None:
            values["augment_p"] = self.ada.p
        if self.cfg.train.instance_noise > 0:
            values["instance_noise"] = self._instance_noise()
        if self.cfg.train.lr_decay != "none" or self.rollbacks:  # rates that move: in other.png
            values.update(lr_g=self.opt_g.param_groups[0]["lr"], lr_d=self.opt_d.param_groups[0]["lr"])
        if ips is not None:
            values["img_per_s"] = ips
        if self.thread_tuner is not None:  # the count it trains on (other.png shows it beside img/s)
            values["threads"] = self.thread_tuner.current
        self.log.write("step", self.iteration, epoch or self.epoch_of_last_step, self.elapsed, values,
                       epochs_done=self.epochs_done)
        self.epoch_values.append(values)
        if progress is not None:
            progress.postfix(values)

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in (*self.G.parameters(), *self.D.parameters()))

    def _said_of_the_stop_save(self, finite: bool) -> str:
        """What a stop saved: last.pt, or, where the weights were not finite (a NaN that no step line has seen yet),
        nothing, and the checkpoint a resume continues from instead."""
        if finite:
            return f"saved {self.ckpt_dir / 'last.pt'}"
        path, iteration = self._resumes_from or (self.ckpt_dir, None)  # (None on DDP's other processes: they save none)
        return (f"not saved: its weights are not finite (NaN or Inf), so a resume continues from {path} "
                f"(iteration {iteration})")

    def _rollback(self, bad: list[str]) -> None:
        """NaN/Inf seen: go back to the last checkpoint with the learning rates lowered (train.nan_policy
        rollback), or stop (nan_policy stop, or too many rollbacks). Raises _RolledBack to restart the loop."""
        t = self.cfg.train
        what = f"non-finite {', '.join(bad)} at iteration {self.iteration}"
        found = None if t.nan_policy == "stop" or self.rollbacks >= MAX_ROLLBACKS else \
            distributed.from_main(lambda: load_latest_checkpoint(self.ckpt_dir))  # every rank goes back to rank 0's
        if found is None:
            why = "train.nan_policy is stop" if t.nan_policy == "stop" else f"{self.rollbacks} rollbacks already"
            raise RunError(f"{what} ({why}); the last good checkpoint is in {self.ckpt_dir}: lower train.lr_g/lr_d "
                           f"or change the loss, then resume with {distributed.resume_command(self.run_dir)}")
        rollbacks = self.rollbacks + 1
        state, last = found
        self._load(state)
        self._resumes_from = (last, self.iteration)
        self.rollbacks = rollbacks
        if self._grid_epoch is not None and self._grid_epoch > self.epoch:
            self._grid_epoch = None  # an undone epoch's grid (removed below): a stop at its end writes it again
        self._schedule_lr()  # from the configured rates: two rollbacks to the same checkpoint lower them twice
        self.log.rewind(self.iteration)
        lrs = {"lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"]}
        self.log.write("event", self.iteration, self.epoch, self.elapsed,
                       {"rollback": self.rollbacks, **lrs})
        console.warn(f"{what}: rolled back to iteration {self.iteration} ({last}) with learning rates x"
                     f"{t.nan_lr_factor} (lr_g {lrs['lr_g']:.3g}, lr_d {lrs['lr_d']:.3g})")
        if distributed.is_main():
            self._remove_later_grids("rolled back to")
        raise _RolledBack

    def _end_epoch(self, progress, ips: float) -> None:
        """The epoch's step line (img/s `ips`: training's since the last line; none when that line was just written), its
        epoch line, then the epoch end's writings: samples, evaluation, checkpoints, plots."""
        self._log_step(ips, progress, epoch=self.epoch)
        rate = self._epoch_rate()
        if self.epoch_values:
            avg = self._epoch_means()
            if rate is not None:  # the epoch's own, not the mean of its step lines' (nor missing when it has none)
                avg["img_per_s"] = rate
            self.log.write("epoch", self.iteration, self.epoch, self.elapsed, avg)
            progress.epoch_line(self.epoch, avg)
        self.epoch_values = []
        paced, final = self._paced, self.progress() >= 1.0  # the run's last epoch end writes everything
        if final or paced["samples"].due():
            self.write_samples()
        best = self._maybe_evaluate(self.epoch)
        numbered = self._numbered_epoch(self.epoch) and (final or paced["numbered"].due())
        if final or numbered or best or paced["checkpoint"].due():
            self.save(numbered=numbered, best=best)
        if self.cfg.log.plots and not final and paced["plots"].due():  # the run's end draws them (fit)
            self.write_pictures(gif=False)
        if not final:  # no bar for an epoch that will not run
            progress.reset_epoch(self.epoch, 0)
        else:
            progress.close()

    def _line_due(self, since_line: float) -> bool:
        """A metric line by time: `log.every_minutes` of training since the last line, for runs whose `log.every`
        iterations take long (50 iterations at 300 px on a CPU: ~27 minutes); the line is also the NaN check. Not under
        --deterministic, where the lines are at the same iterations in every run."""
        return self._minutes_passed(self.cfg.log.every_minutes, since_line)

    def _minutes_passed(self, minutes: float, seconds: float) -> bool:
        """A timed writing (a metric line by time, a save inside an epoch) is due: `minutes` (> 0) have passed in
        `seconds`, and the run is not --deterministic, where what is written must not depend on timing."""
        return minutes > 0 and not self.cfg.train.deterministic and seconds >= 60 * minutes

    def _save_inside_epoch(self) -> None:
        """A long epoch (a large dataset, large images on a CPU) is not lost whole to a crash (kill -9, a machine
        that dies, the out-of-memory killer): after the first iteration `log.checkpoint_minutes` after the last save,
        last.pt is also written, if `write_share` allows it and the weights are finite (whatever `log.every` is: at
        300 px on a CPU, 50 iterations can take half an hour). Not under --deterministic, where a NaN rollback goes
        back to last.pt and where that is must not depend on timing. Process 0 decides and writes alone (DDP keeps
        the weights the same in every process); the others wait for it at the next collective."""
        since_save = time.perf_counter() - self._saved_at
        if (distributed.is_main() and self._minutes_passed(self.cfg.log.checkpoint_minutes, since_save)
                and self._paced["checkpoint"].due() and self._weights_finite()):
            self.save()

    def _write_skipped(self) -> None:
        """A run that stops at an epoch end that skipped its grid or last.pt (`_Paced`) writes them now."""
        if self._grid_epoch != self.epoch:
            self.write_samples()
        if self._saved_iteration != self.iteration:
            self.save()

    def _images(self) -> int:
        """Real images consumed so far (all processes)."""
        return self.cursor * self.cfg.train.batch_size

    def _epoch_means(self) -> dict[str, float]:
        """The mean of each value over the step lines of the current epoch, with the update counts."""
        rows = self.epoch_values
        keys = sorted({k for r in rows for k in r})
        avg = {k: sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r) for k in keys}
        avg.update(d_updates=self.d_updates, g_updates=self.g_updates)
        return avg

    def _epoch_rate(self) -> float | None:
        """Images per second of training in the epoch that has just ended (in a resumed run's first, since the
        resume), counted as the console's lines count it: the images trained over the training time, the writings at
        epoch ends and inside the epoch left out; None when no training time passed. Starts the next epoch's count."""
        elapsed, images, writing = self._epoch_mark
        self._epoch_mark = (self.elapsed, self._images(), self.writing_seconds)
        training = (self.elapsed - elapsed) - (self.writing_seconds - writing)
        return (self._images() - images) / training if training > 0 else None

    def _end_early(self, progress, ips: float) -> None:
        """The run's budget (train.max_steps or train.minutes) ended it inside an epoch: the unfinished epoch gets
        its step line, sample grid and, with eval on, the run's final FID, like an epoch that ends the run; then
        everything is saved, so a larger budget resumes it where it stopped. `ips`: as `_end_epoch`'s."""
        self._log_step(ips, progress)
        if self.epoch_values:
            progress.epoch_line(self.cursor / self.batches.steps_per_epoch, self._epoch_means())
        self.write_samples(self.epoch_of_last_step)  # epoch_N.png of the unfinished epoch N; its end overwrites it
        self.save(best=self._maybe_evaluate())

    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n fresh images in [-1, 1] from the current generator (eval mode) of classes `labels` when conditional
        (default: random ones)."""
        return self._generate(self._z(n), self._fake_labels(n) if labels is None else labels.to(self.device))

    def _maybe_evaluate(self, epoch: int | None = None) -> bool:
        """FID/KID every `eval.every` epochs, unless sooner than `eval.share` allows (`_Paced`), and at the run's end
        (whichever of epochs, max_steps or minutes ends it, inside an epoch too); True when this is the best FID so
        far."""
        ev = self.cfg.eval
        last = self.progress() >= 1.0
        if not ev.every or (self.epoch % ev.every and not last) or not distributed.is_main():
            return False
        if not last and not self._paced["eval"].due():
            return False
        if self._stop_requested():  # under DDP the processes train on to the iteration they agree to stop after: the
            return False  # epoch ends before it would each load Inception again only to leave the evaluation out
        from gankit.metrics import Abandoned

        try:
            with self._paced["eval"].timed(), distributed.machine_threads(self.device):
                return self._evaluate(epoch or self.epoch_of_last_step)
        except Abandoned:  # told to stop: the checkpoint comes first (the next evaluation is a resume's)
            console.info(f"epoch {epoch or self.epoch_of_last_step}: FID/KID left out, stopping")
            return False

    def _say_if_evaluations_took_most(self, seconds: float) -> None:
        """A run of a minute or more whose FID/KID evaluations took most of its `seconds` (a short run on a CPU, where
        the first one also computes the real images' Inception features) says so, and what shortens them."""
        ev = self.cfg.eval
        if distributed.is_main() and seconds >= 60 and self.eval_seconds > seconds / 2:
            console.info(f"FID/KID took {console.clock(self.eval_seconds)} of this run's {console.clock(seconds)}: for "
                         f"quicker runs evaluate less often (now eval.every {ev.every}) or fewer images (eval.n_fake "
                         f"{ev.n_fake}), or train with --set eval.every=0 and run `gankit evaluate` afterwards")

    def _say_what_came_after_the_minutes(self) -> None:
        """A run that --minutes ended and then evaluated says how long it trained and how long that final FID/KID took:
        it comes after the budget, so a `--minutes 30` run takes longer than 30 minutes."""
        t = self.cfg.train
        if (not distributed.is_main() or t.minutes is None or self.budget_spent()["--minutes"] < 1
                or self._last_eval is None or self._last_eval[0] != self.iteration):
            return
        console.info(f"trained for {console.clock(self.elapsed)} (--minutes {t.minutes:g}, evaluations and writing "
                     f"included); the final FID/KID after it took {console.clock(self._last_eval[1])} more")

    def _final_evaluation_left_out(self) -> bool:
        """A complete run with evaluations on whose metrics.jsonl has no FID/KID of its last iteration."""
        if not self.cfg.eval.every or not distributed.is_main():
            return False
        return not any(r.get("kind") == "eval" and r.get("step") == self.iteration
                       for r in read_metrics(self.run_dir / METRICS_FILE))

    def _stop_requested(self) -> bool:
        return self._interrupted is not None and self._interrupted.hit

    def _evaluate(self, epoch: int) -> bool:
        """FID/KID of the sampler now, logged as a `kind: eval` line of `epoch` (an epoch end's: the epoch it ended,
        though a G step of n_critic batches may have reached into the next; else the unfinished epoch the last step
        is in); True when it is the best FID so far."""
        ev = self.cfg.eval
        started = time.perf_counter()  # the first one's duration includes loading Inception and the real features
        from gankit.evaluate import Evaluator, drawing, run_fake_classes

        if self._evaluator is None:
            self._evaluator = Evaluator(self.data, self.device, ev.n_real, ev.inception_weights, self.cfg.log.progress,
                                        cache_dir=self.cfg.data.cache_dir, stop=self._stop_requested)
        rng = torch.get_rng_state()  # evaluation noise must not change the training's random stream
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        mps_rng = torch.mps.get_rng_state() if self.device.type == "mps" else None  # (torch.manual_seed seeds it too)
        torch.manual_seed(self.cfg.train.seed + 7919 * epoch)
        classes = run_fake_classes(ev.fake_classes, self.num_classes, ev.n_fake, self.data.labels, ev.n_real)
        try:
            result = self._evaluator(drawing(classes, lambda k, start, labels: self.generate(k, labels)), ev.n_fake)
        finally:  # also when abandoned (a stop): the checkpoint that follows saves the training's stream
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            if mps_rng is not None:
                torch.mps.set_rng_state(mps_rng)
        values = {k: result[k] for k in ("fid", "kid_mean", "kid_std", "n_fake", "n_real")}
        # how long it took (the line's time is the training clock before it): the report tells training from evaluating
        values["eval_seconds"] = round(time.perf_counter() - started, 3)
        self.eval_seconds += values["eval_seconds"]
        self._last_eval = (self.iteration, values["eval_seconds"])
        self.log.write("eval", self.iteration, epoch, self.elapsed, values, epochs_done=self.epochs_done)
        better = result["fid"] < self.best_fid
        if better:
            self.best_fid = result["fid"]
        unfinished = "" if epoch == self.epoch else f" (unfinished, iteration {self.iteration})"
        from gankit.config import kid_spread_is_none

        spread = "" if kid_spread_is_none(result["n_fake"], result["n_real"]) else f" ± {result['kid_std']:.4f}"
        console.info(f"epoch {epoch}{unfinished}: FID {result['fid']:.2f}, KID {result['kid_mean']:.4f}{spread}"
                     + (" (best so far)" if better else ""))
        return better

    def resume_hint(self) -> str:
        """How to go on after a stop: the command that resumes the run (`gankit sanity` sets its own: a sanity run
        trains on copies held in memory, so it starts over)."""
        return f"Resume with: {distributed.resume_command(self.run_dir)}"

    def _pictures_behind(self) -> bool:
        """Whether evolution.gif is missing or older than the last sample grid (the run stopped while writing them)."""
        from gankit.report.gif import gif_behind

        return gif_behind(self.run_dir)

    def write_pictures(self, gif: bool = True) -> None:
        """plots/*.png from metrics.jsonl, and evolution.gif from the per-epoch grids."""
        from gankit.report import write_evolution_gif, write_plots

        if not distributed.is_main():
            return
        with self._paced["plots"].timed():
            write_plots(self.run_dir)
        if gif:  # a budget that ended the run inside an epoch wrote that epoch's grid: its frame says so
            write_evolution_gif(self.run_dir, unfinished=self.epoch_of_last_step
                                if self.cursor % self.batches.steps_per_epoch else None)


class _RolledBack(Exception):
    """Raised after a NaN rollback so the loop restarts from the restored state."""


class _InterruptFlag:
    """Turn SIGTERM, a hang-up (SIGHUP: the terminal went away, whose output then goes to /dev/null) and a first
    Ctrl-C (SIGINT) into a clean stop at the end of the current iteration, so the saved checkpoint never holds half
    an iteration; a second Ctrl-C raises at once (`forced`: nothing more is saved, the run resumes from its last
    checkpoint). An evaluation under way when the signal comes is left for
    later (`Trainer._maybe_evaluate`): the stop must fit in the grace period of whoever sent it.

    Under DDP every rank must stop after the same iteration, so the ranks ask each other (one all-reduce, with
    their clocks) about every `AGREE_SECONDS` of training, at iterations they all compute alike from the agreed
    clocks. torchrun forwards a Ctrl-C or SIGTERM to its processes once and kills them `--shutdown-timeout`
    (30 s) later; a second Ctrl-C reaches torchrun only. It also sends SIGTERM to the processes left when one of them
    died (`kill -9`): under DDP the signal's line waits until the others answer (`_say_once_peers_answer`), or a
    process that lost a peer said it would stop within seconds just before the error line saying what happened.
    Another signal while a stop is under way (torchrun's SIGTERM after the Ctrl-C that reached its processes too)
    changes nothing: the stop's line is said once, and the exit code is the first signal's."""

    HANGUP = getattr(signal, "SIGHUP", None)  # POSIX only
    SIGNALS = tuple(sig for sig in (signal.SIGTERM, signal.SIGINT, HANGUP) if sig is not None)
    AGREE_SECONDS = 2.0

    def __init__(self):
        self.hit = self.forced = False
        self.exit_code = 130  # the shell's 128 + the first signal's number (`Interrupted.exit_code`); Ctrl-C's by default
        self._agreed = None  # (iteration, agreed clock) where the ranks last asked each other (`agreed`)
        self._unsaid = self._since = None  # DDP: the signal's line, and the iteration it came in (`_say_once_peers_answer`)
        self._next = 0  # ... and the iteration where they ask next
        self._old = {}
        for sig in self.SIGNALS:
            if sig == self.HANGUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # `nohup gankit train ...`: the user asked to go on when the terminal goes away
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass

    def _handler(self, sig, frame):
        if self.hit and sig == signal.SIGINT and distributed.world_size() == 1:
            # (under torchrun a second one is the first again: a launcher that signals every process of the job, as
            # Slurm's scancel does, and torchrun, which passes it on; a second Ctrl-C reaches torchrun only)
            self.forced = True
            self.exit_code = 128 + signal.SIGINT
            raise KeyboardInterrupt
        if sig == self.HANGUP:
            console.terminal_gone()
        if self.hit:  # a stop already under way (torchrun's SIGTERM after the Ctrl-C it passed on): its line was said
            return
        self.hit = True
        self.exit_code = 128 + sig
        if sig == self.HANGUP:
            return
        said = "" if sig == signal.SIGINT else "SIGTERM: "  # a scheduler's preemption: its log says why the run stopped
        if distributed.world_size() > 1:
            self._unsaid, self._since = f"{said}stopping within seconds, after the same iteration in every process", None
        else:
            console.info(f"{said}stopping after this iteration" +
                         (" (Ctrl-C again to stop at once)" if sig == signal.SIGINT else ""))

    @property
    def agreed(self) -> tuple[int, float] | None:
        """Under DDP, (iteration, the latest clock of all ranks) where they last asked each other."""
        return self._agreed

    def stop(self, iteration: int, clock: float, device: torch.device) -> bool:
        """Stop now? At once for one process; under DDP at the next iteration where the ranks agree."""
        if distributed.world_size() == 1:
            return self.hit
        self._say_once_peers_answer(iteration)
        last = self._agreed
        if last is not None and last[0] < iteration < self._next:  # (a NaN rollback goes back: ask at once)
            return False
        hit, clock = distributed.maxima([float(self.hit), clock], device)
        self._say_once_peers_answer()
        step = 1
        if last is not None and iteration > last[0] and clock > last[1]:
            step = max(1, int(self.AGREE_SECONDS * (iteration - last[0]) / (clock - last[1])))
        self._agreed, self._next = (iteration, clock), iteration + step
        return hit > 0

    def _say_once_peers_answer(self, iteration: int | None = None) -> None:
        """Under DDP, say the signal's line once the other processes are known to be there: after an all-reduce they
        answered (no `iteration`), or at the end of an iteration begun after the signal (its gradients' all-reduces
        answered). A peer gone first (torchrun's SIGTERM then stops the processes left) fails them instead, and the
        error that says so is the one line."""
        if self._unsaid is None:
            return
        if iteration is not None:
            if self._since is None:  # the iteration under way at the signal: perhaps all-reduced before it
                self._since = iteration
            if iteration <= self._since:
                return
        console.info(self._unsaid)
        self._unsaid = None

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _progress:
    """Progress of the run, on the first process only, silent when disabled. On a terminal, a tqdm bar per epoch
    showing losses, images/s and the run's share done and time left (the bar's own time is the epoch's). Elsewhere (a log file, a cluster job's output, a pipe) a bar's redraws would pile
    up as one endless line, so it prints plain lines instead: at the end of the first epoch, at the end of a later
    one `console.LINE_EVERY` seconds after the previous line, inside an epoch that goes twice that long without
    one, and at the run's end; each with losses, images/s since the previous line, time spent and time left.
    `status()` gives (fraction of the budget done, training seconds, real images consumed)."""

    def __init__(self, enabled: bool, steps_per_epoch: int, name: str, epochs: int | None, status):
        self.enabled, self.spe, self.name, self.bar = enabled and distributed.is_main(), steps_per_epoch, name, None
        self.lines = self.enabled and not console.draws_bars()
        self.of = f"/{epochs}" if epochs else ""
        self.status = status
        self.epoch, self.in_epoch, self.values = 0, 0, {}
        self._mark = status()[1:]  # (training seconds, images, writing seconds) at the previous line, or at the start
        self._last_wall = time.monotonic()
        self._epoch_lines = 0

    def reset_epoch(self, epoch: int, done: int) -> None:
        self.epoch, self.in_epoch = epoch, done
        if not self.enabled or self.lines:
            return
        from tqdm import tqdm

        if self.bar is not None:
            self.bar.close()
        self.bar = tqdm(total=self.spe, initial=done, desc=f"{self.name} epoch {epoch + 1}{self.of}", unit="batch",
                        dynamic_ncols=True, leave=False)
        if self.values:  # the latest losses and the run's progress at once: an epoch of a few batches is gone before
            self.postfix(self.values, refresh=True)  # its first step line (a small dataset: thousands of epochs)

    def roll_back(self, epoch: int, done: int, mark: tuple[float, int, float]) -> None:
        """A NaN rollback went back to batch `done` of `epoch`: shown from there, without the losses of the step line
        before (it undid them) until the next one, and the next line's img/s counts from `mark` (training seconds,
        images, writing seconds now), not from images that the rollback undid."""
        self._mark, self.values = mark, {}
        self.reset_epoch(epoch, done)

    def advance(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(n)
        self.in_epoch += n
        if self.lines and self._due(2) and self.in_epoch < self.spe:  # short epochs report at their ends
            self._line(f"epoch {self.epoch + 1}{self.of}, {self.in_epoch}/{self.spe} batches", self.values)

    def postfix(self, values: dict, refresh: bool = False) -> None:
        self.values = values  # the latest step line's, for the lines inside an epoch
        if self.bar is not None:
            shown = {k: f"{v:.3g}" for k, v in values.items() if k in ("d_loss", "g_loss", "img_per_s")}
            done, elapsed = self.status()[:2]
            shown["run"] = f"{done:.0%}{self._left(done, elapsed, ' ({} left)')}"  # the bar's own time is the epoch's
            self.bar.set_postfix(shown, refresh=refresh)

    def epoch_line(self, epoch: int | float, values: dict) -> None:
        """Off a terminal: the line of an epoch that has ended (`epoch` fractional when the budget ended it inside
        one), with its mean values: the first epoch's, the run's last, and others when one is due."""
        if not self.lines or not (self._epoch_lines == 0 or self.status()[0] >= 1 or self._due()):
            return
        self._epoch_lines += 1
        whole = float(epoch).is_integer()
        where = (f"epoch {int(epoch)}{self.of}" if whole
                 else f"epoch {int(epoch) + 1}{self.of}, stopped {epoch % 1:.0%} into it")
        self._line(where, values)

    def _due(self, intervals: int = 1) -> bool:
        return time.monotonic() - self._last_wall >= intervals * console.LINE_EVERY

    def _line(self, where: str, values: dict) -> None:
        done, elapsed, images, writing = self.status()
        since_t, since_images, since_writing = self._mark
        self._mark, self._last_wall = (elapsed, images, writing), time.monotonic()
        shown = "".join(f"{k} {values[k]:.3g}, " for k in ("d_loss", "g_loss") if k in values)
        training = (elapsed - since_t) - (writing - since_writing)  # img/s of training, not of the epoch ends' writings
        # (none when no image was trained since the last line: the line of an epoch that a budget ended right after
        # one inside it; the lines' own clock went on meanwhile, so it said "0 img/s")
        speed = f"{(images - since_images) / training:.0f} img/s; " if training > 0 and images > since_images else ""
        left = self._left(done, elapsed, ", about {} left")
        console.info(f"{self.name} {where}: {shown}{speed}{console.clock(elapsed)} in, {done:.0%} done{left}")

    @staticmethod
    def _left(done: float, elapsed: float, form: str) -> str:
        """The run's time left at the pace so far, in `form`; "" before anything is done or after it all is."""
        return form.format(console.clock(elapsed * (1 - done) / done)) if 0 < done < 1 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- entry point


def run_training(layers: list[dict], run_dir: str | Path | None = None, outcome: dict | None = None) -> Path:
    """Build (or resume) a run from config override layers and train it. Returns the run folder; `outcome`, where
    given, gets `Trainer.fit`'s summary (its `elapsed`: the run's training seconds, across resumes) and `resumed`."""
    from gankit.data import load_dataset, upscale_note

    layers = _absolute_data_paths(layers)
    base = _data_defaults(layers)
    launch = merged(base, *layers)  # the command line's own settings: its device picks the processes' backend
    check_device_name(launch.train.device)  # (the rest is checked on top of a resumed run's config)
    launch_device = resolve_device(launch.train.device)
    with distributed.process_group(launch_device), contextlib.ExitStack() as held:  # a no-op unless under torchrun
        held.enter_context(deterministic_kept())  # train.deterministic's switches last as long as the run
        # rank 0 alone reads the run folder, and holds it against a second training (`runlock`); the others take its
        # run, config and checkpoint (`from_main`), so that several machines need not share a disk
        collective_device = distributed.local_device(launch_device)

        def resolve_and_hold() -> tuple[Path, Config, bool]:
            found = _resolve_run(layers, run_dir, base, launch_device)
            held.enter_context(runlock.hold(found[0], distributed.run_option()))
            return found

        run_path, cfg, resuming = distributed.from_main(resolve_and_hold)
        _check_process_0_holds_the_run(run_path, collective_device)
        if not distributed.is_main() and any((layer.get("data") or {}).get("path") for layer in layers):
            cfg.data.path = launch.data.path  # this machine's --data: where its own copy of the images is
        warn_settings(layers, cfg)
        if cfg.data.labels and cfg.model.arch not in CONDITIONAL_ARCHS:
            console.warn(f"model.arch {cfg.model.arch} is unconditional: the labels are not used "
                         "(--set model.arch=acgan trains a model conditioned on them)")
        resolution = resolution_of(cfg)
        distributed.local_batch(cfg.train.batch_size, resumed=resuming)  # fail early, on every rank, if it does not split
        if cfg.train.sync_batchnorm and distributed.world_size() == 1:
            console.warn("train.sync_batchnorm has no effect in a single process (it shares BatchNorm statistics "
                         "between torchrun's processes): ignored")
        labels = cfg.data.labels if cfg.model.arch in CONDITIONAL_ARCHS else None  # (ignored: they drop no image)
        with distributed.main_first():  # rank 0 decodes and caches the dataset, the others read the cache
            data = load_dataset(cfg.data.path, resolution, labels=labels, label_column=cfg.data.label_column if labels else None,
                                cache_dir=cfg.data.cache_dir, progress=cfg.log.progress and distributed.is_main())
        if (upscaled := upscale_note(data, resolution)) is not None:
            console.warn(upscaled)  # (the first process's alone)
        _check_same_images(data, collective_device)
        # what the run fills in (said in its config.yaml); a resume keeps what it filled in unless its overrides name
        # it, and works out again what it filled in for its machine (it may resume on another one)
        filled = ([k for k in filled_in(run_path / CONFIG_FILE) if k not in given_keys(layers)] if resuming else
                  unset_keys(cfg))
        for_its_machine = _unfill_machine_keys(cfg, filled) if resuming else {}
        cfg = finalize_config(cfg, data, run_path if resuming else None)
        _say_machine_keys_changed(run_path, cfg, for_its_machine)
        cfg.name = cfg.name or run_path.name
        trainer = Trainer(cfg, data, run_path, resume=resuming, filled_in=filled)
        if distributed.is_main():
            ranks = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
            t = cfg.train
            if trainer.device.type == "cpu":  # (each process's; gankit.threads may change it while training)
                ranks += f", {console.count(t.threads or torch.get_num_threads(), 'thread')}"
            classes = f" of {cfg.model.num_classes} classes" if cfg.model.num_classes else ""
            budget = [console.count(t.epochs, "epoch")] + \
                ([console.count(t.max_steps, "iteration")] if t.max_steps is not None else []) + \
                ([f"{t.minutes:g} minute{'' if t.minutes == 1 else 's'}"] if t.minutes is not None else [])
            console.info(f"{f'resuming from iteration {trainer.iteration}:' if trainer.resumed else 'training'} {run_path} "
                         f"on {trainer.device}{ranks} "
                         f"({'fp32' if trainer.amp_dtype is None else str(trainer.amp_dtype).replace('torch.', '')}): "
                         f"{console.count(len(data.images), 'image')}{classes} at {cfg.data.resolution}px, up to {' / '.join(budget)}")
            console.info(recipe_line(cfg))
            trainer.say_if_g_steps_span_epochs()
            trainer.say_if_grid_leaves_out_classes()
            if (moved := trainer.lr_rescheduled()) is not None:
                console.info(f"train.lr_decay {t.lr_decay} follows the new budget: the learning rates go from "
                             f"x{moved[0]:.2f} to x{moved[1]:.2f} of train.lr_g / train.lr_d here and fall to 0 at its end")
        summary = trainer.fit()
        if outcome is not None:
            outcome.update(summary, resumed=trainer.resumed)
        del trainer
        if distributed.is_initialized():  # its DDP reducers go before the process group does (else gloo may abort
            gc.collect()  # at exit); not otherwise: a collection takes 0.1-0.3 s in a process holding many objects
    return run_path
