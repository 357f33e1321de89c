"""The `gankit` command line: parse arguments, build the config, call the library. No training logic here."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gankit import console
from gankit.errors import GankitError, Interrupted, RunError

try:  # newer typer carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer uses click itself
    from click import exceptions as click_errors


class _HelpAsFlag:
    """Typer's help shows its own -h/--help as `--help <bool>`, as if it took a value: an empty metavar shows it as
    the flag it is (as `_flag` does for ours)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Group(_HelpAsFlag, typer.core.TyperGroup):
    def parse_args(self, ctx, args):
        """A bare `gankit` is a usage error whose message is the help: typer's rich help prints itself (on stdout)
        as the error is made, so it is made with stdout on stderr, where `main` says the error."""
        if args:
            return super().parse_args(ctx, args)
        with contextlib.redirect_stdout(sys.stderr):
            return super().parse_args(ctx, args)


class _Command(_HelpAsFlag, typer.core.TyperCommand):
    pass


app = typer.Typer(
    cls=_Group,
    help="Train, compare and sample image GANs on a folder of images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gankit")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from gankit import __version__

        return __version__


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"gankit {_version()}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", metavar="", is_eager=True, callback=_print_version,
                                          help="Print gankit's version and exit.")):
    """Train, compare and sample image GANs on a folder of images."""


