"""Sampling from a trained run: load its generator (safetensors or checkpoint) and draw images."""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path

import torch

from gankit.checkpoint import load_checkpoint, load_generator, load_latest_checkpoint, missing_checkpoint
from gankit.config import SEED_RANGE, Config, from_dict
from gankit.console import count, short_list, warn
from gankit.data.folder import _fold
from gankit.device import resolve_device
from gankit.errors import GankitError, RunError
from gankit.layout import CHECKPOINTS_DIR, CONFIG_FILE, GENERATOR_FILE
from gankit.models import build_generator, sample_z
from gankit.models.layers import use_thin_conv
from gankit.tricks import ema_sampler, ema_weights


# An unknown --label's message lists the run's classes up to this many (seed 002's 18 types), else the first few: a
# run labelled by a column of names has a class per image.
MAX_LISTED_LABELS = 30

# Images G draws at once (`LoadedGenerator.batches`): an interrupted `sample --out-dir` goes on from a multiple of it,
# the batch it stopped in drawn again, so that each image comes from the same batch as in a draw that ran through.
DRAW_CHUNK = 256
# In a `sample --out-dir` folder, written before its first image: what the draw is (`draw_record`), so that the same
# command continues it. Hidden: `gankit fid` and training read no hidden file.
DRAW_RECORD = ".gankit-draw.json"


class LoadedGenerator:
    """A trained generator with its config and class names, ready to draw images by seed.

    Conditional runs (`model.arch: acgan`, `model.num_classes` > 0) are called as `G(z, labels=...)`
    with int64 label indices into `class_names`; unconditional ones as `G(z)`.
    """

    def __init__(self, G: torch.nn.Module, cfg: Config, class_names: list[str], device: torch.device):
        self.G, self.cfg, self.class_names, self.device = G, cfg, class_names, device
        self.other_run: list[str] = []  # the config keys of the run folder given that its checkpoint differs in
        self.source: Path | None = None  # the file its weights were read from (load_run_generator)
        self.trained: dict = {}  # {"iteration", "epoch"} the file was saved at, where it says (`_trained_to`)

    @property
    def conditional(self) -> bool:
        """True for an ACGAN generator (called as G(z, labels)); the same test as models._num_classes."""
        return self.cfg.model.arch == "acgan" and self.cfg.model.num_classes > 0

    @property
    def labels(self) -> list[str]:
        """Class names of a conditional run (their indices when the run did not record names)."""
        n = self.cfg.model.num_classes
        return list(self.class_names) if len(self.class_names) == n else [str(i) for i in range(n)]

    def require_conditional(self, what: str) -> None:
        """A one-line GankitError when `what` (an option, or an argument from Python) is used with an unconditional
        run."""
        if not self.conditional:
            raise GankitError(f"{what} needs a conditional run (model.arch acgan, trained with --labels); "
                              f"this one is unconditional ({self.cfg.model.arch})")

    def label_index(self, name: str, option: str = "label") -> int:
        """The index of class `name`, or of the one class it names in another case (`Fire` for `fire`, as
        --label-column takes `Type1`); a one-line GankitError naming the known labels otherwise. `option`: what the
        caller passed `name` as, for an unconditional run's error ('--label' from the command line)."""
        self.require_conditional(f"{option} {name}")
        known = self.labels
        if name in known:
            return known.index(name)
        folded = [_fold(k) for k in known]
        alike = [k for k, f in zip(known, folded) if f == _fold(name)]
        if len(alike) == 1:
            return known.index(alike[0])
        import difflib

        close = alike or [known[folded.index(c)] for c in difflib.get_close_matches(_fold(name), folded, n=1)]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        listed = ", ".join(known) if len(known) <= MAX_LISTED_LABELS else f"{len(known)} classes: {short_list(known)}"
        raise GankitError(f"unknown label '{name}': {hint}this run knows {listed}")

    def labels_for(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor | None:
        """Class labels for n images: None when unconditional, else the given ones (checked) or every class in turn."""
        if labels is not None:
            self.require_conditional("labels")
            k = self.cfg.model.num_classes
            wrong = f"labels must be {n} class indices in [0, {k})"
            try:
                labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            except (TypeError, ValueError):  # class names (torch: "too many dimensions 'str'"), None...
                raise GankitError(f"{wrong} (gen.label_index(name) gives a class's index), got {labels!r:.80}") \
                    from None
            if labels.numel() != n or labels.min() < 0 or labels.max() >= k:
                raise GankitError(f"{wrong}, got {labels.tolist()[:8]}")
            return labels
        return torch.arange(n) % self.cfg.model.num_classes if self.conditional else None

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """n latent vectors on the CPU, the same for the same seed on any device."""
        check_count(n)
        return sample_z(n, self.cfg, "cpu", generator=_seeded(seed))

    def batches(self, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = DRAW_CHUNK):
        """G(z, labels) one batch at a time -> float32 images in [-1, 1] on the CPU (labels: see `labels_for`),
        so that tens of thousands of images need the memory of one batch."""
        y = self.labels_for(z.shape[0], labels)  # checked now, not at the first batch

        def draw():
            for i in range(0, z.shape[0], batch_size):
                y_part = None if y is None else y[i:i + batch_size].to(self.device)
                with torch.no_grad():
                    images = self.G(z[i:i + batch_size].to(self.device), y_part).float().cpu()
                yield images

        return draw()

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = DRAW_CHUNK) -> torch.Tensor:
        """G(z, labels) in batches -> float32 images in [-1, 1] on the CPU (labels: see `labels_for`)."""
        return torch.cat(list(self.batches(z, labels, batch_size)))

    def sample(self, n: int, seed: int, batch_size: int = DRAW_CHUNK, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [-1, 1] (NCHW, float32, on CPU), the same for the same seed on any device.

        A conditional (ACGAN) generator draws `labels` ([n] class indices), by default every class in turn.
        """
        return self.generate(self.noise(n, seed), labels, batch_size)

    def same_noise_labels(self, k: int, seed: int, labels: list[int] | None = None) -> torch.Tensor:
        """(L, k, C, H, W): row i holds k images of class labels[i] (default: every class), column j the same noise."""
        self.require_conditional("same_noise_labels")
        labels = list(range(self.cfg.model.num_classes)) if labels is None else labels
        z = self.noise(k, seed)
        return torch.stack([self.generate(z, torch.full((k,), i, dtype=torch.long)) for i in labels])


def _seeded(seed: int) -> torch.Generator:
    check_seed(seed)
    return torch.Generator().manual_seed(int(seed))  # (torch refuses numpy's ints)


def check_seed(seed: int, name: str = "seed") -> None:
    """Noise seeds share the training seed's range (config.SEED_RANGE). `name`: what the caller passed it as ('seed'
    from Python, '--seed' from the command line), for the error."""
    lo, hi = SEED_RANGE
    if not _whole(seed) or not lo <= seed <= hi:
        raise GankitError(f"{name} must be a whole number from {lo} to {hi}, got {seed!r}")


def check_count(n: int, name: str = "n") -> None:
    """n, the images to draw: at least 1 (`LoadedGenerator.noise` checks it for a call from Python too, where
    `gen.sample(0, seed=0)` failed in torch.cat). `name`: as `check_seed`'s ('-n' from the command line)."""
    if not _whole(n) or n < 1:
        raise GankitError(f"{name} must be at least 1, got {n!r}")


