"""The single-image "unit test" of seed 002: can this GAN reproduce one picture?

The dataset is many copies of one image (two images with two labels for ACGAN, which also tests
the auxiliary task). A working model, loss and loop makes G collapse onto the target within a few
hundred steps; one that cannot is broken, whatever it does on real data. The score is the mean
absolute pixel error (0..1 scale) between generated images and their target, before and after
training; `passed` means it fell below `threshold`. Training stops at the first epoch end where it
has (unless asked to train every epoch), so a working model passes in a fraction of the budget. With
few copies, one G step of a critic's batches (WGAN's n_critic 5) can span epochs: the test ends after
the step that finishes its epochs, past them (a step is not cut short), and says how many it trained.

Why 0.1 by default: an untrained G outputs near-uniform gray, about 0.3-0.5 from a coloured target;
0.1 is 25 grey levels on average, a clearly recognisable copy (seed 002's unit-test figures reach it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from gankit import console, runlock
from gankit.config import SANITY_DATA, build_config, from_sanity, read_yaml, unset_keys, warn_settings
from gankit.data import cache
from gankit.data.folder import SUPPORTED, ImageSet, _decode_file, _Skip
from gankit.device import deterministic_kept
from gankit.errors import ConfigError, DataError
from gankit.layout import CONFIG_FILE, RUN_OUTPUTS

DEFAULT_THRESHOLD = 0.1
MAX_COPIES = 100_000  # 100 times seed 002's 1000: an epoch of 1,563 iterations at batch 64, the copies 0.3 GB at 32px
PICTURE = "sanity.png"  # in the run folder: each target, then SHOWN of G's images of it, captioned
SHOWN = 7
# what a test writes in its run folder, removed when a test starts over there (its config.yaml is read, then rewritten)
WRITTEN = (*RUN_OUTPUTS, PICTURE)


def builtin_images(resolution: int) -> list[torch.Tensor]:
    """Two synthetic uint8 [3, R, R] targets: a red disc on blue, and a yellow square on dark green."""
    r = resolution
    yy, xx = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    disc = (yy - r * 0.45) ** 2 + (xx - r * 0.55) ** 2 < (r * 0.3) ** 2
    a = torch.empty(3, r, r, dtype=torch.uint8)
    a[:] = torch.tensor([30, 60, 200], dtype=torch.uint8).view(3, 1, 1)
    a[:, disc] = torch.tensor([230, 40, 40], dtype=torch.uint8).view(3, 1)
    square = (yy > r // 4) & (yy < 3 * r // 4) & (xx > r // 5) & (xx < r // 2 + r // 5)
    b = torch.empty(3, r, r, dtype=torch.uint8)
    b[:] = torch.tensor([20, 90, 30], dtype=torch.uint8).view(3, 1, 1)
    b[:, square] = torch.tensor([250, 220, 60], dtype=torch.uint8).view(3, 1)
    return [a, b]


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """One image file as uint8 [3, R, R], prepared exactly like a dataset image."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--image '{p}' is not a file: pass a {SUPPORTED} image")
    try:
        array, _ = _decode_file(str(p), resolution)
    except _Skip as e:
        raise DataError(f"--image '{p}' cannot be used ({e}): pass another image") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def copies_dataset(targets: list[torch.Tensor], copies: int, names: list[str] | None = None) -> ImageSet:
    """A dataset of `copies` images, the targets in equal numbers; labelled by target index when there are several,
    the classes named `names` (the grids' row names; default image0, image1...)."""
    each = max(1, copies // len(targets))
    images = torch.cat([t.unsqueeze(0).expand(each, -1, -1, -1) for t in targets]).contiguous()
    labels = torch.arange(len(targets)).repeat_interleave(each) if len(targets) > 1 else None
    names = (names or [f"image{i}" for i in range(len(targets))]) if len(targets) > 1 else []
    key = cache.digest("gankit-sanity", *[t.numpy().tobytes() for t in targets], copies)
    return ImageSet(images=images, labels=labels, class_names=names,
                    files=[f"sanity/{i:05d}" for i in range(len(images))], name="sanity", key=key)


def _check_copies_memory(copies: int, resolution: int) -> None:
    """Refuse, before making them, copies that cannot fit in this machine's memory (they are all made in it, uint8):
    at high resolution they ran out of it, and the message said to lower a --batch-size that sanity does not have."""
    from gankit.evaluate import beyond_memory

    beyond = beyond_memory(copies * 3 * resolution ** 2)
    if beyond:
        raise DataError(f"--copies {copies:,} at {resolution}px take {beyond}: ask for fewer copies (seed 002: 1000) or a "
                        "lower --resolution")


@dataclass
class SanityResult:
    mae_before: list[float]  # per target, untrained G
    mae_after: list[float]  # per target, after training
    threshold: float
    iterations: int
    run_dir: Path
    epochs: int = 0  # epochs trained
    epochs_asked: int = 0  # train.epochs: fewer than trained where one G step's critic batches span epochs
    picture: Path | None = None  # each target beside G's images of it

    @property
    def passed(self) -> bool:
        return max(self.mae_after) < self.threshold


def _attempts(trainer, targets: list[torch.Tensor], n: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(G's n images for the target, the target as they are drawn) per target, in 0..1; the same noise at every call,
    drawn from its own generator (training's random stream is left alone)."""
    from gankit.models import sample_z

    z = sample_z(n, trainer.cfg, "cpu", generator=torch.Generator().manual_seed(2002)).to(trainer.device)
    out = []
    for i, target in enumerate(targets):
        labels = torch.full((n,), i, device=trainer.device) if trainer.num_classes else None
        fake = trainer._generate(z, labels).cpu().float().clamp(-1, 1).add(1).div(2)
        want = target.float().div(255) if target.shape[0] == fake.shape[1] else \
            target.float().div(255).mean(0, keepdim=True)
        out.append((fake, want))
    return out


def _mae(attempts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Mean absolute error (0..1) between G's images of each target (`_attempts`) and that target."""
    return [float((fake - want.expand_as(fake)).abs().mean()) for fake, want in attempts]


def _write_picture(attempts: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> Path:
    """One row per target: the target, then SHOWN of G's images of it (`_attempts`, those the error is measured on),
    under the captions "target" and "generated"."""
    from gankit.report.grids import save_grid

    rows = [torch.cat([want.expand_as(fake[0]).unsqueeze(0), fake[:SHOWN]]) for fake, want in attempts]
    return save_grid(torch.cat(rows).mul(2).sub(1), path, nrow=SHOWN + 1, captions=[("target", 1), ("generated", SHOWN)])


def _start_over(run_dir: Path) -> None:
    """A folder of an earlier test loses what that test wrote (its grids, checkpoints, events, GIF would mix with this
    one's); a training run's folder is refused: the test would overwrite its checkpoints."""
    import shutil

    config = run_dir / CONFIG_FILE
    if not config.is_file():
        return
    try:
        saved = read_yaml(config)
    except ConfigError:  # not readable as a config: not a test's
        saved = {}
    if not from_sanity(saved):
        raise DataError(f"'{run_dir}' holds a training run, whose checkpoints the sanity test would overwrite: pass "
                        "another --run for the test")
    for name in WRITTEN:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _say_start(trainer, run_dir: Path, copies: int, stems: list[str] | None, threshold: float, all_epochs: bool,
               before: list[float]) -> None:
    """The test's start line (what it trains on, until when) and the recipe line, as `gankit train` says them."""
    from gankit.config import recipe_line

    cfg = trainer.cfg
    n = len(before)
    what = ", ".join(f"'{s}'" for s in stems) if stems else f"{'the built-in target' if n == 1 else f'the {n} built-in targets'}"
    epochs = console.count(cfg.train.epochs, "epoch")
    until = (f"{epochs} (--all-epochs; G's mean absolute error is {max(before):.3f}, the threshold {threshold:g})"
             if all_epochs else f"up to {epochs}, until G's mean absolute error is under {threshold:g} (now {max(before):.3f})")
    console.info(f"sanity test {run_dir} on {trainer.device}: {copies:,} copies of {what} at {cfg.data.resolution}px, "
                 f"{until}")
    # its flips are off whatever was asked (the target is one exact picture), and a batch lowered to the copies has its
    # own line: neither is a choice of the recipe ("flip false", "batch_size 8" were noise there)
    train = (dataclasses.replace(cfg.train, batch_size=type(cfg.train)().batch_size)
             if "train.batch_size" in trainer.filled_in else cfg.train)
    console.info(recipe_line(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, flip=None), train=train)))


def run_sanity(layers: list[dict], run_dir: str | Path, images: list[str | Path] | None = None,
               copies: int = 1000, threshold: float = DEFAULT_THRESHOLD, all_epochs: bool = False,
               test_epochs: bool = False) -> SanityResult:
    """Train on copies of one image (two for ACGAN) and measure how close G gets, stopping at the first epoch end
    where every target is reproduced (all `train.epochs` with `all_epochs`). `layers` are config overrides as for
    `run_training`; the dataset keys (data.path, labels) are ignored, and data.flip (said where asked). `test_epochs`:
    train.epochs is the test's own (its default in place of a recipe's), not the user's (config.yaml says so)."""
    from gankit.train import Trainer, finalize_config

    cfg = build_config(*layers)
    warn_settings(layers, cfg)
    if cfg.data.flip:
        console.warn("data.flip true is ignored: the sanity test never flips its target, one exact picture")
    for key, value in (("data.path", cfg.data.path), ("data.labels", cfg.data.labels)):
        if value is not None:
            console.warn(f"{key} '{value}' is ignored: the sanity test trains on copies of one picture (--image FILE, "
                         "else its built-in target)")
    # the test fills in its flips (none: the target is one exact picture), whatever was asked: its config.yaml names
    # data.flip among what it filled in, and a recipe made from that file leaves the flips to the new run
    cfg.data.flip = None
    filled = unset_keys(cfg)
    cfg.data.resolution = cfg.data.resolution or 32
    cfg.data.flip = False
    cfg.data.path = SANITY_DATA
    conditional = cfg.model.arch == "acgan"
    # (config.yaml names them filled in, with the FILLED_BY_SANITY values below the test sets, not the user)
    filled += ["data.path"] + ["data.labels"] * conditional + ["train.epochs"] * test_epochs
    wanted = 2 if conditional else 1
    if images:
        if len(images) != wanted:
            fix = ("give two" if conditional else
                   "give one, or test ACGAN on two labelled ones with --set model.arch=acgan")
            raise DataError(f"the {'ACGAN ' if conditional else ''}sanity test takes {wanted} --image "
                            f"file{'s (one per label)' if wanted > 1 else ''}, got {len(images)}: {fix}")
        targets = [load_image(p, cfg.data.resolution) for p in images]
    else:
        targets = builtin_images(cfg.data.resolution)[:wanted]
    if not wanted <= copies <= MAX_COPIES:  # (all of them are made in memory)
        raise DataError(f"--copies must be from {wanted} to {MAX_COPIES:,} (copies of the target "
                        f"image{'s' if wanted > 1 else ''} to train on; seed 002: 1000), got {copies}")
    _check_copies_memory(copies, cfg.data.resolution)
    stems = [Path(p).stem for p in images or []]  # the grids' rows named after the files (two alike: numbered)
    data = copies_dataset(targets, copies, stems if len(set(stems)) == len(stems) else None)
    if cfg.train.batch_size > len(data.images):  # a batch is at most the copies: no --batch-size flag here to lower
        console.info(f"batch size {len(data.images)}: there are {len(data.images)} copies")
        cfg.train.batch_size = len(data.images)
        filled.append("train.batch_size")
    cfg.data.labels = "sanity" if conditional else None
    cfg = finalize_config(cfg, data)
    cfg.name = cfg.name or Path(run_dir).name
    with runlock.hold(Path(run_dir), "--run"), deterministic_kept():  # one test (or training) at a time in a folder
        _start_over(Path(run_dir))
        trainer = Trainer(cfg, data, Path(run_dir), filled_in=filled)
        trainer.resume_hint = lambda: "The test starts over when run again (its copies are made in memory)."
        trainer.say_if_g_steps_span_epochs()  # few copies: the test ends past its epochs
        before = _mae(_attempts(trainer, targets))
        _say_start(trainer, Path(run_dir), len(data.images), stems or None, threshold, all_epochs, before)
        trainer.fit(stop_when=None if all_epochs else lambda: max(_mae(_attempts(trainer, targets))) < threshold)
        after = _attempts(trainer, targets)  # what the result says and the picture shows: one draw
        picture = _write_picture(after, Path(run_dir) / PICTURE)
    return SanityResult(before, _mae(after), threshold, trainer.iteration, Path(run_dir), trainer.epoch,
                        cfg.train.epochs, picture)
