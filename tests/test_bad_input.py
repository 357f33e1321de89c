"""Bad input through the real command line: one `error:` line saying what, where and how to fix, exit 2.

Each case builds its broken input in a temporary folder and runs `gankit.cli.main` (the function the
`gankit` script calls) in this process, so forty cases take seconds. None of them may print a
traceback, and none may reach a training step: every case fails while the input is checked.
"""

from __future__ import annotations

import errno
import json
import re
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image_folder, patch_zip
import gankit.train
from gankit.cli import main
from gankit.config import build_config, save_yaml, to_dict
from gankit.errors import DataError

# ----------------------------------------------------------------------------- building broken input


def images(t: Path, n: int = 4, name: str = "images", **kw) -> Path:
    root = t / name
    make_image_folder(root, n=n, **kw)
    return root


def folder_with(t: Path, files: dict[str, bytes]) -> Path:
    root = t / "data"
    root.mkdir(exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def png(size=(24, 24), mode="RGB", color=128) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring a huge size with no pixel data: how a decompression bomb looks before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def sixteen_bit_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((24, 24), 40000, dtype=np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def labelled(t: Path, csv_text: str, n: int = 4) -> Path:
    root = images(t, n=n)
    (root / "labels.csv").write_text(csv_text)
    return root


def tiny_cfg(**model):
    return build_config({"data": {"resolution": 16}, "model": {"ngf": 8, "ndf": 8, "nz": 16, "channels": 3, **model},
                         "train": {"device": "cpu"}})


def run_with_generator(t: Path) -> Path:
    """A run folder holding only an (untrained) tiny generator.safetensors, as `gankit sample` needs."""
    from gankit.checkpoint import save_generator
    from gankit.config import to_dict
    from gankit.models import build_generator

    cfg = tiny_cfg()
    run = t / "run"
    save_generator(build_generator(cfg).state_dict(), {**to_dict(cfg), "class_names": []}, run / "generator.safetensors")
    return run


def run_with_config(t: Path, **model) -> Path:
    """A run folder whose config.yaml says ngf 32 (what `gankit train` wrote), without checkpoints."""
    run = t / "run"
    run.mkdir()
    cfg = tiny_cfg(**model)
    cfg.data.path = str(images(t))
    save_yaml(cfg, run / "config.yaml")
    return run


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(t: Path) -> Path:
    path = t / "evil.pt"
    torch.save({"G": Payload(t / "pwned")}, path)
    return path


def unreadable_folder(t: Path, mp) -> Path:
    """A folder that cannot be listed (chmod 000; root ignores that, so listing it is made to fail too)."""
    root = images(t)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    mp.setattr(os, "scandir", scandir)
    return root


def symlink_loop(t: Path) -> Path:
    (t / "loop").symlink_to(t / "loop")
    return t / "loop"


def has_label_option() -> bool:
    import inspect

    from gankit.cli import sample

    return "label" in inspect.signature(sample).parameters


def trainer_checks_conditioning() -> bool:
    return "check_conditioning" in Path(__import__("gankit.train").train.__file__).read_text()


TRAIN = ["train", "--no-progress", "--device", "cpu", "--precision", "fp32", "--resolution", "16",
         "--set", "model.ngf=8", "--set", "model.ndf=8", "--set", "model.nz=16"]


def train(*args):
    return lambda t, mp: [*TRAIN, "--run", str(t / "run"), *[a(t) if callable(a) else a for a in args]]


def data(build):
    return lambda t: str(build(t))


def sample(*args):
    return lambda t, mp: ["sample", *[a(t) if callable(a) else a for a in args], "--device", "cpu",
                          "--grid", str(t / "out.png")]


# (case id, command builder (tmp_path, monkeypatch) -> argv, words the error line must contain)
CASES = [
    # --- data folders
    ("missing-folder", train("--data", data(lambda t: t / "nope")), ["does not exist", "--data"]),
    ("empty-folder", train("--data", data(lambda t: folder_with(t, {}))), ["is empty", "put"]),
    ("unreadable-folder", lambda t, mp: [*TRAIN, "--data", str(unreadable_folder(t, mp))],
     ["cannot read", "permission"]),
    ("only-non-images", train("--data", data(lambda t: folder_with(t, {"a.txt": b"x", "b.csv": b"y"}))),
     ["no image files", "supported"]),
    ("escape-sequence-in-path", train("--data", data(lambda t: t / "a\x1b]0;pwned\x07")),  # shown, not sent
     ["does not exist", "a\\x1b]0;pwned\\x07'"]),
    ("file-not-folder", train("--data", data(lambda t: folder_with(t, {"a.png": png()}) / "a.png")),
     ["is a file", "folder"]),
    ("symlink-loop-as-data", train("--data", data(symlink_loop)), ["loop"]),
    ("symlink-loop-inside", train("--data", data(lambda t: (folder_with(t, {}) / "x.png").symlink_to("x.png")
                                                  or t / "data")), ["x.png", "link"]),
    ("archive-unsafe", train("--data", lambda t: _tar_with_link_out(t)), ["x.tar", "'etc'", "/etc", "unsafe"]),
    ("archive-damaged", train("--data", lambda t: _write(t / "x.zip", "PK not a zip")), ["x.zip", "damaged"]),
    ("archive-encrypted", train("--data", lambda t: patch_zip(_zip_of(t, {"a.png": png()}), flags=0x1)),
     ["x.zip", "password-protected", "7-Zip"]),
    ("archive-deflate64", train("--data", lambda t: patch_zip(_zip_of(t, {"a.png": png()}), method=9)),
     ["x.zip", "Deflate64", "7-Zip"]),
    ("archive-without-images", train("--data", lambda t: _zip_of(t, {"notes.txt": b"x"})),
     ["archive", "x.zip", "no image files", "notes.txt"]),
    # --- images that cannot be used (the folder holds nothing else, so nothing is left to train on)
    ("corrupt-image", train("--data", data(lambda t: folder_with(t, {"a.png": os.urandom(300)}))),
     ["could be decoded", "a.png", "re-export"]),
    ("truncated-image", train("--data", data(lambda t: folder_with(t, {"a.png": png((64, 64), color=(1, 2, 3))[:-30]}))),
     ["a.png", "truncated"]),
    ("zero-byte-image", train("--data", data(lambda t: folder_with(t, {"a.jpg": b""}))), ["a.jpg", "empty file"]),
    ("one-pixel-image", train("--data", data(lambda t: folder_with(t, {"a.png": png((1, 1))}))), ["a.png", "too small"]),
    ("bomb-image", train("--data", data(lambda t: folder_with(t, {"a.png": png_header_only(30000, 30000)}))),
     ["a.png", "too large, 900 MP", "larger than Pillow's limit"]),
    ("just-over-pixel-limit", train("--data", data(lambda t: folder_with(
        t, {"a.png": png_header_only(10000, Image.MAX_IMAGE_PIXELS // 10000 + 1)}))),
     ["a.png", "too large, 89 MP", "larger than Pillow's limit of 89 megapixels", "downscale them"]),
    ("sixteen-bit-images-decoded", train("--data", data(lambda t: folder_with(
        t, {f"{i}.png": sixteen_bit_png() for i in range(3)})), "--batch-size", "8"),
     ["--batch-size (train.batch_size) 8", "3 images", "--batch-size 3"]),
    # --- labels
    ("labels-csv-missing", train("--data", data(images), "--labels", "nope.csv", "--label-column", "type"),
     ["nope.csv", "does not exist"]),
    ("labels-unknown-files", train("--data", data(lambda t: labelled(t, "name,type\nfoo,a\nbar,b\n")),
                                   "--labels", "labels.csv", "--label-column", "type"), ["no file names", "match"]),
    ("labels-empty-values", train("--data", data(lambda t: labelled(
        t, "name,type\n" + "".join(f"img_{i:03d},\n" for i in range(4)))), "--labels", "labels.csv",
        "--label-column", "type"), ["no image has a label", "--label-column"]),
    ("labels-column-missing", train("--data", data(lambda t: labelled(
        t, "name,type\n" + "".join(f"img_{i:03d},a\n" for i in range(4)))), "--labels", "labels.csv",
        "--label-column", "colour"), ["'colour'", "available columns", "type"]),
    ("labels-no-column-given", train("--data", data(lambda t: labelled(t, "name,type\nimg_000,a\n")),
                                     "--labels", "labels.csv"), ["--label-column", "type"]),
    ("labels-not-utf8", train("--data", data(lambda t: labelled(t, "x")), "--labels", lambda t: _latin1_csv(t),
                              "--label-column", "type"), ["UTF-8"]),
    ("labels-single-column", train("--data", data(lambda t: labelled(t, "name\nimg_000\n")), "--labels",
                                   "labels.csv", "--label-column", "name"), ["single column"]),
    ("labels-path-is-a-folder", train("--data", data(images), "--labels", lambda t: _mkdir(t / "labels"),
                                      "--label-column", "type"), ["is a folder", "--labels folders", "CSV"]),
    ("label-column-without-labels", train("--data", data(images), "--label-column", "type"), ["--labels"]),
    ("label-column-with-folder-labels", train("--data", data(images), "--labels", "folders", "--label-column", "type"),
     ["error: --label-column (data.label_column) 'type' names a column of a CSV file", "drop --label-column"]),
    ("label-column-with-folder-labels-set", train("--data", data(images), "--labels", "folders", "--set",
                                                  "data.label_column=type"),
     ["error: data.label_column 'type' names a column of a CSV file"]),
    ("folder-labels-loose-files", train("--data", data(images), "--labels", "folders"), ["sub-folder"]),
    ("builtin-with-labels", train("--data", "builtin:mnist", "--labels", "folders"), ["own labels"]),
    ("unknown-builtin", train("--data", "builtin:cifar"), ["unknown built-in", "mnist"]),
    pytest.param("acgan-single-class", train("--data", data(lambda t: images(t, n=4, classes=("cat",))),
                                             "--labels", "folders", "--set", "model.arch=acgan"),
                 ["1 class", "cat", "at least 2"],
                 marks=pytest.mark.xfail(not trainer_checks_conditioning(), strict=True,
                                         reason="train.finalize_config does not call check_conditioning yet")),
    pytest.param("acgan-without-labels", train("--data", data(images), "--set", "model.arch=acgan"),
                 ["acgan", "--labels"],
                 marks=pytest.mark.xfail(not trainer_checks_conditioning(), strict=True,
                                         reason="train.finalize_config does not call check_conditioning yet")),
    # --- configuration
    ("unknown-key", train("--set", "model.ngff=3"), ["unknown config key", "did you mean model.ngf"]),
    ("unknown-section", train("--set", "modle.ngf=3"), ["unknown config key", "model"]),
    ("wrong-type-set", train("--set", "train.epochs=many"), ["train.epochs must be int", "many"]),
    ("wrong-type-flag", train("--epochs", "many"), ["--epochs", "integer", "--help"]),
    ("unknown-flag", train("--epoch", "3"), ["--epoch", "--help"]),
    ("negative-lr", train("--set", "train.lr_g=-1e-4"), ["train.lr_g must be > 0"]),
    ("zero-lr", train("--set", "train.lr_d=0"), ["train.lr_d must be > 0"]),
    ("nan-lr", train("--set", "train.lr_d=.nan"), ["train.lr_d", "finite"]),
    ("infinite-lr", train("--set", "train.lr_g=.inf"), ["train.lr_g", "finite"]),
    # the flag typed comes first, as in every error about a flag's value, also where the fix names it; --set: the key
    ("batch-larger-than-dataset", train("--data", data(images), "-b", "64"),
     ["error: --batch-size (train.batch_size) 64 is larger than the dataset (4 images): use --batch-size 4"]),
    ("batch-larger-than-dataset-set", train("--data", data(images), "--set", "train.batch_size=64"),
     ["error: train.batch_size 64 is larger than the dataset (4 images): use --batch-size 4"]),
    # an ACGAN trains on the labelled images alone: the count the message gives is not the folder's
    ("batch-larger-than-the-labelled-images", train("--data", data(lambda t: labelled(t, "name,type\n" + "".join(
        f"img_{i:03d},{'ab'[i % 2] if i else ''}\n" for i in range(4)))), "--labels", "labels.csv", "--label-column",
        "type", "--set", "model.arch=acgan", "-b", "4"),
     ["error: --batch-size (train.batch_size) 4 is larger than the dataset (3 labelled images: 1 of the 4 has no label): "
      "use --batch-size 3 or less, or give the images without one a label"]),
    ("zero-batch", train("--batch-size", "0"), ["--batch-size (train.batch_size) must be > 0"]),
    ("resolution-too-large", train("--resolution", "5000"), ["--resolution (data.resolution)", "16 to 1024"]),
    ("resolution-too-small", train("--resolution", "8"), ["--resolution (data.resolution)", "16 to 1024"]),
    ("n-critic-zero", train("--set", "train.n_critic=0"), ["train.n_critic must be > 0"]),
    ("zero-epochs", train("--epochs", "0"), ["--epochs (train.epochs) must be > 0"]),
    ("zero-epochs-set", train("--set", "train.epochs=0"), ["error: train.epochs must be > 0"]),  # no flag typed: the key
    ("zero-max-steps", train("--max-steps", "0"), ["--max-steps (train.max_steps) must be > 0"]),
    ("infinite-minutes", train("--minutes", "inf"), ["--minutes (train.minutes) must be a finite number"]),
    ("bad-choice", train("--set", "train.loss=wasserstein"), ["train.loss must be one of", "wgan_gp"]),
    ("gp-with-batchnorm", train("--set", "train.loss=wgan_gp"), ["BatchNorm", "model.d_norm"]),
    ("set-without-equals", train("--set", "train.lr_g"), ["--set takes KEY=VALUE"]),
    ("set-section-value", train("--set", "train=3"), ["'train' is a section"]),
    ("yaml-not-mapping", train("--config", lambda t: _write(t / "c.yaml", "- 1\n- 2\n")), ["c.yaml", "mapping"]),
    ("yaml-syntax", train("--config", lambda t: _write(t / "c.yaml", "train: {lr_g: [\n")), ["c.yaml", "valid YAML"]),
    ("yaml-not-utf8", train("--config", lambda t: _write_bytes(t / "c.yaml", b"\xff\xfe garbage")), ["c.yaml", "UTF-8"]),
    ("name-outside-runs", train("--set", "name=../elsewhere"), ["name", "under runs/", "--run DIR"]),
    ("yaml-missing", train("--config", lambda t: t / "none.yaml"), ["none.yaml", "not found"]),
    ("yaml-is-a-folder", train("--config", lambda t: _recipes(t)),
     ["recipes' is a folder", "--config one of the YAML files in it", "recipes/a.yaml, ", "recipes/b.yml"]),
    ("yaml-wrong-type", train("--config", lambda t: _write(t / "c.yaml", "train:\n  lr_g: fast\n")),
     ["train.lr_g must be float", "fast"]),
    ("yaml-section-not-mapping", train("--config", lambda t: _write(t / "c.yaml", "train: 3\n")),
     ["'train' is a section"]),
    ("seed-negative", train("--seed", "-1"), ["--seed (train.seed)", "0"]),
    ("seed-too-large", train("--seed", str(2**64)), ["train.seed", "0"]),
    ("cuda-missing", train("--device", "cuda"), ["no CUDA GPU", "--device cpu"]),
    ("bad-device", train("--device", "tpu"), ["--device (train.device)", "cuda:N"]),
    # --- run folders
    ("run-incompatible-config", lambda t, mp: [*TRAIN, "--run", str(run_with_config(t, ngf=32)),
                                               "--data", str(t / "images")], ["different config", "model.ngf", "new --run"]),
    ("run-config-garbage", lambda t, mp: [*TRAIN, "--run", str(_garbage_run(t))], ["config.yaml", "another --run"]),
    # an empty config.yaml (a copy cut short) was read as the defaults: "made with a different config (model.ngf...)"
    ("run-config-empty", lambda t, mp: [*TRAIN, "--run", str(_write(run_with_config(t) / "config.yaml", "").parent),
                                        "--data", str(t / "images")], ["config.yaml", "is empty", "delete it"]),
    ("run-is-a-file", lambda t, mp: [*TRAIN, "--run", str(_write(t / "run", "x"))], ["--run", "is a file"]),
    ("run-cannot-be-made", lambda t, mp: [*TRAIN, "--run", "/proc/gankit-run"],
     ["cannot make folder '/proc/gankit-run'", "pass --run a folder you can write"]),
    ("sanity-zero-epochs", lambda t, mp: ["sanity", "--epochs", "0", "--run", str(t / "san")],
     ["--epochs (train.epochs) must be > 0"]),
    ("sanity-no-copies", lambda t, mp: ["sanity", "--copies", "0", "--run", str(t / "san")], ["--copies", "from 1 to"]),
    # it tried to make them all in memory, and said to lower --batch-size, which sanity does not have
    ("sanity-too-many-copies", lambda t, mp: ["sanity", "--copies", str(10**9), "--run", str(t / "san")],
     ["--copies must be from 1 to 100,000", "seed 002: 1000", "got 1000000000"]),
    # a threshold no G can pass (0 or below) or every G passes (1 or above: the error is at most 1), or NaN
    *[(f"sanity-threshold-{name}", lambda t, mp, v=value: ["sanity", "--threshold", v, "--run", str(t / "san")],
       ["--threshold", "between 0 and 1", f"got {value}"]) for name, value in
      (("negative", "-1"), ("zero", "0"), ("one", "1"), ("above-one", "2.5"), ("nan", "nan"))],
    # --- sampling
    ("sample-no-checkpoint", sample(run_with_config), ["no generator.safetensors or checkpoint", "gankit train"]),
    ("sample-not-a-run-folder", sample(lambda t: _write(_mkdir(t / "notrun") / "readme", "hi").parent),
     ["/notrun' is not a gankit run folder", "no config.yaml", "made by gankit train"]),
    # `gankit sample runs` (for a run in it) was told to pass a folder made by gankit train, not which
    ("sample-a-folder-of-runs", sample(lambda t: _write(run_with_config(t) / "metrics.jsonl", "").parent.parent),
     ["' is not a gankit run folder (it has no config.yaml, generator.safetensors or checkpoints/): pass one of the runs it "
      "holds (", "/run)"]),
    ("evaluate-not-a-run-folder", lambda t, mp: ["evaluate", str(_mkdir(t / "notrun")), "-n", "2", "--device", "cpu"],
     ["/notrun' is not a gankit run folder"]),
    ("sample-run-is-its-checkpoints-folder", sample(lambda t: _checkpoints(t).parent),
     ["run/checkpoints' holds checkpoints, not a run", "run' (its parent)", "--checkpoint", "run/checkpoints/last.pt"]),
    ("sample-missing-run", sample(lambda t: t / "nope"), ["does not exist"]),
    # a run folder misspelt beside --checkpoint was passed over without a word
    ("sample-checkpoint-of-a-missing-run", sample(lambda t: t / "nope", "--checkpoint",
                                                  lambda t: run_with_generator(t) / "generator.safetensors"),
     ["run folder '", "/nope' does not exist", "the run folder of --checkpoint", "without --checkpoint"]),
    ("evaluate-checkpoint-of-a-missing-run", lambda t, mp: [
        "evaluate", str(t / "nope"), "--checkpoint", str(run_with_generator(t) / "generator.safetensors"), "-n", "2",
        "--device", "cpu", *_no_inception(mp)], ["run folder '", "/nope' does not exist", "--checkpoint"]),
    ("sample-checkpoint-of-a-run-that-is-a-file", sample(lambda t: _write(t / "notes.txt", "x"), "--checkpoint",
                                                         lambda t: run_with_generator(t) / "generator.safetensors"),
     ["run folder '", "notes.txt' is a file", "the run folder of --checkpoint"]),
    ("sample-a-misspelt-run", sample(lambda t: run_with_config(t).rename(t / "pokemon_64px").with_name("pokemn_64px")),
     ["run folder '", "/pokemn_64px' does not exist: did you mean '", "/pokemon_64px'?"]),
    ("sample-a-file-of-the-run", sample(lambda t: run_with_config(t) / "config.yaml"),  # was "unreadable checkpoint"
     ["config.yaml' is a file of the run folder '", "/run', not weights: pass that folder"]),
    ("sample-corrupt-checkpoint", sample(lambda t: _mkdir(t / "run"), "--checkpoint",
                                        lambda t: _write(t / "c.pt", "garbage")), ["c.pt", "corrupt"]),
    ("sample-corrupt-safetensors", sample(lambda t: _write(t / "g.safetensors", "garbage")),
     ["g.safetensors", "not a readable safetensors", "--checkpoint"]),
    ("sample-metadata-not-json", sample(lambda t: _safetensors(t, "{not json")), ["g.safetensors", "no gankit config"]),
    ("sample-weights-do-not-fit", sample(lambda t: _safetensors(t, json.dumps(to_dict(tiny_cfg(ngf=16))))),
     ["g.safetensors", "do not fit", "size mismatch"]),
    # "checkpoint 'nope.pt' not found", with no word of what to pass
    ("sample-checkpoint-not-found", sample(run_with_generator, "--checkpoint", "nope.pt"),
     ["checkpoint 'nope.pt' not found: pass a checkpoint file (e.g. ", "/run/generator.safetensors"]),
    ("evaluate-checkpoint-named-in-the-run", lambda t, mp: ["evaluate", str(_checkpoints(t).parent.parent), "-n", "2",
                                                           "--checkpoint", "last.pt", "--device", "cpu", *_no_inception(mp)],
     ["checkpoint 'last.pt' not found: did you mean --checkpoint ", "/run/checkpoints/last.pt?"]),
    ("sample-checkpoint-is-a-folder", sample(run_with_generator, "--checkpoint", lambda t: _mkdir(t / "other")),
     ["other", "is a folder", "last.pt"]),
    ("sample-checkpoint-is-the-checkpoints-folder", sample(run_with_generator, "--checkpoint",
                                                          lambda t: _checkpoints(t).parent),
     ["checkpoints' is a folder", "e.g. ", "/run/checkpoints/last.pt, ", "/run/checkpoints/epoch_0002.pt"]),
    ("evaluate-checkpoint-is-a-run-folder", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2",
                                                           "--checkpoint", str(_checkpoints(t).parent.parent)],
     ["run' is a folder", "/run/generator.safetensors, ", "/run/checkpoints/last.pt"]),
    ("sample-bad-device", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "gpu"],
     ["--device", "'gpu'", "cuda:N"]),
    ("fid-weights-is-a-folder", lambda t, mp: ["fid", str(images(t)), str(images(t, name="b")), "--inception-weights",
                                               str(_mkdir(t / "weights"))],
     ["weights' is a folder", "--inception-weights the path of default_1.pt"]),
    ("fid-bad-device", lambda t, mp: ["fid", str(images(t)), str(images(t, name="b")), "--device", "CPU"],
     ["--device", "'CPU'", "auto, cpu"]),
    ("sample-grid-format-without-rgb", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                      "--grid", str(t / "g.blp")], ["g.blp", ".png"]),
    ("sample-out-dir-holds-images", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                   "--out-dir", str(images(t, n=2, name="fakes"))],
     ["fakes", "already holds 2 image", "new or empty"]),
    ("sample-out-dir-holds-one-image", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                      "--out-dir", str(images(t, n=1, name="fakes"))],
     ["fakes", "already holds 1 image: pass", "new or empty"]),
    ("sample-pickle-payload", sample(evil_checkpoint), ["refusing", "evil.pt", "safetensors"]),
    ("sample-seed-negative", sample(run_with_generator, "--seed", "-5"), ["--seed", "-5"]),
    ("sample-seed-too-large", sample(run_with_generator, "--seed", str(2**70)), ["--seed"]),
    ("sample-n-zero", sample(run_with_generator, "-n", "0"), ["-n must be at least 1"]),
    ("sample-grid-without-extension", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                     "--grid", str(t / "grid")], ["--grid", "extension", ".png"]),
    ("sample-out-dir-is-a-file", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                "--out-dir", str(_write(t / "f.txt", "x"))], ["--out-dir", "is a file"]),
    ("sample-grid-is-a-folder", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                               "--grid", str(_mkdir(t / "g.png"))],
     ["--grid '", "g.png' is a folder", "g.png/samples.png"]),
    ("sample-grid-under-a-file", lambda t, mp: ["sample", str(run_with_generator(t)), "--device", "cpu",
                                                "--grid", str(_write(t / "f.txt", "x") / "g.png")],
     ["f.txt", "is a file where a folder is needed", "move or delete it, or choose another path"]),
    # --- evaluation and reports
    ("evaluate-seed-negative", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2", "--seed", "-1",
                                              "--device", "cpu", *_no_inception(mp)], ["--seed", "got -1"]),
    ("evaluate-inception-weights-missing", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2",
                                                          "--inception-weights", str(t / "nope.pt"), "--device", "cpu",
                                                          *_no_inception(mp)], ["nope.pt", "not found"]),
    ("evaluate-n-real-zero", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2", "--n-real", "0",
                                            "--device", "cpu"], ["--n-real", "at least 2"]),
    ("evaluate-data-missing", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2", "--data", str(t / "nope"),
                                             "--device", "cpu"], ["--data", "does not exist", "run's own dataset"]),
    ("evaluate-best-without-eval", lambda t, mp: ["evaluate", str(run_with_generator(t)), "-n", "2", "--checkpoint",
                                                  str(_mkdir(t / "ck") / "best.pt"), "--device", "cpu"],
     ["best.pt", "not found", "eval.every"]),
    ("sample-text-file", sample(lambda t: _write(t / "notes.txt", "hello")), ["notes.txt", "not a checkpoint"]),
    ("fid-batch-size-zero", lambda t, mp: ["fid", str(images(t)), str(images(t, name="b")), "--batch-size", "0",
                                           "--device", "cpu"], ["--batch-size", "at least 1"]),
    # it said "run folder not found: X", with no fix and no word of the run beside it (as sample and train say)
    ("compare-a-misspelt-run", lambda t, mp: ["compare", str(run_with_config(t).rename(t / "pokemon_64px")
                                                         .with_name("pokemn_64px")), str(t / "pokemon_64px")],
     ["run folder '", "/pokemn_64px' does not exist: did you mean '", "/pokemon_64px'?"]),
    # a short name with two letters swapped (difflib's 0.75) had no suggestion
    ("sample-two-letters-swapped", sample(lambda t: run_with_config(t).rename(t / "try1").with_name("tyr1")),
     ["run folder '", "/tyr1' does not exist: did you mean '", "/try1'?"]),
    # it said "X is not a run folder (...); pass a folder written by `gankit train`", other words than sample's, and
    # `gankit compare runs` (for the runs in it) was not told to pass them
    ("compare-not-a-run-folder", lambda t, mp: ["compare", str(_write(_mkdir(t / "notrun") / "readme", "hi").parent)],
     ["/notrun' is not a gankit run folder (it has no config.yaml, metrics.jsonl or samples/): pass a folder made by "
      "gankit train"]),
    ("compare-a-folder-of-runs", lambda t, mp: ["compare", str(_write(run_with_config(t) / "metrics.jsonl", "").parent.parent)],
     ["' is not a gankit run folder (it has no config.yaml", "): pass one of the runs it holds (", "/run)"]),
    ("compare-a-missing-run", lambda t, mp: ["compare", str(t / "nope")],
     ["run folder '", "/nope' does not exist: pass a folder made by `gankit train`"]),
    ("compare-out-is-a-folder", lambda t, mp: ["compare", str(run_with_generator(t)), "-o", str(_mkdir(t / "out"))],
     ["-o", "is a folder", "report.html"]),
    ("compare-out-not-writable", lambda t, mp: ["compare", str(_write(_mkdir(t / "r") / "config.yaml", "name: r").parent),
                                                "-o", "/proc/gankit-r.html"],
     ["'/proc/gankit-r.html'"]),
    # a notes file given by mistake was overwritten with the page, without a word
    ("compare-out-not-html", lambda t, mp: ["compare", str(run_with_generator(t)), "-o", str(_write(t / "notes.txt", "x"))],
     ["-o '", "notes.txt' is not an HTML file name: end it in .html, e.g. -o ", "/notes.html"]),
    ("compare-out-without-extension", lambda t, mp: ["compare", str(run_with_generator(t)), "-o", str(t / "report")],
     ["-o '", "report' is not an HTML file name", "/report.html"]),
    ("compare-out-ends-in-a-slash", lambda t, mp: ["compare", str(run_with_generator(t)), "-o", str(t / "new") + "/"],
     ["-o", "is a folder", "new/report.html"]),
    pytest.param("sample-unknown-label", sample(run_with_generator, "--label", "dragon"), ["dragon", "label"],
                 marks=pytest.mark.xfail(not has_label_option(), strict=True,
                                         reason="`gankit sample --label` is added on another branch")),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip_of(t: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(t / "x.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return t / "x.zip"


def _safetensors(t: Path, config: str) -> Path:
    """A tiny generator's weights whose gankit_config metadata is `config` (JSON text, or not)."""
    from safetensors.torch import save_file

    from gankit.models import build_generator

    save_file(build_generator(tiny_cfg()).state_dict(), str(t / "g.safetensors"), metadata={"gankit_config": config})
    return t / "g.safetensors"


def _recipes(t: Path) -> Path:
    """A folder of recipes, as configs/ is: `--config configs` was called 'not found'."""
    folder = _mkdir(t / "recipes")
    for name in ("a.yaml", "b.yml", "notes.txt"):
        _write(folder / name, "train:\n  epochs: 1\n")
    return folder


def _checkpoints(t: Path) -> Path:
    """run/checkpoints/ holding (empty) last.pt and epoch_0002.pt: what a folder given for a file is told to name."""
    folder = _mkdir(_mkdir(t / "run") / "checkpoints")
    for name in ("last.pt", "epoch_0002.pt"):
        _write(folder / name, "")
    return folder / "last.pt"


def _no_inception(mp) -> list[str]:
    """The real images' features (minutes on a CPU) and the dataset behind them must not be reached: a bad argument
    of `evaluate` is refused before them."""
    import gankit.data
    import gankit.evaluate

    def too_late(*a, **k):
        raise AssertionError("evaluate read the dataset before checking its arguments")

    mp.setattr(gankit.evaluate, "Evaluator", too_late)
    mp.setattr(gankit.data, "load_dataset", too_late)
    return []


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _garbage_run(t: Path) -> Path:
    _mkdir(t / "run")
    _write(t / "run" / "config.yaml", "model: {ngf: [1, 2]}\n")
    return t / "run"


def _tar_with_link_out(t: Path) -> Path:
    import tarfile

    info = tarfile.TarInfo("etc")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc"
    with tarfile.open(t / "x.tar", "w") as tf:
        tf.addfile(info)
    return t / "x.tar"


def _latin1_csv(t: Path) -> Path:
    path = t / "latin.csv"
    path.write_bytes("name,type\nimg_000,caf\xe9\n".encode("latin-1"))
    return path


def _ids(cases):
    return [c.values[0] if hasattr(c, "values") else c[0] for c in cases]


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case, build, needles", CASES, ids=_ids(CASES))
def test_bad_input_is_one_clear_line(case, build, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a stray default run folder would land here, not in the repository
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # and so would a crash report
    monkeypatch.setattr(gankit.train.Trainer, "fit", _must_not_train)
    argv = build(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2, err
    assert len(errors) == 1, err
    assert "Traceback" not in out + err
    # anything else on stderr is a one-line warning, never a dump
    assert all(line.startswith(("error:", "warning:")) for line in err.splitlines()), err
    for word in needles:
        assert word.lower() in errors[0].lower(), f"{word!r} not in: {errors[0]}"
    # nothing is lost: a failed command changes no file that was there before
    assert not (tmp_path / "pwned").exists()
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


def _must_not_train(self):
    raise AssertionError("bad input reached training")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                st = p.stat()
            except OSError:
                continue
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _train_raising(error: BaseException, tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """`gankit train --set a=1` whose config parsing raises `error` (crash files go to tmp_path): (exit code, stderr)."""
    import gankit.config

    def raise_it(*_):
        raise error

    monkeypatch.setattr(gankit.config, "parse_sets", raise_it)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--set", "a=1"])
    return exit_info.value.code, capsys.readouterr().err


def test_a_full_disk_that_no_write_of_gankit_names_is_one_line_that_says_so(tmp_path, monkeypatch, capsys):
    """It said "No space left on device: check the path and its permissions", which points at the wrong cause."""
    code, err = _train_raising(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), tmp_path, monkeypatch, capsys)
    assert code == 2 and err == ("error: No space left on device: the disk is full: free some space, then run the "
                                 "command again (a training run resumes from its last checkpoint)\n")


def test_internal_errors_are_one_line_with_the_traceback_in_a_file(tmp_path, monkeypatch, capsys):
    code, err = _train_raising(ZeroDivisionError("a bug"), tmp_path, monkeypatch, capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: internal error (ZeroDivisionError: a bug)")
    crash = list(tmp_path.glob("gankit-crash-*.txt"))
    assert len(crash) == 1 and str(crash[0]) in err
    text = crash[0].read_text()
    assert "Traceback" in text and "ZeroDivisionError: a bug" in text and "train --set a=1" in text



@pytest.mark.parametrize("error, said", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.11 GiB "
                            "of which 1.19 GiB is free. Including non-PyTorch memory, this process has 77.9 GiB in use."),
     "error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
     "79.11 GiB of which 1.19 GiB is free.): use a smaller --batch-size"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 3221225472 bytes. Error code 12 (Cannot allocate memory)"),
     "error: this machine ran out of memory (tried to allocate 3.00 GiB): use a smaller --batch-size"),
    (MemoryError(), "error: this machine ran out of memory: use a smaller --batch-size"),
])
def test_running_out_of_memory_is_one_line_saying_what_to_lower_not_a_bug(tmp_path, monkeypatch, capsys, error, said):
    code, err = _train_raising(error, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(said), err
    assert not list(tmp_path.glob("gankit-crash-*.txt"))


@pytest.mark.parametrize("world_size, internal", [("2", False), ("1", True)])
def test_a_collective_that_lost_its_peer_under_torchrun_is_not_called_a_bug(tmp_path, monkeypatch, capsys,
                                                                            world_size, internal):
    """Under torchrun, gloo's error when another process went away (rank 0 stopped on a full disk...) is one line
    saying so, with no crash file; the same error in a single process is still an internal error."""
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setenv("RANK", "0")
    peer_gone = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                             "[127.0.0.1]:16817. This is typically caused by a remote worker crashing.")
    code, err = _train_raising(peer_gone, tmp_path, monkeypatch, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: internal error" if internal else "error: another process of this torchrun launch stopped")
    assert bool(list(tmp_path.glob("gankit-crash-*.txt"))) == internal


@pytest.mark.parametrize("restarts, said", [
    ("0", "another machine, there; torchrun's summary is below); the same command resumes from the last checkpoint"),
    ("1", "another machine, there); torchrun now restarts the processes (--max-restarts), which resume from the last "
          "checkpoint")])
def test_a_lost_peer_points_at_torchruns_summary_only_when_torchrun_gives_one(tmp_path, monkeypatch, capsys, restarts,
                                                                              said):
    """torchrun prints its summary of the failed processes when it gives up, not when it restarts them
    (--max-restarts): the line said "torchrun's summary is below" of a run that then resumed and ended well."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", restarts)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    code, err = _train_raising(RuntimeError("Connection closed by peer [127.0.0.1]:16817"), tmp_path, monkeypatch,
                               capsys)
    assert code == 1 and err.strip().endswith(said), err


@pytest.mark.parametrize("rank, local_rank, claimed, says", [
    ("1", "1", True, True),  # process 0, which speaks, was killed: the process that claimed the line says it
    ("0", "0", False, False),  # another process claimed it first (or stopped on an error of its own, which it said)
    ("0", "0", None, True), ("1", "1", None, False)])  # no claim (no store): the first process of the machine
def test_a_lost_peer_is_said_by_the_process_that_claimed_the_line(tmp_path, monkeypatch, capsys, rank, local_rank,
                                                                  claimed, says):
    """`kill -9` of process 0 under torchrun: the process left, not the first of its machine, said nothing (the first,
    which speaks, was the one killed), and only torchrun's summary told that process 0 had died."""
    from gankit import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr(distributed, "_says_the_loss", claimed)
    code, err = _train_raising(RuntimeError("Read error [127.0.0.1]:1941: Connection reset by peer"), tmp_path,
                               monkeypatch, capsys)
    assert code == 1
    assert err.startswith("error: another process of this torchrun launch stopped") if says else err == ""


@pytest.mark.parametrize("rank, local_rank", [("0", "0"), ("1", "1"), ("1", "0")])
def test_a_bad_command_line_under_torchrun_is_said_once_per_machine(monkeypatch, tmp_path, capsys, rank, local_rank):
    """Every torchrun process gets the same command line, so a usage error is printed by the first one only, and
    so is bad input (a missing --data); but the first process of another machine (LOCAL_RANK 0) says it too: that
    machine may be the one whose copy of the data is missing, and its terminal showed no error at all. All exit 2."""
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "many"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert (err.startswith("error: ") and "--epochs" in err) if local_rank == "0" else err == ""
    code, err = _train_raising(DataError(f"data folder '{tmp_path}/nowhere' does not exist"), tmp_path, monkeypatch,
                               capsys)
    assert code == 2
    assert (err.startswith("error: data folder") and err.count("\n") == 1) if local_rank == "0" else err == ""


@pytest.mark.parametrize("args", [["--version"], ["train", "--help"], ["sample", "--help"]])
def test_help_and_version_under_torchrun_are_printed_once_per_machine(monkeypatch, capsys, args):
    """`torchrun --nproc_per_node 2 -m gankit train --help` printed the help twice, once per process."""
    said = []
    for rank, local_rank in (("0", "0"), ("1", "1"), ("2", "0")):
        monkeypatch.setenv("WORLD_SIZE", "4")
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code in (0, None)
        said.append(bool(capsys.readouterr().out.strip()))
    assert said == [True, False, True]


# ----------------------------------------------------------------------------- conditioning, checked directly


class _Data:
    def __init__(self, class_names, labelled=True):
        self.class_names = class_names
        self.labels = torch.zeros(4, dtype=torch.long) if labelled else None


@pytest.mark.parametrize("arch, data, message", [
    ("acgan", _Data([], labelled=False), "needs labels"),
    ("acgan", _Data(["fire"]), "at least 2 classes, but the labels give 1 class ('fire')"),
    ("acgan", _Data(["fire", "water"]), None),
    ("dcgan", _Data([], labelled=False), None),
    ("dcgan", _Data(["fire"]), None),  # an unconditional model ignores labels
])
def test_check_conditioning(arch, data, message):
    from gankit.config import check_conditioning
    from gankit.errors import ConfigError

    cfg = build_config({"model": {"arch": arch}})
    if message is None:
        check_conditioning(cfg, data)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_conditioning(cfg, data)


def test_check_conditioning_on_a_real_single_class_folder(tmp_path):
    from gankit.config import check_conditioning
    from gankit.data import load_dataset
    from gankit.errors import ConfigError

    ds = load_dataset(images(tmp_path, n=4, classes=("cat",)), 16, labels="folders", progress=False)
    with pytest.raises(ConfigError, match="1 class \\('cat'\\)"):
        check_conditioning(build_config({"model": {"arch": "acgan"}}), ds)


def test_class_folders_one_level_down_are_named_with_the_data_path_to_pass(tmp_path):
    """`--data d --labels folders` for d/train/{cat,dog}/*.png gave one class, 'train', and the advice to put the
    images in sub-folders of the data folder, one per class, which they are, one level down."""
    from gankit.config import check_conditioning
    from gankit.data import load_dataset
    from gankit.errors import ConfigError

    data = tmp_path / "d"
    images(data, n=4, name="train", classes=("cat", "dog"))
    ds = load_dataset(data, 16, labels="folders", progress=False)
    cfg = build_config({"model": {"arch": "acgan"}, "data": {"path": str(data), "labels": "folders"}})
    with pytest.raises(ConfigError, match=re.escape(
            f"1 class ('train'): the sub-folders of that one ('cat', 'dog') look like the classes: pass --data "
            f"{data / 'train'}, or drop --labels")):
        check_conditioning(cfg, ds)


@pytest.mark.parametrize("labels, fix", [
    ("folders", "put the images in sub-folders of the data folder, one per class, or drop --labels"),
    ("types.csv", "pass a --label-column that gives two classes or more, or drop --labels")])
def test_a_single_class_says_to_fix_the_labels_or_drop_them(labels, fix):
    """`--labels folders` on a folder with one sub-folder (the Pokemon set's images/) suggested --set
    model.arch=dcgan, when the labels are what to fix, or to drop (they alone made the model an ACGAN)."""
    from gankit.config import check_conditioning
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        check_conditioning(build_config({"model": {"arch": "acgan"}, "data": {"labels": labels}}), _Data(["images"]))
    assert fix in str(e.value) and "--set model.arch=dcgan" not in str(e.value), e.value


def test_the_crash_file_holds_a_command_line_that_is_not_utf8(tmp_path, monkeypatch):
    """Writing it failed on a surrogate in the arguments (a Latin-1 path): the crash handler itself crashed."""
    from gankit.cli import _write_traceback

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError:
        path = _write_traceback(["train", "--data", os.fsdecode(b"d\xe9")])
    text = Path(path).read_text(encoding="utf-8")
    assert "ZeroDivisionError: a bug" in text and "--data d\\udce9" in text