def command(function):
    """`app.command()`, and Ctrl-C inside the command ends in a line saying so (Typer would make it a silent exit
    130): what the command kept when it says (an `Interrupted` with a message), none after the trainer's own; and in
    its exit status (`Interrupted.exit_code`: a training stopped by SIGTERM exits 143, by a hang-up 129)."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            if function.__name__ != "train":
                _in_one_process(function.__name__)
            return function(*args, **kwargs)
        except KeyboardInterrupt as e:
            said = str(e) if isinstance(e, Interrupted) else "interrupted: stopped before it finished"
            if said:
                console.info(said)
            raise typer.Exit(getattr(e, "exit_code", 130)) from None  # 130; a training stopped by SIGTERM 143, SIGHUP 129
    return app.command(cls=_Command)(run)


# How long a torchrun process that does not speak waits, before it stops, for torchrun to stop it once process 0 has
# said why (`_in_one_process`): stopping first, it would have torchrun stop process 0 before that line.
QUIET_PROCESS_WAIT = 30.0


def _in_one_process(name: str) -> None:
    """Only `gankit train` uses torchrun's processes: under torchrun any other command would run once per process, each
    writing the same files (`sanity` said that its run folder was "being trained by another gankit process", or, its
    process 0 stopped by torchrun, "SIGTERM: stopped before it finished"). It stops with one line, process 0's (and
    that of the first process of each machine); the others wait for torchrun to stop them, so that their exit does
    not have torchrun stop process 0 before it says it."""
    from gankit import distributed

    if not distributed.launched():
        return
    if not console.speaks_on_its_machine():
        import time

        time.sleep(QUIET_PROCESS_WAIT)
    raise GankitError(f"gankit {name} runs in one process: only gankit train uses torchrun's processes; run "
                      f"'gankit {name} ...' without torchrun")


def _flags_layer(**flags) -> dict:
    """Plain flags -> a config override layer (only the flags the user actually gave)."""
    layer: dict = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        section, key = dotted.split("__")
        layer.setdefault(section, {})[key] = value
    return layer


# The flag that sets a config key, where it is not --KEY (the key's last part, dashed: --batch-size, train.batch_size)
FLAG_OF_KEY = {"data.path": "--data", "log.progress": "--no-progress"}


def _flag_of(key: str) -> str:
    return FLAG_OF_KEY.get(key, "--" + key.split(".")[-1].replace("_", "-"))


@contextlib.contextmanager
def _naming_flags(flags: dict):
    """A config error about a key that a flag set (`flags`: the `_flags_layer`) names that flag, as the user typed it,
    before the key: `--epochs (train.epochs) must be > 0`, also where its fix names the flag (`use --batch-size 4 or
    less`); one about a key set with --set or --config keeps the key alone."""
    from gankit.config import flatten
    from gankit.errors import ConfigError

    try:
        yield
    except ConfigError as e:
        said = str(e)
        key = next((k for k in flatten(flags) if said.startswith(f"{k} ")), None)
        if key is None:
            raise
        raise ConfigError(f"{_flag_of(key)} ({key}){said[len(key):]}") from None


def _path(value: str | Path) -> Path:
    """A path given on the command line; an empty one (`--run ""`, a variable that was not set) would name the
    current folder, so it is refused. A leading `~` is the home folder, as for --data: the shell leaves it as it is in
    `--run=~/runs/x` or quoted, and it made a folder named `~` in the current one. Typer passes an option's default
    through here too, already a Path (sanity's `runs/sanity`)."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("is empty: give a folder or file name")
    return Path(value).expanduser()


def _flag(name: str, help: str):
    """An option that takes no value. Typer's help would show a plain `bool` one as `--name <bool>`, as if it took
    one (`--name true` is refused): an empty metavar shows it as the flag it is."""
    return typer.Option(False, name, metavar="", help=help)


@command
def train(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Image folder, searched recursively (png/apng/jpg/jpeg/jpe/jfif/jif/jfi/webp/bmp/dib/tif/tiff/gif/mpo/tga/icb/vda/vst/ppm/pgm/pbm/pnm/ico/pcx/qoi, avif where Pillow reads it, extensionless files) or archive of one (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz). Omit to train on the built-in MNIST digits."),
    resolution: Optional[int] = typer.Option(None, "--resolution", "-r", help="Square image size in pixels, 16-1024, e.g. 64, 256, 300 (default: the recipe's, else 32 for the built-in MNIST, 64 for a folder)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Passes over the dataset (default: the recipe's, else 30 for the built-in MNIST, 20 for a folder; a resumed run keeps its own)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per discriminator step (default: the recipe's, else 64)."),
    run: Optional[Path] = typer.Option(None, "--run", "--run-dir", parser=_path, help="Run folder. An existing one is resumed from its last checkpoint (default: runs/<dataset>_<res>px_<arch>, or <that>-2, -3... when it holds a run of another config). Under torchrun write --run-dir (torchrun takes --run for its own --run-path)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", parser=_path, help="YAML recipe overriding the defaults (see configs/)."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override any config key, e.g. --set train.lr_g=1e-4 (repeatable)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labels: 'folders' (sub-folder names) or a CSV file whose rows name the images (a file name, its stem, or its path in the folder)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="CSV column holding the label, e.g. type1."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (default: auto)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto | fp32 | bf16 | fp16 (default: auto = bf16 where the hardware has it; fp32 on mps)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads of the training step (default: one per core, fewer while that trains faster, when other programs keep cores busy)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many iterations in total (resumable)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after this many minutes of training, samples and checkpoints included (resumable; train.lr_decay spans them); the final FID/KID, when eval is on, runs after them."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: 0)."),
    deterministic: bool = _flag("--deterministic", help="Deterministic algorithms: the same seed gives bit-identical weights, also after an interrupt and resume (a little slower)."),
    no_progress: bool = _flag("--no-progress", help="Hide the progress bar (and, into a log file or a pipe, the progress and epoch lines that stand for it; the start and end lines stay)."),
):
    """Train a GAN (or resume the run folder given with --run) and write samples, metrics and checkpoints."""
    import time

    from gankit.config import parse_sets, read_recipe
    from gankit.distributed import run_option
    from gankit.train import check_recipe_data, run_training

    started = time.monotonic()
    if run is not None and run.exists() and not run.is_dir():
        raise RunError(f"{run_option()} '{run}' is a file, not a run folder: pass a new folder name or one made by gankit train")
    layers = [
        read_recipe(config) if config else {},
        parse_sets(set_),
        _flags_layer(data__path=data, data__resolution=resolution, train__epochs=epochs, train__batch_size=batch_size,
                     data__labels=labels, data__label_column=label_column, train__device=device,
                     train__precision=precision, train__threads=threads, train__max_steps=max_steps, train__minutes=minutes, train__seed=seed,
                     train__deterministic=True if deterministic else None,
                     log__progress=False if no_progress else None),
    ]
    with _naming_flags(layers[-1]):
        if config:
            check_recipe_data(config, layers)
        outcome: dict = {}
        run_path = run_training(layers, run, outcome=outcome)
    from gankit.distributed import is_main

    took = console.clock(time.monotonic() - started)
    if outcome.get("resumed"):  # this command's time, and the run's training time that its progress lines count
        took += f" ({console.clock(outcome['elapsed'])} of training in all)"
    if is_main():  # under torchrun, one line for all processes
        typer.echo(f"done: {run_path} in {took}  (samples in {run_path / 'samples'}, "
                   f"sample more with: gankit sample {shlex.quote(str(run_path))})")


@command
def sanity(
    image: List[Path] = typer.Option([], "--image", "-i", parser=_path, help="Target image (give two for ACGAN, one per label). Omit for the built-in targets."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", parser=_path, help="YAML recipe of the model/loss to test (see configs/)."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override any config key, e.g. --set model.arch=acgan."),
    resolution: Optional[int] = typer.Option(None, "--resolution", "-r", help="Image size (default: the recipe's or --set's, else 32)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Passes over the copies (seed 002 shows 10, 50 and 150; default: 50 in place of the recipe's, which is a real run's; --set train.epochs=N sets it too). With few --copies a critic's G step (n_critic batches) can end past them: the result says how many."),
    copies: int = typer.Option(1000, "--copies", help="Images in the dataset: copies of the target, or of each of the two in equal numbers (seed 002: 1000)."),
    threshold: float = typer.Option(0.1, "--threshold", help="Mean absolute pixel error (0..1) that counts as reproduced: between 0 and 1, exclusive."),
    run: Path = typer.Option("runs/sanity", "--run", "--run-dir", parser=_path, help="Run folder for the samples, curves and sanity.png; a test run again there starts over (a training run's folder is refused)."),
    all_epochs: bool = _flag("--all-epochs", help="Train every --epochs even after G reproduces the target (by default it stops at the first epoch end where it does)."),
    no_progress: bool = _flag("--no-progress", help="Hide the progress bar (and, into a log file or a pipe, the progress and epoch lines that stand for it; the start and end lines stay)."),
):
    """Seed 002's unit test: train on copies of one image (two labelled ones for ACGAN) and check G reproduces it."""
    from gankit.config import given_keys, parse_sets, read_recipe
    from gankit.sanity import DEFAULT_THRESHOLD, run_sanity

    if not 0 < threshold < 1:  # (NaN too) at 0 or below no G could pass; at 1 or above every G would (the error is <= 1)
        raise GankitError(f"--threshold must be between 0 and 1 (the mean absolute pixel error, on a 0..1 scale, under "
                          f"which G counts as reproducing its target; default {DEFAULT_THRESHOLD}), got {threshold}")
    # a recipe's epochs are a real run's (300...): the test's 50 replace them; --set, then the flags, win over both
    # (the 50, the test's own, its config.yaml names filled in: a recipe made from it leaves them to the new run)
    layers = [read_recipe(config) if config else {}, {"train": {"epochs": 50}}, parse_sets(set_),
              _flags_layer(data__resolution=resolution, train__epochs=epochs, log__progress=False if no_progress else None)]
    with _naming_flags(layers[-1]):
        r = run_sanity(layers, run, images=list(image) or None, copies=copies, threshold=threshold, all_epochs=all_epochs,
                       test_epochs="train.epochs" not in given_keys(layers[2:]))
    before = ", ".join(f"{v:.3f}" for v in r.mae_before)
    after = ", ".join(f"{v:.3f}" for v in r.mae_after)
    verdict = "PASS" if r.passed else "FAIL"
    past = f", more than the {r.epochs_asked} asked for" if r.epochs > r.epochs_asked > 0 else ""  # (G steps span epochs)
    typer.echo(f"{verdict}: mean absolute error {before} -> {after} after {console.count(r.iterations, 'iteration')}, {console.count(r.epochs, 'epoch')}{past} "
               f"(threshold {threshold}); each target beside G's images of it in {r.picture}, samples in "
               f"{r.run_dir / 'samples'}")
    if not r.passed:
        raise typer.Exit(1)


def _run_given(command: str, argument: Path | None, option: Path | None) -> Path:
    """The run folder (or weights file) of `sample` / `evaluate`: the argument, or --run / --run-dir as `train` takes
    it; both only when they name the same one."""
    if argument is not None and option is not None and os.path.abspath(argument) != os.path.abspath(option):
        raise GankitError(f"two runs given, '{argument}' and --run '{option}': give one, as the argument or with --run")
    run = argument if argument is not None else option
    if run is None:
        raise GankitError(f"give the run folder: gankit {command} DIR, or gankit {command} --run DIR")
    return run


RUN_OPTION_HELP = "The run folder (or file) of the argument, given as gankit train takes it."
JSON_HELP = ("Print the result as ONE JSON object on stdout, for scripts (notes and progress stay on stderr): fid, "
             "kid_mean, kid_std (null where a value is not finite, or where every KID subset holds all the images), "
             "gankit_version")


def _memory_hint(lower: str):
    """A decorator: running out of memory inside the command is one line naming what ran out and `lower`, what
    lowers the need with this command's own options (`main`'s line names train's --batch-size and --resolution)."""
    @contextlib.contextmanager
    def hint():
        try:
            yield
        except Exception as e:  # noqa: BLE001 - anything else goes on to main as it was
            memory = _out_of_memory(e)
            if memory is None:
                raise
            raise GankitError(f"{memory}: {lower}, or free the memory other programs hold") from None

    return hint()


@command
@_memory_hint("draw fewer images with -n (--out-dir DIR alone draws them a batch at a time)")
def sample(
    run: Optional[Path] = typer.Argument(None, show_default=False, parser=_path, help="Run folder (uses its generator.safetensors), or a .safetensors / .pt file (or give it with --run)."),
    run_option: Optional[Path] = typer.Option(None, "--run", "--run-dir", parser=_path, help=RUN_OPTION_HELP),
    n: Optional[int] = typer.Option(None, "-n", help="Number of images (default: 64); with --same-noise-labels, images per label row (default: 8)."),
    grid: Optional[Path] = typer.Option(None, "--grid", parser=_path, help="Write one grid image here: .png, .jpg/.jpeg, .webp, .bmp, .tif/.tiff or .gif (default, without --out-dir: samples.png in the current folder, replacing one that is there)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", parser=_path, help="Write one png per image into this folder (the same command, run again, continues an interrupted draw)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed: the same seed gives the same images."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", parser=_path, help="Use this checkpoint instead of the run's generator.safetensors."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    label: List[str] = typer.Option([], "--label", help="Conditional runs: draw this class (repeatable: the images cycle through the classes given)."),
    same_noise_labels: bool = _flag("--same-noise-labels", help="Conditional runs: one row per class (every class, or those given with --label), the same noise in each column."),
    interpolate: bool = _flag("--interpolate", help="Walk the latent space (slerp) from --seed to --seed+1 in -n steps; with --grid x.gif writes an animation."),
):
    """Draw images from a trained generator."""
    import math

    import torch
    from torchvision.utils import save_image

    from gankit.report.grids import grid_columns
    from gankit.sample import (DRAW_CHUNK, check_count, check_drawing_memory, check_seed, draw_record, hold_draw,
                               images_drawn, load_run_generator, png_name, read_drawn, start_draw, write_png)

    run = _run_given("sample", run, run_option)
    if n is not None:
        check_count(n, "-n")
    check_seed(seed, "--seed")
    if same_noise_labels and (interpolate or out_dir is not None):
        raise GankitError("--same-noise-labels writes one grid: drop --interpolate / --out-dir (use --grid FILE.png)")
    if interpolate and len(label) > 1:
        raise GankitError(f"--interpolate walks one class, got {len(label)} --label ({', '.join(label)}): give one "
                          "--label, and run the command once per class")
    if grid is None and out_dir is None:
        grid = Path("samples.png")
    if grid is not None:
        _check_image_name(grid)
        if grid.is_dir():  # else refused only once drawn, with "Is a directory: check the path and its permissions"
            raise GankitError(f"--grid '{grid}' is a folder: pass the grid's file name, e.g. --grid {grid / 'samples.png'}")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise GankitError(f"--out-dir '{out_dir}' is a file: pass a folder (it is made if missing)")
    gen = load_run_generator(run, checkpoint, device)
    classes = [gen.label_index(name, "--label") for name in label]
    if same_noise_labels:
        from gankit.report.grids import label_grid

        gen.require_conditional("--same-noise-labels")
        rows = classes or list(range(len(gen.labels)))
        _check_grid_size(n or 8, len(rows), gen.cfg.data.resolution,
                         fix="draw fewer per class with -n, or name fewer classes with --label")
        check_drawing_memory(n or 8, gen.cfg, rows=len(rows))
        images = gen.same_noise_labels(n or 8, seed, rows)
        label_grid(images, [gen.labels[i] for i in rows], grid)
        typer.echo(f"wrote {grid}")
        return
    n = n or 64
    gif = interpolate and grid is not None and grid.suffix.lower() == ".gif"
    if grid is not None and not gif:
        other = " (an animation: --grid FILE.gif)" if interpolate else ""
        if not interpolate:  # grid_columns searches up to sqrt(n) rows: first the near-square layout, never wider
            side = math.isqrt(n - 1) + 1
            _check_grid_size(side, -(-n // side), gen.cfg.data.resolution, other)
        nrow = n if interpolate else grid_columns(n)  # no empty cell where a rectangle is not too long (3 -> 3 x 1)
        _check_grid_size(nrow, -(-n // nrow), gen.cfg.data.resolution, other)
    check_drawing_memory(n, gen.cfg, walk=interpolate, grid=grid is not None, gif=gif)
    with hold_draw(out_dir):  # one draw at a time into a folder, from reading what it holds to its last png
        done = start = 0  # images of this draw that --out-dir holds, and the first one drawn into it
        if out_dir is not None:  # an interrupted draw goes on: the batch it stopped in is drawn again (the same images)
            record = draw_record(gen, n, seed, classes, interpolate)
            done = images_drawn(out_dir, record)
            start = done if done == n else done - done % DRAW_CHUNK
            if done == n:  # (not "wrote 0 images to D (300 in all)" under it)
                console.info(f"all {console.count(n, 'image')} are already in {out_dir}: nothing to "
                             + ("draw" if grid is None else "write there"))
            elif done:
                console.info(f"continuing: {done:,} of {console.count(n, 'image')} already there")
        skip = start if not interpolate else 0  # a walk is drawn whole; a grid's images in --out-dir are read back
        if interpolate:
            from gankit.sample import interpolate as walk

            if gen.conditional and not classes:
                console.info(f"the walk draws class '{gen.labels[0]}' (the run's first): --label NAME walks another")
            images = walk(gen, seed, seed + 1, n, label=classes[0] if classes else 0)
            if grid is not None and grid.suffix.lower() == ".gif":
                from gankit.report.gif import frames_gif

                grid.parent.mkdir(parents=True, exist_ok=True)
                frames_gif(images, grid)
                typer.echo(f"wrote {grid}")
                if out_dir is None:
                    return
                grid = None  # the walk's frames also go into --out-dir, one png each (they were left out unsaid)
            batches = [images]
        else:
            labels = torch.tensor(classes).repeat(math.ceil(n / len(classes)))[:n] if classes else None
            labels = gen.labels_for(n, labels)  # (a conditional run's classes in turn from image 0, not from `skip`)
            batches = gen.batches(gen.noise(n, seed)[skip:], None if labels is None else labels[skip:], DRAW_CHUNK) \
                if skip < n else []
        if out_dir is not None:  # drawn and written a batch at a time: 50,000 images take minutes, and no more memory
            start_draw(out_dir, record)
            kept, i = [read_drawn(out_dir, n, skip, gen.cfg.model.channels)] if grid is not None and skip else [], skip
            try:
                with console.progress(n - start, f"drawing into {out_dir}", "images") as bar:
                    for batch in batches:
                        for img in batch:
                            if i >= start:  # (write_png: a png under its name is whole, also after a kill)
                                write_png(img, out_dir / png_name(i, n))
                                bar.update()
                            i += 1
                        if grid is not None:
                            kept.append(batch)
            except KeyboardInterrupt:
                written = max(i, done)
                names = f" ({png_name(0, n)} to {png_name(written - 1, n)})" if written else ""
                raise Interrupted(f"interrupted: {written} of {n} images written to {out_dir}{names}; run the same "
                                  "command again to draw the rest") from None
            if start < n:
                typer.echo(f"wrote {console.count(n - start, 'image')} to {out_dir}"
                           + (f" ({n:,} in all)" if start else ""))
            batches = kept
    if grid is not None:  # written under a temporary name: a kill while it is written leaves the grid that was there
        from PIL import Image

        from gankit.report._io import atomic_path

        with atomic_path(grid) as tmp:
            save_image(torch.cat(list(batches)), tmp, format=Image.registered_extensions()[grid.suffix.lower()],
                       nrow=nrow, normalize=True, value_range=(-1, 1))
        typer.echo(f"wrote {grid}")
    if gen.conditional and not classes and not interpolate:
        names = ", ".join(gen.labels[:4]) + (", ..." if len(gen.labels) > 4 else "")
        fewer = f"; -n {n} draws only the first{f' {n}' if n > 1 else ''}" if n < len(gen.labels) else ""
        console.info(f"the images cycle through the run's {len(gen.labels)} classes in order ({names}){fewer}: "
                     "--same-noise-labels draws one named row per class, --label NAME one class")


@command
@_memory_hint("use a smaller -n or --n-real (or --device cpu)")
def evaluate(
    run: Optional[Path] = typer.Argument(None, show_default=False, parser=_path, help="Run folder (its generator.safetensors), or a checkpoint / .safetensors file (or give it with --run)."),
    run_option: Optional[Path] = typer.Option(None, "--run", "--run-dir", parser=_path, help=RUN_OPTION_HELP),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Real images to compare with: a folder or an archive (default: the run's dataset)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", parser=_path, help="Use this checkpoint instead of the run's generator.safetensors, e.g. runs/x/checkpoints/best.pt or epoch_0010.pt."),
    n: int = typer.Option(1000, "-n", help="Generated images."),
    n_real: int = typer.Option(10000, "--n-real", help="At most this many real images (a fixed subset)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed of the generated images: the same seed draws the same ones."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", parser=_path, help="TorchScript Inception file to use instead of the packaged one."),
    as_json: bool = _flag("--json", help=JSON_HELP + " (the file evaluated, its iteration and epoch, -n, --n-real and --seed too)"),
):
    """FID and KID of a trained generator against real images, offline."""
    from gankit.evaluate import check_feature_memory, evaluate_run
    from gankit.metrics import weights_path
    from gankit.sample import check_seed

    # every cheap check first: the real images' features alone take minutes on a CPU
    run = _run_given("evaluate", run, run_option)
    if n < 2:
        raise GankitError(f"-n must be at least 2 for FID/KID, got {n}")
    check_feature_memory(n, "-n")
    if n_real < 2:
        raise GankitError(f"--n-real must be at least 2 for FID/KID, got {n_real}")
    check_seed(seed, "--seed")
    weights_path(inception_weights)  # there, and the file it should be
    r = evaluate_run(run, data, checkpoint, n, n_real, device, str(inception_weights) if inception_weights else None, seed)
    if as_json:
        _print_json({"run": str(run), "checkpoint": r["checkpoint"], "iteration": r["iteration"], "epoch": r["epoch"],
                     "data": r["data"], **_scores(r), "n_fake": r["n_fake"], "n_real": r["n_real"], "seed": seed})
        return
    typer.echo(f"FID {max(r['fid'], 0.0):.3f}  {_kid(r)}  ({r['n_fake']} generated vs {r['n_real']} real)")


@command
def fid(
    dir_a: Path = typer.Argument(..., parser=_path, help="First image folder or archive (.zip, .tar, .tar.gz...)."),
    dir_b: Path = typer.Argument(..., parser=_path, help="Second image folder or archive."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    batch_size: int = typer.Option(50, "--batch-size", help="Images per Inception forward pass (at most 10 on a CPU, as fast there and quicker to stop)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", parser=_path, help="TorchScript Inception file to use instead of the packaged one."),
    as_json: bool = _flag("--json", help=JSON_HELP + " (the two paths and their image counts, n_a and n_b, too)"),
):
    """FID and KID between two image folders or archives (like pytorch-fid's command line)."""
    from gankit.device import resolve_device
    from gankit.metrics import fid_folders

    if batch_size < 1:
        raise GankitError(f"--batch-size must be at least 1, got {batch_size}")
    r = fid_folders(dir_a, dir_b, device=resolve_device(device), batch_size=batch_size,
                    weights=str(inception_weights) if inception_weights else None)
    if as_json:
        _print_json({"a": str(dir_a), "b": str(dir_b), **_scores(r), "n_a": r["n_real"], "n_b": r["n_fake"]})
        return
    typer.echo(f"FID {max(r['fid'], 0.0):.3f}  {_kid(r)}  ({r['n_real']} vs {r['n_fake']} images)")


# The names compare's page may take (-o notes.txt was overwritten with the page, without a word)
PAGE_EXTENSIONS = (".html", ".htm")


@command
def compare(
    runs: List[Path] = typer.Argument(..., parser=_path, help="Run folders to compare."),
    out: str = typer.Option("report.html", "-o", "--out", help=f"The HTML page to write, a file name ending in {' or '.join(PAGE_EXTENSIONS)} (self-contained, opens offline; replaces a file of that name)."),
):
    """Write one HTML page comparing runs side by side: config differences, best FID/KID, grids, GIFs, curves."""
    from gankit.report import write_compare_report

    page = Path(out).expanduser()
    if page.is_dir() or out.endswith(("/", os.sep)):  # a Path forgets the slash: `-o new/` wrote a file named `new`
        raise GankitError(f"-o '{out}' is a folder: pass the page's file name, e.g. -o {page / 'report.html'}")
    if page.suffix.lower() not in PAGE_EXTENSIONS:
        raise GankitError(f"-o '{out}' is not an HTML file name: end it in .html, e.g. -o {page.with_suffix('.html')} "
                          "(the page is written there, replacing a file of that name)")
    path = write_compare_report(list(runs), page, progress=True)
    typer.echo(f"wrote {path}")


def _scores(r: dict) -> dict:
    """fid, kid_mean and kid_std of a result as the human line says them (FID at least 0; no KID spread where
    `_kid` says there is none), as strict JSON numbers (`json_number`: null where not finite)."""
    from gankit.config import kid_spread_is_none
    from gankit.runlog import json_number

    spread = None if kid_spread_is_none(r["n_fake"], r["n_real"]) else json_number(r["kid_std"])
    return {"fid": json_number(max(r["fid"], 0.0)), "kid_mean": json_number(r["kid_mean"]), "kid_std": spread}


def _print_json(result: dict) -> None:
    """`--json`: the result and gankit's version as ONE line of strict JSON on stdout (the human lines are on
    stderr: `console`)."""
    import json

    typer.echo(json.dumps({**result, "gankit_version": _version()}, allow_nan=False))


def _kid(r: dict) -> str:
    """KID and its spread over the subsets; with as many images on each side as one subset holds, every subset is all
    of them and the spread is 0 by construction (up to the order of float sums), which is no certainty: said so
    instead."""
    from gankit.config import kid_spread_is_none

    if kid_spread_is_none(r["n_fake"], r["n_real"]):
        return f"KID {r['kid_mean']:.5f} (every subset holds all the images: no spread to show)"
    return f"KID {r['kid_mean']:.5f} ± {r['kid_std']:.5f}"


GRID_MAX_SIDE = 16383  # WebP's largest side; a PNG grid that wide is already 0.8 GB of pixels to build


def grid_max_pixels() -> int | None:
    """The most pixels a grid may have: those Pillow still opens (above twice its MAX_IMAGE_PIXELS, 179 megapixels by
    default, Image.open raises DecompressionBombError); None where its limit is lifted."""
    from PIL import Image

    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


def _check_grid_size(columns: int, rows: int, resolution: int, other: str = "", fix: str = "") -> None:
    """Refuse, before drawing anything, a --grid too large to build as one image, or for Pillow to open. `fix` replaces
    the advice to write one file per image (--same-noise-labels writes one grid only)."""
    width, height = (k * (resolution + 2) + 2 for k in (columns, rows))  # save_image's 2 px padding
    most = grid_max_pixels()
    limit = (f"at most {GRID_MAX_SIDE} a side" if max(width, height) > GRID_MAX_SIDE else
             f"{width * height / 1e6:,.0f} megapixels, over the {most / 1e6:,.0f} Pillow opens"
             if most and width * height > most else "")
    if limit:
        fix = fix or f"write them one per file with --out-dir DIR{other}, or draw fewer with -n"
        raise GankitError(f"--grid of {columns} x {rows} images at {resolution}px would be {width} x {height} px "
                          f"({limit}): {fix}")


# What a grid is written as: formats that take an RGB image as it is (Pillow knows more, e.g. .xbm or .blp, that
# refuse RGB or fail on it).
GRID_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _check_image_name(path: Path) -> None:
    """An output image's name must end in one of GRID_EXTENSIONS."""
    if path.suffix.lower() not in GRID_EXTENSIONS:
        raise GankitError(f"--grid '{path}' needs an image extension gankit writes: end it in "
                          f"{', '.join(GRID_EXTENSIONS[:-1])} or .gif (with --interpolate, a .gif is an animation)")


@contextlib.contextmanager
def _sigterm_stops_the_command():
    """SIGTERM (a scheduler's preemption, a `kill`) while no training handles it (before the first iteration, during
    the final evaluation): the command stops as after a Ctrl-C, with a line and exit status 143, instead of dying
    without a word (and the run folder it made, still empty, is removed as it unwinds)."""
    def stop(sig, frame):
        raise Interrupted("SIGTERM: stopped before it finished", exit_code=128 + sig)

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # (not the main thread)
        old = None
    try:
        yield
    finally:
        if old is not None and signal.getsignal(signal.SIGTERM) is stop:  # (not a SIGTERM ignored since: a process
            signal.signal(signal.SIGTERM, old)  # that lost a peer says so before torchrun's SIGTERM can kill it)


@contextlib.contextmanager
def _stdout_of_the_first_process():
    """Under torchrun every process runs the same command line: what it prints on stdout (--help, --version; train's
    "done:" line is process 0's alone) comes from the first process of each machine only, not once per process."""
    if console.speaks_on_its_machine():
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as null, contextlib.redirect_stdout(null):
        yield


def _set_split(args: list[str]) -> str | None:
    """The KEY of a `--set KEY VALUE` (or `--set KEY = VALUE`) on this command line, whose VALUE click calls an extra
    argument; None without one."""
    return next((key for flag, key in zip(args, args[1:]) if flag in ("--set", "-s") and "=" not in key
                 and not key.startswith("-")), None)


def main(argv: list[str] | None = None) -> None:
    """The `gankit` entry point. Every failure ends in ONE line on stderr, never a raw traceback:

    - a `GankitError` (bad input) or a usage error (unknown option, wrong flag type): `error: ...`, exit 2;
    - Ctrl-C: exit 130 (a training stopped by SIGTERM: 143, by a hang-up: 129), with a line saying what was kept (the
      trainer has already said what it saved);
    - an OSError (a path that cannot be written or read, a full disk): `error: 'path': reason`, exit 2;
    - running out of GPU or host memory: what ran out, torch's figures and what lowers the need, exit 2;
    - anything else is a bug: `error: internal error (...)` naming a file that holds the full traceback, exit 1.
    """
    console.guard_terminal()  # a terminal that hangs up mid-run (SIGHUP then stops it cleanly) or a pipe that nothing
    # reads any more (`gankit train ... 2>&1 | head`: the training goes on) must not fail it
    console.guard_encoding()  # a character stdout's code page lacks must not fail it either (Windows)
    try:
        with _sigterm_stops_the_command(), _stdout_of_the_first_process():
            code = app(args=argv, prog_name="gankit", standalone_mode=False)
    except GankitError as e:  # under torchrun every process meets the same bad input: the first of a machine says it
        _fail(str(e), 2, every_process=False)
    except click_errors.NoArgsIsHelpError as e:  # bare `gankit`: the help on stderr, exit 2, as click would
        if e.format_message():  # the plain help, without rich (rich's has printed itself: see _Group.parse_args)
            typer.echo(e.format_message(), err=True)
        sys.exit(2)
    except click_errors.UsageError as e:  # the command line is the same in every torchrun process: the first says it
        hint = f" (see: {e.ctx.command_path} --help)" if e.ctx else ""
        split = _set_split(sys.argv[1:] if argv is None else argv) if "extra argument" in e.format_message() else None
        _fail(e.format_message() + (f": --set takes KEY=VALUE as one word: write --set {split}=VALUE" if split else hint), 2,
              every_process=False)
    except click_errors.ClickException as e:
        _fail(e.format_message(), e.exit_code, every_process=False)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except OSError as e:  # a path that cannot be written or read: the user's to fix, not a bug
        where = f"'{console.short_path(e.filename)}': " if e.filename else ""
        from gankit.checkpoint import NAME_TOO_LONG, in_the_way

        blocker = in_the_way(e)
        if blocker is not None:
            _fail(blocker, 2)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            _fail(f"{where}{e.strerror}: the disk is full: free some space, then run the command again (a training run "
                  "resumes from its last checkpoint)", 2)
        if e.errno == errno.ENAMETOOLONG:
            _fail(f"{where}{e.strerror}: {NAME_TOO_LONG}", 2)
        _fail(f"{where}{e.strerror or e}: check the path and its permissions", 2)
    except Exception as e:  # noqa: BLE001 - a bug: keep the traceback for the report, not on the terminal
        memory = _out_of_memory(e)
        if memory:  # the machine's limit, not a bug: say which and what lowers the need
            _fail(f"{memory}: use a smaller --batch-size or --resolution (or model.ngf / model.ndf), or free the "
                  "memory other programs hold; a training run resumes from its last checkpoint", 2)
        from gankit import distributed

        if distributed.lost_a_peer(e):  # torchrun: another process stopped (rank 0 on a full disk...) and said why
            if not distributed.says_the_loss():  # one line per machine, also when its first process is the lost one
                sys.exit(1)
            restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) - \
                int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
            # torchrun's summary of the failed processes comes only when it does not restart them
            then = ("); torchrun now restarts the processes (--max-restarts), which resume" if restarts_left > 0 else
                    "; torchrun's summary is below); the same command resumes")
            _fail("another process of this torchrun launch stopped (killed, or by an error it printed above or, on "
                  f"another machine, there{then} from the last checkpoint", 1)
        _fail(f"internal error ({type(e).__name__}: {_one_line(str(e))}); the full traceback is in "
              f"{_write_traceback(argv)} - please include that file when you report it", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _out_of_memory(e: BaseException) -> str | None:
    """What ran out of memory, with torch's figures ("the GPU ran out of memory (CUDA out of memory. Tried to
    allocate 2.00 GiB. GPU 0 has ...)"), or None when `e` is something else."""
    import re

    import torch

    text = _one_line(str(e))
    if isinstance(e, torch.OutOfMemoryError):
        figures = " ".join(re.split(r"(?<=\.) ", text)[:3])  # what it tried, what the GPU has, what is free
        return f"the GPU ran out of memory ({figures})"
    if isinstance(e, MemoryError) or "DefaultCPUAllocator: can't allocate memory" in text:
        tried = re.search(r"you tried to allocate (\d+) bytes", text)
        return "this machine ran out of memory" + (f" (tried to allocate {int(tried[1]) / 2**30:.2f} GiB)" if tried else "")
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int, every_process: bool = True) -> None:
    """Print `error: message` and exit; under torchrun, unless `every_process`, only on the first process of each
    machine (every process meets the same bad input, but a machine may lack its own copy of the data)."""
    if every_process or console.speaks_on_its_machine():
        print(f"error: {console.harmless(_one_line(message))}", file=sys.stderr, flush=True)
    sys.exit(code)


def _write_traceback(argv: list[str] | None) -> str:
    """Write the current exception's traceback to a temporary file and return its path."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="gankit-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:  # a path not in UTF-8 too
            f.write(f"gankit {' '.join(sys.argv[1:] if argv is None else argv)}\n\n{traceback.format_exc()}")
    except OSError as e:
        return f"nowhere (could not write a temporary file: {e.strerror})"
    return path


if __name__ == "__main__":
    main()