def _whole(value) -> bool:
    """An int, or numpy's (from Python a float or None reached torch's own errors); not a bool."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def drawing_memory(n: int, cfg: Config, walk: bool = False, grid: bool = False, gif: bool = False) -> int:
    """Bytes that drawing n images holds at once, at the least: their noise (n x nz float32 on the CPU, a few times
    over for a walk's slerp) and, when every image is kept (a walk, a grid), the images in float32 twice (drawn, then
    joined), and a GIF's frames (at least 128 px a side, a byte a pixel, kept while it is encoded)."""
    noise = n * cfg.model.nz * 4 * (4 if walk else 1)
    if not (walk or grid):
        return noise
    side = cfg.data.resolution
    frames = n * max(side, 128) ** 2 * 2 if gif else 0
    return noise + 2 * n * cfg.model.channels * side * side * 4 + frames


def check_drawing_memory(n: int, cfg: Config, walk: bool = False, grid: bool = False, gif: bool = False,
                         rows: int = 0) -> None:
    """Refuse -n when drawing that many images (`drawing_memory`; `walk`: --interpolate, `grid`: all of them in one
    image, `gif`: an animation, `rows`: --same-noise-labels' grid of that many rows of n) cannot fit in this machine's
    memory: it would fail after minutes of drawing, or get the process killed."""
    from gankit.evaluate import beyond_memory

    need = drawing_memory(n * max(rows, 1), cfg, walk, grid or rows > 0, gif)
    beyond = beyond_memory(need, f" at {cfg.data.resolution}px")
    if beyond:
        held, fewer = (("a walk of that many steps", "a walk holds every step") if walk else
                       (f"a grid of {count(rows, 'row')} of that many images", "or name fewer classes with --label")
                       if rows else
                       ("a grid of that many images", "or write them one per file with --out-dir DIR alone, which "
                        "draws them a batch at a time") if grid else
                       ("the noise of that many images", "draw them in parts, into several folders with different --seed"))
        raise GankitError(f"-n {n}: {held} takes {beyond}: ask for fewer ({fewer})")


def _config_of(d: dict) -> tuple[Config, list[str]]:
    d = dict(d)
    class_names = list(d.pop("class_names", []) or [])
    for key in TRAINED_KEYS:  # where training stood (`_trained_to`), beside the config in generator.safetensors
        d.pop(key, None)
    return from_dict(d), class_names


TRAINED_KEYS = ("iteration", "epoch")  # where training stood when a file was saved: the iterations, the epochs completed


def _trained_to(d: dict) -> dict:
    """{"iteration", "epoch"} of a checkpoint's state or of generator.safetensors' metadata; None where the file does
    not say (one an older gankit wrote)."""
    return {key: d.get(key) if isinstance(d.get(key), int) else None for key in TRAINED_KEYS}


def load_run_generator(run: str | Path, checkpoint: str | Path | None = None, device: str = "auto") -> LoadedGenerator:
    """The generator of a run folder (its generator.safetensors) or of a given checkpoint / .safetensors file."""
    run = Path(run)
    if run.is_file() and run.suffix not in (".pt", ".safetensors") and (run.parent / CONFIG_FILE).is_file():
        raise RunError(f"'{run}' is a file of the run folder '{run.parent}', not weights: pass that folder instead")
    if checkpoint is None and run.is_file():
        checkpoint = run
    elif checkpoint is not None and not run.is_dir():  # (it was passed over without a word: a misspelt run folder)
        raise RunError(f"run folder '{run}' {'is a file' if run.exists() else 'does not exist'}: pass the run folder "
                       f"of --checkpoint '{checkpoint}', or that checkpoint alone in its place (without --checkpoint)")
    other_run = []
    if checkpoint is None:
        checkpoint, weights, cfg, class_names, ema, trained = _run_folder_generator(run)
    else:
        checkpoint = Path(checkpoint)
        if not checkpoint.exists() and run.is_dir():  # (a name given relative to the run folder: say what it holds)
            raise missing_checkpoint(checkpoint, run)
        weights, cfg, class_names, ema, trained = _file_generator(checkpoint)
        if run.is_dir() and (other_run := _other_run(run, cfg)):
            warn(f"checkpoint '{checkpoint}' is not of run '{run}': its config differs in "
                 f"{short_list(other_run)}; drawing from the checkpoint's generator, as its own config describes it")
    dev = resolve_device(device)
    G = build_generator(cfg)
    try:
        G.load_state_dict(weights)
    except RuntimeError as e:  # "Error(s) in loading state_dict for Generator:", then what does not fit
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), "")[:200]
        raise RunError(f"weights in '{checkpoint}' do not fit the generator its config describes ({detail}): "
                       "it was not written by this version of gankit, or was edited") from None
    use_thin_conv(G, dev.type == "cpu")  # same images, faster RGB output layer (gankit.models.layers)
    G.to(dev).eval()
    if ema:  # a checkpoint's EMA generator, as the run's samples, FID and generator.safetensors use it
        G = ema_sampler(G, cfg).eval()
    gen = LoadedGenerator(G, cfg, class_names, dev)
    gen.other_run, gen.source, gen.trained = other_run, Path(checkpoint), trained
    return gen


def _other_run(run: Path, cfg: Config) -> list[str]:
    """The config keys in which a checkpoint's `cfg` differs from the run folder's config.yaml, leaving out those a
    resume of one run may change (config.RESUMABLE_CHANGES): a checkpoint of that run differs in none. [] where the
    folder has no readable config.yaml to tell. A checkpoint whose dataset is gone may be the run's from before its
    data moved (`gankit train --run DIR --data NEW_PLACE`), as a resume allows."""
    from gankit.config import incompatible_changes, read_yaml
    from gankit.data import is_missing

    try:
        saved = from_dict(read_yaml(run / CONFIG_FILE))
    except (GankitError, OSError):  # no config.yaml (a folder holding a shared generator), or not one of gankit's
        return []
    moved = ("data.path", "data.labels") if is_missing(cfg.data.path) else ()
    keys = [change.split(":")[0] for change in incompatible_changes(saved, cfg, moved)]
    return sorted(keys, key=lambda k: not k.startswith("model."))  # the model's first: they tell most


def _run_folder_generator(run: Path) -> tuple[Path, dict, Config, list[str], bool, dict]:
    """(file, *`_file_generator`) of a run folder: its generator.safetensors, else (missing or unreadable) its
    newest usable checkpoint, which holds the same generator."""
    if not run.is_dir():
        from gankit.train import missing_run

        raise missing_run(run)
    exported, damaged = run / GENERATOR_FILE, None
    if exported.exists():
        try:
            return (exported, *_file_generator(exported))
        except GankitError as e:
            if not any((run / CHECKPOINTS_DIR).glob("*.pt")):
                raise
            damaged = e
    found = load_latest_checkpoint(run / CHECKPOINTS_DIR)
    if found is None:
        raise RunError(_not_a_run(run))
    state, path = found
    if damaged is not None:  # written with last.pt, so the same generator when that one is used
        warn(f"'{exported}' cannot be used ({str(damaged)[:120]}...); drawing from {path} (iteration "
             f"{state.get('iteration', '?')}) instead")
    return (path, *_file_generator(path, state))


def _not_a_run(folder: Path) -> str:
    """Why a folder with neither generator.safetensors nor checkpoints/*.pt has nothing to draw from, and what to pass
    instead: a run's checkpoints/ folder (its parent, or one of its files), a folder gankit train did not make (no
    config.yaml), or a run that has not saved yet."""
    from gankit.checkpoint import checkpoint_candidates

    held = checkpoint_candidates(folder)
    if held:
        return (f"'{folder}' holds checkpoints, not a run: pass the run folder '{folder.parent}' (its parent) instead, "
                f"or one checkpoint: --checkpoint {held[0]}")
    if not (folder / CONFIG_FILE).is_file():
        from gankit.report.runs import not_a_run

        return str(not_a_run(folder, f"{CONFIG_FILE}, {GENERATOR_FILE} or {CHECKPOINTS_DIR}/",
                             "pass a folder made by gankit train, or a .safetensors / .pt file it wrote"))
    return (f"run folder '{folder}' has no generator.safetensors or checkpoint yet: "
            f"train it first (gankit train --run {shlex.quote(str(folder))})")


def _file_generator(path: Path, state: dict | None = None) -> tuple[dict, Config, list[str], bool, dict]:
    """(weights, config, class names, whether they are an EMA generator's to finish with `ema_sampler`, `_trained_to`) of a
    .safetensors file (the sampler as trained wrote it) or a training checkpoint (`state`: already loaded), whose
    EMA generator, when the run kept one (train.ema), is the one its samples and FID came from."""
    if path.suffix == ".safetensors":
        weights, meta = load_generator(path)
        return (weights, *_config_of(meta), False, _trained_to(meta))
    state = state if state is not None else load_checkpoint(path)
    if "G" not in state or "config" not in state:
        raise RunError(f"'{path}' is not a gankit training checkpoint (it has no generator weights or config)")
    ema = state.get("G_ema") is not None
    weights = ema_weights(state["G_ema"]) if ema else state["G"]
    return (weights, *_config_of({**state["config"], "class_names": state.get("class_names", [])}), ema,
            _trained_to(state))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latent vectors for each t in [0, 1] (linear when they are parallel)."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    t = t[:, None]
    if omega.abs() < 1e-4:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def interpolate(gen: LoadedGenerator, seed_a: int, seed_b: int, steps: int, label: int = 0) -> torch.Tensor:
    """`steps` images walking the latent sphere from seed_a's noise to seed_b's (float [-1, 1], NCHW, CPU).

    A conditional generator keeps class `label` along the walk.
    """
    z = slerp(gen.noise(1, seed_a)[0], gen.noise(1, seed_b)[0], torch.linspace(0, 1, steps))
    return gen.generate(z, torch.full((steps,), label, dtype=torch.long) if gen.conditional else None)


def png_name(i: int, n: int) -> str:
    """The name of image `i` of a draw of `n` into --out-dir: 00000.png, 00001.png..., with as many digits as the
    largest index needs (at least 5), so that the names sort in the images' order whatever -n (099999.png before
    100000.png, which unpadded sorts before 10001.png)."""
    return f"{i:0{max(5, len(str(n - 1)))}d}.png"


def write_png(image: torch.Tensor, path: Path) -> None:
    """One image in [-1, 1] as a png at `path` (`sample --out-dir`), written under a temporary name and renamed into
    place: a kill -9 while it is written leaves a hidden temporary file, never a cut png under its name. Not synced
    to the disk, which would take minutes over 50,000 images (checkpoint._atomic_write)."""
    from torchvision.utils import save_image

    from gankit.checkpoint import _atomic_write

    _atomic_write(path, lambda f: save_image(image, f, format="png", normalize=True, value_range=(-1, 1)), sync=False)


def read_drawn(folder: Path, n: int, k: int, channels: int) -> torch.Tensor:
    """The first k images of a draw of n into `folder` (`images_drawn` counts them) as `write_png` wrote them: NCHW,
    float32 in [-1, 1], of `channels` (a one-channel image's png is grey RGB). In a grid they give the same bytes as the
    images drawn again, which it too keeps as 8 bits, so a --grid beside a finished --out-dir draws nothing."""
    import numpy as np
    from PIL import Image

    def read(i: int) -> torch.Tensor:
        with Image.open(folder / png_name(i, n)) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[:channels]

    return torch.stack([read(i) for i in range(k)]).float() / 127.5 - 1


def draw_record(gen: LoadedGenerator, n: int, seed: int, classes: list[int], interpolate: bool) -> dict:
    """What the images of `sample --out-dir` are made of: the weights (their file's sha256), -n, --seed, the classes
    of --label, --interpolate and the device's type (cpu, cuda...: another rounds otherwise). The same record, the
    same images."""
    from gankit.checkpoint import state_digest
    from gankit.metrics import _sha256

    weights = _sha256(gen.source) if gen.source is not None else state_digest(gen.G.state_dict())
    return {"weights": weights, "n": n, "seed": seed, "labels": [gen.labels[i] for i in classes],
            "interpolate": interpolate, "device": gen.device.type}


def read_draw_record(folder: Path) -> dict | None:
    """The record `start_draw` wrote in `folder`; None where there is none, or none readable."""
    try:
        record = json.loads((folder / DRAW_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def images_drawn(folder: Path, record: dict) -> int:
    """How many images of the draw `record` describes `folder` holds from the first on (00000.png, 00001.png, ...:
    `write_png` leaves none cut; an empty one, which a power cut may leave, and those after it are not counted): 0 for
    a new or empty folder. A one-line GankitError where it holds images of another draw, or of none that gankit made."""
    from gankit.data import IMAGE_EXTENSIONS

    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS} \
        if folder.is_dir() else {}
    if not sizes:
        return 0
    there, saved = f"--out-dir '{folder}' already holds {count(len(sizes), 'image')}", read_draw_record(folder)
    if saved is None:  # overwritten in part, the rest left beside the new ones: `gankit fid` would measure a mix
        raise GankitError(f"{there}: pass a new or empty folder (or delete them first), so that it holds this draw alone")
    differ = _other_draw(saved, record)
    if differ:
        raise GankitError(f"{there} of another draw ({differ}): pass a new or empty folder, or that draw's run and "
                          "options to continue it")
    n = record["n"]
    others = sorted(set(sizes) - {png_name(i, n) for i in range(n)})
    if others:
        raise GankitError(f"{there}, {'one' if len(others) == 1 else 'some'} not of this draw (e.g. '{others[0]}'): pass "
                          f"a new or empty folder, or move {'it' if len(others) == 1 else 'those'} out")
    return next((i for i in range(n) if not sizes.get(png_name(i, n))), n)


def _other_draw(saved: dict, record: dict) -> str:
    """The options in which the draw `saved` differs from `record`, as that draw gave them: '-n 5000, --seed 3'."""
    said = {"weights": lambda v: "other weights: another run or --checkpoint, or the run trained further",
            "n": lambda v: f"-n {v}", "seed": lambda v: f"--seed {v}",
            "labels": lambda v: " ".join(f"--label {shlex.quote(str(x))}" for x in v or []) or "no --label",
            "interpolate": lambda v: "--interpolate" if v else "no --interpolate", "device": lambda v: f"--device {v}"}
    return ", ".join(say(saved.get(key)) for key, say in said.items() if saved.get(key) != record[key])


def hold_draw(folder: Path | None) -> contextlib.AbstractContextManager:
    """Hold `folder` (made if needed: `runlock.hold`) while `sample --out-dir` reads and draws into it: a second
    draw into it at once would remove the first's temporary files (`start_draw`) and write the same names; a
    one-line RunError when another process draws there. Nothing is held for None (no --out-dir)."""
    from gankit import runlock

    if folder is None:
        return contextlib.nullcontext()
    return runlock.hold(folder, "--out-dir", busy=f"another gankit process is drawing into --out-dir '{folder}': wait "
                        "for it to end (or stop it), or pass another --out-dir")


def start_draw(folder: Path, record: dict) -> None:
    """Make `folder`, remove the temporary files of pngs that a kill cut short (`write_png`), and write `record`."""
    from gankit.checkpoint import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.png.*.tmp"):
        tmp.unlink(missing_ok=True)
    atomic_write_text(folder / DRAW_RECORD, json.dumps(record))
