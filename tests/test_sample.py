"""Sampling from a trained run: shapes, files, and determinism by seed (library and command line)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_layers
from gankit.checkpoint import load_checkpoint, save_checkpoint
from gankit.errors import GankitError
from gankit.sample import load_run_generator
from gankit.train import run_training


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import make_image_folder

    root = tmp_path_factory.mktemp("sample")
    make_image_folder(root / "images")
    return run_training(tiny_layers(root / "images", epochs=1), root / "run")


def test_sample_shapes_and_seed_determinism(trained_run):
    gen = load_run_generator(trained_run, device="cpu")
    a, b, c = gen.sample(5, seed=1), gen.sample(5, seed=1), gen.sample(5, seed=2)
    assert a.shape == (5, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the checkpoint and the safetensors export hold the same generator
    from_ckpt = load_run_generator(trained_run, trained_run / "checkpoints/last.pt", device="cpu")
    assert torch.equal(from_ckpt.sample(5, seed=1), a)


def test_sample_grids_leave_no_empty_cell_where_a_rectangle_fits(trained_run, tmp_path):
    """`sample -n 3` drew a 2 x 2 grid with a black cell, -n 10 a 4 x 3 with two."""
    from typer.testing import CliRunner

    from gankit.cli import app

    for n, (columns, rows) in ((3, (3, 1)), (10, (5, 2)), (7, (3, 3))):
        r = CliRunner().invoke(app, ["sample", str(trained_run), "-n", str(n), "--grid", str(tmp_path / f"{n}.png"),
                                     "--device", "cpu"])
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / f"{n}.png").size == (columns * 18 + 2, rows * 18 + 2)


@pytest.mark.slow
def test_sample_command_writes_grid_and_files(trained_run, tmp_path):
    cmd = [sys.executable, "-m", "gankit", "sample", str(trained_run), "-n", "6", "--seed", "3",
           "--grid", str(tmp_path / "g.png"), "--out-dir", str(tmp_path / "out"), "--device", "cpu"]
    subprocess.run(cmd, check=True, capture_output=True)
    assert Image.open(tmp_path / "g.png").size == (3 * 18 + 2, 2 * 18 + 2)  # 3 x 2 images of 16 px, 2 px apart
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 6 and Image.open(files[0]).size == (16, 16)
    again = subprocess.run(cmd, capture_output=True, text=True)  # the folder holds this draw: nothing to draw
    assert again.returncode == 0 and f"all 6 images are already in {tmp_path / 'out'}: nothing to write there" \
        in again.stderr and "wrote 0 images" not in again.stdout
    other = subprocess.run([*cmd, "--seed", "4"], capture_output=True, text=True)  # another draw: nothing overwritten
    assert other.returncode == 2 and "already holds 6 images of another draw (--seed 3)" in other.stderr
    subprocess.run([*cmd[:-3], str(tmp_path / "out2"), "--device", "cpu"], check=True, capture_output=True)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted((tmp_path / "out2").glob("*.png"))]


def test_a_draw_already_written_whole_says_so_in_one_line(trained_run, tmp_path, capsys):
    """Its rerun said "continuing: 3 of 3 images already there" and "wrote 0 images to D (3 in all)"."""
    from gankit.cli import main

    out = tmp_path / "out"
    command = ["sample", str(trained_run), "-n", "3", "--out-dir", str(out), "--device", "cpu"]
    for expected_out, expected_err in (([f"wrote 3 images to {out}"], []),
                                       ([], [f"all 3 images are already in {out}: nothing to draw"])):
        with pytest.raises(SystemExit) as done:
            main(command)
        said = capsys.readouterr()
        assert done.value.code == 0 and said.out.splitlines() == expected_out
        assert said.err.splitlines() == expected_err, said.err


def test_writing_many_images_reports_progress_and_draws_a_batch_at_a_time(trained_run, tmp_path, monkeypatch,
                                                                         capsys):
    """--out-dir with many images (a 50,000-image FID set takes minutes, and 39 GB as one tensor at 256 px): each
    batch is written before the next is drawn, with progress in lines into a log file (every LINE_EVERY seconds,
    here 0: after each image but the last)."""
    from gankit import console
    from gankit.cli import main
    from gankit.sample import LoadedGenerator

    out, on_disk = tmp_path / "out", []
    batches = LoadedGenerator.batches

    def batches_of_two(self, z, labels=None, batch_size=256):
        for batch in batches(self, z, labels, batch_size=2):
            on_disk.append(len(list(out.glob("*.png"))))
            yield batch

    monkeypatch.setattr(LoadedGenerator, "batches", batches_of_two)
    monkeypatch.setattr(console, "LINE_EVERY", 0.0)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", "3", "--out-dir", str(out), "--device", "cpu"])
    assert done.value.code == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == [f"drawing into {out}: 1/3 images",
                                                    f"drawing into {out}: 2/3 images"], err
    assert on_disk == [0, 2] and len(list(out.glob("*.png"))) == 3
    gen = load_run_generator(trained_run, device="cpu")
    assert torch.equal(torch.cat(list(batches(gen, gen.noise(3, 0), batch_size=2))), gen.sample(3, seed=0))


def test_ctrl_c_while_drawing_into_a_folder_says_what_it_wrote_and_leaves_no_cut_image(trained_run, tmp_path,
                                                                                      monkeypatch, capsys):
    """Ctrl-C during `sample --out-dir` (50,000 images take minutes): the image being written may be cut short, and
    `gankit fid` would then skip it; it is removed, and a line says which images are there and how to go on (the
    same command continues the draw)."""
    import torchvision.utils

    from gankit.cli import main

    out, written = tmp_path / "out", []
    save = torchvision.utils.save_image

    def save_then_ctrl_c(img, f, **kw):
        if len(written) == 3:
            f.write(b"\x89PNG cut short")
            raise KeyboardInterrupt
        save(img, f, **kw)
        written.append(f)

    monkeypatch.setattr(torchvision.utils, "save_image", save_then_ctrl_c)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", "6", "--out-dir", str(out), "--device", "cpu"])
    assert done.value.code == 130
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["00000.png", "00001.png", "00002.png"]
    err = capsys.readouterr().err
    assert (f"interrupted: 3 of 6 images written to {out} (00000.png to 00002.png); run the same command again to "
            "draw the rest") in err, err


def test_out_dir_names_sort_in_the_images_order_past_99999_images(trained_run, tmp_path, monkeypatch, capsys):
    """`sample -n 100001 --out-dir` named its images 00000.png ... 99999.png, 100000.png: in name order (ls, glob,
    a video tool's pattern) 100000.png came before 10001.png. The names now have as many digits as the largest
    index, and the draw, stopped and given again, goes on from them."""
    import torchvision.utils

    from gankit.cli import main
    from gankit.sample import png_name

    n, out, written = 100_001, tmp_path / "out", []
    names = [png_name(i, n) for i in (0, 9, 10_001, 99_999, 100_000)]
    assert names == sorted(names) and names[0] == "000000.png" and png_name(3, 6) == "00003.png"
    save = torchvision.utils.save_image

    def save_then_ctrl_c(img, f, **kw):
        if len(written) == 2:
            raise KeyboardInterrupt
        save(img, f, **kw)
        written.append(f)

    monkeypatch.setattr(torchvision.utils, "save_image", save_then_ctrl_c)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", str(n), "--out-dir", str(out), "--device", "cpu"])
    assert done.value.code == 130
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["000000.png", "000001.png"]
    assert f"images written to {out} (000000.png to 000001.png)" in capsys.readouterr().err
    from gankit.sample import images_drawn, read_draw_record

    assert images_drawn(out, read_draw_record(out)) == 2  # the same command continues after them


def test_the_same_command_continues_an_interrupted_draw_into_a_folder(trained_run, tmp_path, monkeypatch, capsys):
    """An interrupted `sample RUN -n 5000 --out-dir fakes` could not go on: the same command was refused ("already
    holds 1024 images"), and a second folder's names (00000.png...) clashed with the first's, so that `gankit fid`
    could not take them as one set. The same command now continues the draw from the batch it stopped in (here of 4
    images: drawn again, the same images), into the same images as a draw that ran through; a hidden record of
    the draw, which `gankit fid` skips, tells it from another command's, which is refused."""
    import torchvision.utils

    import gankit.sample
    from gankit.cli import main
    from gankit.data.folder import load_folder

    monkeypatch.setattr(gankit.sample, "DRAW_CHUNK", 4, raising=False)
    save, saved = torchvision.utils.save_image, []

    def save_then_ctrl_c(img, f, **kw):
        if len(saved) == 5:
            raise KeyboardInterrupt
        save(img, f, **kw)
        saved.append(img)

    def sample(out, *options):
        with pytest.raises(SystemExit) as done:
            main(["sample", str(trained_run), "-n", "9", "--out-dir", str(out), "--device", "cpu", *options])
        return done.value.code, capsys.readouterr().err

    whole = tmp_path / "whole"
    assert sample(whole)[0] == 0
    monkeypatch.setattr(torchvision.utils, "save_image", save_then_ctrl_c)
    out = tmp_path / "fakes"
    assert sample(out)[0] == 130 and len(list(out.glob("*.png"))) == 5
    monkeypatch.setattr(torchvision.utils, "save_image", save)
    for options in (["--seed", "1"], ["-n", "10"]):  # another draw, refused: its images would be a mix
        code, err = sample(out, *options)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--out-dir '{out}' already holds 5 images of another draw (" in err and "to continue it" in err
    monkeypatch.setattr(torchvision.utils, "save_image", lambda img, f, **kw: (saved.append(img), save(img, f, **kw)))
    del saved[:]
    code, err = sample(out)
    assert code == 0 and "continuing: 5 of 9 images already there" in err, err
    assert len(saved) == 5  # images 4 to 8: the batch of 4 to 7 drawn again
    names = sorted(p.name for p in whole.glob("*.png"))
    assert names == sorted(p.name for p in out.glob("*.png")) and len(names) == 9
    assert [(out / name).read_bytes() for name in names] == [(whole / name).read_bytes() for name in names]
    ds = load_folder(out, 16, cache_dir=tmp_path / "cache", progress=False)  # as `gankit fid` reads a folder
    assert len(ds) == 9 and (out / gankit.sample.DRAW_RECORD).is_file() and not capsys.readouterr().err
    (out / "x.png").write_bytes((out / "00000.png").read_bytes())  # an image the draw did not make
    code, err = sample(out)
    assert code == 2 and "already holds 10 images, one not of this draw (e.g. 'x.png'): pass" in err, err


def test_a_kill_while_the_grid_is_written_leaves_the_grid_that_was_there(trained_run, tmp_path, monkeypatch):
    """`sample --grid g.png` wrote into g.png itself: a kill -9 halfway through the write (here: an exception that no
    handler takes, after half the bytes) left a cut image where the last grid was. Now it goes to a temporary name."""
    from typer.testing import CliRunner

    from gankit.cli import app

    class Killed(BaseException):
        pass

    def cut(image, fp, format=None, **kw):
        with open(fp, "wb") as f:
            f.write(before[:len(before) // 2])
        raise Killed

    grid = tmp_path / "g.png"
    args = ["sample", str(trained_run), "-n", "4", "--grid", str(grid), "--device", "cpu"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = grid.read_bytes()
    monkeypatch.setattr(Image.Image, "save", cut)
    with pytest.raises(Killed):
        CliRunner().invoke(app, [*args, "--seed", "7"])
    assert grid.read_bytes() == before


def test_a_continued_draw_with_a_grid_writes_the_grid_of_a_draw_that_ran_through(trained_run, tmp_path, monkeypatch,
                                                                                  capsys):
    """`sample --grid g.png --out-dir f`, interrupted, then run again: the grid, its images before the batch the draw
    stopped in read back from their pngs, is that of a draw that ran through (also of one without --out-dir); the
    pngs from that batch on are written (here of 4 images: 4 to 8), the others left as they are."""
    import torchvision.utils

    import gankit.sample
    from gankit.cli import main

    monkeypatch.setattr(gankit.sample, "DRAW_CHUNK", 4, raising=False)
    save, written = torchvision.utils.save_image, []

    def save_then_ctrl_c(img, f, **kw):
        if not hasattr(f, "write"):  # the grid, by path (the pngs are written into files: write_png)
            return save(img, f, **kw)
        if stop and len(written) == 5:
            raise KeyboardInterrupt
        save(img, f, **kw)
        written.append(img)

    def sample(*options):
        with pytest.raises(SystemExit) as done:
            main(["sample", str(trained_run), "-n", "9", "--device", "cpu", *options])
        return done.value.code

    assert sample("--grid", str(tmp_path / "whole.png")) == 0
    monkeypatch.setattr(torchvision.utils, "save_image", save_then_ctrl_c)
    out, grid, stop = tmp_path / "fakes", tmp_path / "g.png", True
    assert sample("--grid", str(grid), "--out-dir", str(out)) == 130 and not grid.exists()
    stop, written[:] = False, []
    assert sample("--grid", str(grid), "--out-dir", str(out)) == 0
    assert len(written) == 5 and len(list(out.glob("*.png"))) == 9
    assert np.array_equal(np.asarray(Image.open(grid)), np.asarray(Image.open(tmp_path / "whole.png")))


def test_a_grid_beside_a_finished_draw_is_made_from_its_pngs(trained_run, tmp_path, monkeypatch, capsys):
    """`sample -n N --grid g.png --out-dir d` run again over a finished d drew every image again for the grid, though
    its pngs hold them (the same draw record: the same images). The grid is now read from them, byte for byte the
    same, and the generator is not called."""
    from gankit.cli import main
    from gankit.sample import LoadedGenerator

    def sample(grid):
        with pytest.raises(SystemExit) as done:
            main(["sample", str(trained_run), "-n", "7", "--seed", "3", "--grid", str(grid), "--out-dir",
                  str(tmp_path / "d"), "--device", "cpu"])
        assert done.value.code == 0

    sample(tmp_path / "first.png")
    calls, batches = [], LoadedGenerator.batches
    monkeypatch.setattr(LoadedGenerator, "batches", lambda *a, **k: calls.append(a) or batches(*a, **k))
    sample(tmp_path / "again.png")
    assert not calls and (tmp_path / "again.png").read_bytes() == (tmp_path / "first.png").read_bytes()
    assert "all 7 images are already in" in capsys.readouterr().err


def test_a_draw_into_a_folder_is_not_continued_on_another_type_of_device(trained_run, tmp_path, capsys):
    """A draw started with `--device cuda` and continued with `--device cpu` went on, its images rounded otherwise
    than those of a draw that ran through: the record holds the device's type, and the continuation on another is
    refused in one line naming the draw's --device."""
    import json

    from gankit.cli import main
    from gankit.sample import DRAW_RECORD

    out = tmp_path / "fakes"
    command = ["sample", str(trained_run), "-n", "3", "--out-dir", str(out), "--device", "cpu"]
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 0
    record = json.loads((out / DRAW_RECORD).read_text())
    assert record["device"] == "cpu"
    (out / DRAW_RECORD).write_text(json.dumps({**record, "device": "cuda"}))  # as a draw on a GPU records it
    (out / "00002.png").unlink()  # interrupted before its last image
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(command)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert f"--out-dir '{out}' already holds 2 images of another draw (--device cuda): pass" in err, err
    assert not (out / "00002.png").exists()


def test_a_second_draw_into_a_folder_another_process_draws_into_is_refused(trained_run, tmp_path, monkeypatch,
                                                                           capsys):
    """The same `sample RUN -n 50000 --out-dir fakes` run twice at once: the second removed the first's temporary
    files (those of pngs a kill cut short, it took them for) and both wrote the same names. A draw holds its folder
    (runlock), and a second one there is refused in one line, touching nothing."""
    from gankit import runlock
    from gankit.cli import main
    from gankit.sample import hold_draw

    out = tmp_path / "fakes"
    out.mkdir()
    being_written = out / ".00003.png.x1y2.tmp"
    being_written.write_bytes(b"\x89PNG")
    monkeypatch.setattr(runlock, "RETRY_SECONDS", 0)
    command = ["sample", str(trained_run), "-n", "6", "--out-dir", str(out), "--device", "cpu"]
    with hold_draw(out):  # as the first draw's process holds it
        with pytest.raises(SystemExit) as done:
            main(command)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.count("\n") == 1, err
        assert f"another gankit process is drawing into --out-dir '{out}': wait for it to end" in err
        assert [p.name for p in out.iterdir()] == [being_written.name]
    with pytest.raises(SystemExit) as done:
        main(command)  # once it has ended
    assert done.value.code == 0 and len(list(out.glob("*.png"))) == 6


@pytest.mark.slow
def test_kill_9_while_drawing_into_a_folder_leaves_no_cut_image_under_its_name(trained_run, tmp_path):
    """`kill -9` during `sample --out-dir` left the png being written cut short under its final name, where a
    continued draw would trust it: each png is written under a hidden temporary name, then renamed into place (the
    continued draw removes the temporary file)."""
    from gankit.cli import main

    out = tmp_path / "out"
    script = f"""
import os, signal, sys
import torchvision.utils
from gankit.cli import main

save, written = torchvision.utils.save_image, []

def save_then_kill(img, f, **kw):
    if len(written) == 3:
        cut = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f  # (a path: written in place)
        cut.write(b"\\x89PNG cut short")
        cut.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    save(img, f, **kw)
    written.append(f)

torchvision.utils.save_image = save_then_kill
main(["sample", {str(trained_run)!r}, "-n", "6", "--out-dir", {str(out)!r}, "--device", "cpu"])
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    pngs = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert pngs == ["00000.png", "00001.png", "00002.png"]
    for png in pngs:
        Image.open(out / png).load()  # whole images
    assert [p.name for p in out.glob(".00003.png.*.tmp")]  # what the kill cut short
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", "6", "--out-dir", str(out), "--device", "cpu"])
    assert done.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == [".gankit-draw.json", *(f"{i:05d}.png" for i in range(6))]


@pytest.mark.parametrize("args, hint", [(["-n", "1000000"], "--out-dir DIR, or"),
                                        (["-n", "1000", "--interpolate"], "--grid FILE.gif")], ids=["grid", "strip"])
def test_a_grid_too_large_for_one_image_is_refused_before_drawing(trained_run, tmp_path, monkeypatch, capsys, args, hint):
    """A million 16 px images would be an 18,002 px square grid (WebP's limit is 16,383 a side, and the PNG would
    take gigabytes to build): one line saying so and what to do instead, and no image drawn."""
    from gankit.cli import GRID_MAX_SIDE, _check_grid_size, main
    from gankit.sample import LoadedGenerator

    def no_drawing(*a, **k):
        raise AssertionError("drew images for a grid it then refused")

    monkeypatch.setattr(LoadedGenerator, "batches", no_drawing)
    monkeypatch.setattr(LoadedGenerator, "sample", no_drawing)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), *args, "--grid", str(tmp_path / "g.png"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.startswith("error: --grid of") and hint in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
    side = (GRID_MAX_SIDE - 2) // 18  # columns of 16 px images (+2 px padding) that still fit
    _check_grid_size(side, 1, 16)
    with pytest.raises(GankitError, match="16400 x 20 px"):
        _check_grid_size(side + 1, 1, 16)


def test_a_grid_that_pillow_would_not_open_is_refused_before_drawing(trained_run, tmp_path, monkeypatch, capsys):
    """`sample -n 600000 --grid g.png` drew a 13,952 px square grid (within 16,383 a side): 195 megapixels, which
    Pillow refuses to open (DecompressionBombError above twice Image.MAX_IMAGE_PIXELS), and gankit's own loader
    skips. Refused in one line before drawing, as a grid too wide is."""
    from gankit.cli import _check_grid_size, main
    from gankit.sample import LoadedGenerator

    def no_drawing(*a, **k):
        raise AssertionError("drew images for a grid it then refused")

    monkeypatch.setattr(LoadedGenerator, "batches", no_drawing)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", "600000", "--grid", str(tmp_path / "g.png"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.splitlines() == [err], err
    assert err.startswith("error: --grid of 775 x 775 images at 16px would be 13952 x 13952 px") and "(195 megapixels, over the 179 Pillow opens)" in err
    assert "--out-dir DIR, or draw fewer with -n" in err and not (tmp_path / "g.png").exists()
    from gankit.cli import grid_max_pixels

    most = grid_max_pixels()
    assert most == 2 * Image.MAX_IMAGE_PIXELS and 13952 ** 2 > most
    side = (math.isqrt(most) - 2) // 18  # the largest square grid of 16 px images Pillow opens
    _check_grid_size(side, side, 16)
    with pytest.raises(GankitError, match="Pillow opens"):
        _check_grid_size(side + 1, side, 16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's limit lifted: only the side's
    _check_grid_size(side + 1, side + 1, 16)


def test_sample_without_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "gankit", "sample", str(tmp_path / "empty")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_damaged_generator_safetensors_falls_back_to_the_runs_checkpoint(trained_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "run")
    expected = load_run_generator(run, device="cpu").sample(4, seed=3)
    exported = run / "generator.safetensors"
    exported.write_bytes(exported.read_bytes()[:2000])  # a copy cut short
    capsys.readouterr()
    gen = load_run_generator(run, device="cpu")
    assert "generator.safetensors' cannot be used" in (err := capsys.readouterr().err) and "last.pt (iteration" in err
    assert torch.equal(gen.sample(4, seed=3), expected)  # the checkpoint holds the same generator
    shutil.rmtree(run / "checkpoints")  # nothing to fall back to: the file's own error
    with pytest.raises(GankitError, match="not a readable safetensors file"):
        load_run_generator(run, device="cpu")


@pytest.mark.parametrize("standing", [True, False])
def test_a_checkpoint_of_an_ema_run_draws_with_the_ema_generator(tmp_path, standing):
    """The EMA generator made the run's samples, FID and generator.safetensors: a checkpoint (best.pt,
    epoch_NNNN.pt, last.pt) given to sample or evaluate must draw the same images, not the raw G's."""
    from conftest import make_image_folder

    make_image_folder(tmp_path / "images")
    layers = tiny_layers(tmp_path / "images", epochs=1)
    layers[0]["train"].update(ema=0.9, ema_standing_stats=standing)
    run = run_training(layers, tmp_path / "run")
    exported = load_run_generator(run, device="cpu").sample(6, seed=5)
    from_checkpoint = load_run_generator(run, checkpoint=run / "checkpoints/last.pt", device="cpu").sample(6, seed=5)
    raw = load_run_generator(run, device="cpu")  # what a checkpoint gave before: the raw G's images
    raw.G.load_state_dict(torch.load(run / "checkpoints/last.pt", weights_only=True)["G"])
    off = (from_checkpoint - exported).abs().max().item()
    assert off < 1e-6 and (raw.sample(6, seed=5) - exported).abs().max().item() > 100 * max(off, 1e-8)


def test_interpolate_strip_and_gif(trained_run, tmp_path):
    from gankit.sample import interpolate, slerp

    z0, z1 = torch.randn(16), torch.randn(16)
    path = slerp(z0, z1, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    gen = load_run_generator(trained_run, device="cpu")
    imgs = interpolate(gen, 0, 1, 6)
    assert imgs.shape == (6, 3, 16, 16)
    assert torch.allclose(imgs[0], gen.sample(1, seed=0)[0], atol=1e-5)
    r = subprocess.run([sys.executable, "-m", "gankit", "sample", str(trained_run), "-n", "6", "--interpolate",
                        "--grid", str(tmp_path / "walk.gif"), "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 10  # 6 forth + 4 back


# ------------------------------------------------------------------ conditional runs: --label, --same-noise-labels

CLASSES = ["fire", "grass", "water"]


@pytest.fixture
def conditional_gen():
    """An untrained ACGAN generator of three classes (the sampling code only needs G(z, labels)). Its layers'
    weights are scaled up: at their initial scale its images are all within 0.005 of gray, so two classes' images
    would match to a PNG's step (0.008) and a check of which class was drawn could not fail."""
    from gankit.config import build_config
    from gankit.models import build_generator
    from gankit.sample import LoadedGenerator

    cfg = build_config({"data": {"resolution": 16},
                        "model": {"arch": "acgan", "num_classes": 3, "channels": 3, "nz": 16, "ngf": 8}})
    torch.manual_seed(0)
    G = build_generator(cfg).eval()
    with torch.no_grad():
        for layer in G.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                layer.weight.mul_(10)
    gen = LoadedGenerator(G, cfg, CLASSES, torch.device("cpu"))
    one, other = gen.sample(4, seed=0, labels=torch.full((4,), 0)), gen.sample(4, seed=0, labels=torch.full((4,), 2))
    assert (one - other).abs().mean() > 0.1  # classes far apart
    return gen


def test_conditional_sampling_by_label(conditional_gen):
    gen = conditional_gen
    assert gen.conditional and gen.label_index("grass") == 1
    water = gen.sample(4, seed=2, labels=torch.full((4,), 2))
    fire = gen.sample(4, seed=2, labels=torch.zeros(4, dtype=torch.long))
    assert water.shape == (4, 3, 16, 16) and not torch.allclose(water, fire)
    assert torch.equal(gen.sample(4, seed=2, labels=torch.full((4,), 2)), water)
    assert torch.equal(gen.noise(4, 2), gen.noise(4, 2))
    # interpolation keeps one class along the walk and starts at the first seed's image
    from gankit.sample import interpolate

    walk = interpolate(gen, 2, 3, 5, label=1)
    assert walk.shape == (5, 3, 16, 16)
    assert torch.allclose(walk[0], gen.sample(1, seed=2, labels=torch.ones(1, dtype=torch.long))[0], atol=1e-5)


def test_same_noise_labels_rows_share_noise(conditional_gen):
    gen = conditional_gen
    rows = gen.same_noise_labels(5, seed=3)
    assert rows.shape == (3, 5, 3, 16, 16)
    for i in range(3):  # row i is class i with the noise of seed 3 in each column
        assert torch.allclose(rows[i], gen.sample(5, seed=3, labels=torch.full((5,), i)))
    assert not torch.allclose(rows[0], rows[1])
    assert gen.same_noise_labels(5, seed=3, labels=[2, 0]).shape == (2, 5, 3, 16, 16)


def test_label_errors_are_one_line(conditional_gen, trained_run):
    from gankit.errors import GankitError

    with pytest.raises(GankitError) as err:
        conditional_gen.label_index("electric")
    assert str(err.value) == "unknown label 'electric': this run knows fire, grass, water"
    with pytest.raises(GankitError) as err:
        conditional_gen.label_index("wter")
    assert str(err.value) == "unknown label 'wter': did you mean 'water'? this run knows fire, grass, water"
    unconditional = load_run_generator(trained_run, device="cpu")
    assert not unconditional.conditional
    for call, what in ((lambda: unconditional.label_index("fire"), "label fire"),
                       (lambda: unconditional.same_noise_labels(4, 0), "same_noise_labels"),
                       (lambda: unconditional.sample(2, 0, labels=torch.zeros(2, dtype=torch.long)), "labels")):
        with pytest.raises(GankitError) as err:  # named as passed from Python: was '--label fire', no flag given
            call()
        assert str(err.value).startswith(f"{what} needs a conditional run") and "\n" not in str(err.value)


def test_a_label_in_another_case_is_its_class_and_long_label_lists_are_cut(conditional_gen):
    """`--label FIRE` for a run's `fire` was refused with no suggestion, and a run with a class per image (a column of
    names) listed its 1016 classes in the error line."""
    import copy

    from gankit.errors import GankitError
    from gankit.sample import LoadedGenerator

    gen = conditional_gen
    assert gen.label_index("FIRE") == 0 and gen.label_index("Water") == 2
    twins = LoadedGenerator(gen.G, gen.cfg, ["Fire", "fire", "water"], gen.device)  # two classes: which is meant?
    with pytest.raises(GankitError) as err:
        twins.label_index("FIRE")
    assert str(err.value) == "unknown label 'FIRE': did you mean 'Fire' or 'fire'? this run knows Fire, fire, water"
    cfg = copy.deepcopy(gen.cfg)
    cfg.model.num_classes = 100
    many = LoadedGenerator(gen.G, cfg, [f"c{i:03d}" for i in range(100)], gen.device)
    with pytest.raises(GankitError) as err:
        many.label_index("C0999")
    assert str(err.value) == ("unknown label 'C0999': did you mean 'c099'? this run knows 100 classes: c000, c001, "
                              "c002, c003, c004 and 95 more")


def test_sample_command_label_options(conditional_gen, trained_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import gankit.sample
    from gankit.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["sample", str(trained_run), "--label", "fire", "--device", "cpu"])
    assert r.exit_code != 0 and str(r.exception).startswith("--label fire needs a conditional run")
    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: conditional_gen)

    r = runner.invoke(app, ["sample", "run", "--label", "water", "-n", "4", "--out-dir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    expected = conditional_gen.sample(4, seed=0, labels=torch.full((4,), 2))
    got = torch.stack([torch.from_numpy(np.array(Image.open(tmp_path / "w" / f"{i:05d}.png"))) for i in range(4)])
    assert (got.permute(0, 3, 1, 2).float() / 127.5 - 1 - expected).abs().max() < 0.01  # every image is water

    r = runner.invoke(app, ["sample", "run", "--label", "ice"])
    assert r.exit_code != 0 and "this run knows fire, grass, water" in str(r.exception)

    out = tmp_path / "types.png"
    r = runner.invoke(app, ["sample", "run", "--same-noise-labels", "--label", "grass", "--label", "water",
                            "--label", "fire", "-n", "6", "--grid", str(out)])
    assert r.exit_code == 0, r.output
    im = Image.open(out)
    assert im.height == 3 * 16 + 4 * 2 and im.width > 6 * 16 + 7 * 2  # 3 rows of 6, plus the names at the left


def test_conditional_generator_draws_every_class_in_turn():
    from gankit.config import build_config
    from gankit.models import build_generator, sample_z
    from gankit.sample import LoadedGenerator, interpolate

    cfg = build_config({"data": {"resolution": 16},
                        "model": {"arch": "acgan", "num_classes": 3, "channels": 3, "nz": 16, "ngf": 8}})
    torch.manual_seed(0)
    G = build_generator(cfg).eval()
    gen = LoadedGenerator(G, cfg, ["a", "b", "c"], torch.device("cpu"))
    images = gen.sample(7, seed=0, batch_size=4)
    z = sample_z(7, cfg, "cpu", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(images, G(z, torch.arange(7) % 3), atol=1e-6)
        chosen = gen.sample(7, seed=0, labels=torch.full((7,), 2))
        assert torch.allclose(chosen, G(z, torch.full((7,), 2)), atol=1e-6)
    assert not torch.allclose(chosen, images)
    assert interpolate(gen, 0, 1, 4, label=1).shape == (4, 3, 16, 16)


def test_label_options_on_a_trained_acgan_run(tmp_path):
    """Class names travel from the label folders through generator.safetensors to --label and the label grid."""
    from typer.testing import CliRunner

    from conftest import make_image_folder
    from gankit.cli import app

    make_image_folder(tmp_path / "images", n=16, classes=("fire", "water"))
    layers = tiny_layers(tmp_path / "images", epochs=1, max_steps=2)
    layers[0]["data"]["labels"] = "folders"
    layers[0]["model"]["arch"] = "acgan"
    run = run_training(layers, tmp_path / "run")
    gen = load_run_generator(run, device="cpu")
    assert gen.conditional and gen.labels == ["fire", "water"]

    runner = CliRunner()
    r = runner.invoke(app, ["sample", str(run), "--same-noise-labels", "-n", "3", "--grid", str(tmp_path / "rows.png"),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "rows.png").height == 2 * 16 + 3 * 2  # one row per class
    r = runner.invoke(app, ["sample", str(run), "--label", "grass", "--device", "cpu"])
    assert "unknown label 'grass': this run knows fire, water" in str(r.exception)
    hint = "the images cycle through the run's 2 classes in order (fire, water): --same-noise-labels"
    for label, said in (([], True), (["--label", "water"], False)):  # no --label: how the grid is laid out
        r = runner.invoke(app, ["sample", str(run), "-n", "4", "--grid", str(tmp_path / "g.png"), *label, "--device", "cpu"])
        assert r.exit_code == 0 and (hint in r.output) == said, r.output
    # fewer images than classes: the classes left out are said
    r = runner.invoke(app, ["sample", str(run), "-n", "1", "--grid", str(tmp_path / "g.png"), "--device", "cpu"])
    assert r.exit_code == 0 and "(fire, water); -n 1 draws only the first:" in r.output, r.output


def test_the_readmes_python_snippet_runs_as_written_and_draws_what_sample_draws(tmp_path, monkeypatch, capsys):
    """README's way to use a run's generator in Python without the command line, copied literally (it had none: the
    file "to share" came with no word on how to load it), on a conditional run with a class 'fire' at runs/acgan;
    its images are those `gankit sample -n 16 --seed 0` writes, and the metadata keys it names are there."""
    import json
    import re
    from pathlib import Path

    from safetensors import safe_open

    from conftest import make_image_folder
    from gankit.cli import main

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = next(code for code in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_run_generator" in code)
    make_image_folder(tmp_path / "images", n=16, classes=("fire", "water"))
    layers = tiny_layers(tmp_path / "images", epochs=1, max_steps=2)
    layers[0]["data"]["labels"] = "folders"
    layers[0]["model"]["arch"] = "acgan"
    run_training(layers, tmp_path / "runs/acgan")
    monkeypatch.chdir(tmp_path)
    code = {}
    exec(compile(snippet, "README.md", "exec"), code)
    assert code["images"].shape == (16, 3, 16, 16) and code["fire"].shape == (8, 3, 16, 16)
    assert Image.open(tmp_path / "grid.png").size == (8 * 18 + 2, 2 * 18 + 2)  # save_image: 8 a row
    assert "acgan 16 16 ['fire', 'water']" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sample", "runs/acgan", "-n", "16", "--seed", "0", "--out-dir", "pngs", "--device", "cpu"])
    got = torch.stack([torch.from_numpy(np.array(Image.open(tmp_path / "pngs" / f"{i:05d}.png"))) for i in range(16)])
    assert (got.permute(0, 3, 1, 2).float() / 127.5 - 1 - code["images"]).abs().max() < 0.01
    with safe_open("runs/acgan/generator.safetensors", "pt") as f:
        config = json.loads(f.metadata()["gankit_config"])
    assert (config["model"]["arch"], config["data"]["resolution"], config["model"]["nz"], config["model"]["num_classes"],
            config["class_names"]) == ("acgan", 16, 16, 2, ["fire", "water"])


def test_a_run_in_a_folder_whose_name_is_not_utf8_samples_from_its_shared_generator(image_folder, tmp_path):
    """safetensors refuses a path that is not UTF-8: `sample` said the file was "not a readable safetensors file"."""
    import os

    from conftest import tiny_layers
    from gankit.sample import load_run_generator
    from gankit.train import run_training

    run = run_training(tiny_layers(image_folder, max_steps=1), tmp_path / os.fsdecode(b"caf\xe9"))
    (run / "checkpoints" / "last.pt").unlink()  # no checkpoint to fall back to: the shared file itself must load
    (run / "checkpoints" / "last.prev.pt").unlink(missing_ok=True)
    for p in (run / "checkpoints").glob("*.pt"):
        p.unlink()
    gen = load_run_generator(run, None, "cpu")
    assert gen.sample(2, seed=0).shape[0] == 2


def _written(folder, n):
    """The images of `sample --out-dir`, back in [-1, 1]."""
    got = torch.stack([torch.from_numpy(np.array(Image.open(folder / f"{i:05d}.png"))) for i in range(n)])
    return got.permute(0, 3, 1, 2).float() / 127.5 - 1


def test_several_labels_cycle_and_label_rows_are_named_in_the_order_given(conditional_gen, tmp_path, monkeypatch):
    """`--label water --label fire` draws water, fire, water, ...; `--same-noise-labels --label grass --label water
    --label fire` draws those rows in that order, each named after its own class. (What is asked of G is checked:
    an untrained G's classes differ by less than a PNG's step.)"""
    from typer.testing import CliRunner

    import gankit.report.grids
    import gankit.sample
    from gankit.cli import app

    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: conditional_gen)
    asked, batches = [], conditional_gen.batches
    monkeypatch.setattr(conditional_gen, "batches", lambda z, labels=None, batch_size=256:
                        asked.append(labels) or batches(z, labels, batch_size))
    runner = CliRunner()
    r = runner.invoke(app, ["sample", "run", "--label", "water", "--label", "fire", "-n", "5", "--seed", "2",
                            "--out-dir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert asked[0].tolist() == [2, 0, 2, 0, 2]  # water, fire, water, ...
    expected = conditional_gen.sample(5, seed=2, labels=torch.tensor([2, 0, 2, 0, 2]))
    assert (_written(tmp_path / "w", 5) - expected).abs().max() < 0.01

    drawn = []
    monkeypatch.setattr(gankit.report.grids, "label_grid", lambda images, names, path: drawn.append((images, names)))
    r = runner.invoke(app, ["sample", "run", "--same-noise-labels", "--label", "grass", "--label", "water",
                            "--label", "fire", "-n", "3", "--grid", str(tmp_path / "rows.png")])
    assert r.exit_code == 0, r.output
    (images, names), = drawn
    assert names == ["grass", "water", "fire"]
    assert torch.allclose(images, conditional_gen.same_noise_labels(3, seed=0, labels=[1, 2, 0]))


def test_interpolate_walks_from_the_given_seed(trained_run, tmp_path, monkeypatch):
    """`sample --interpolate --seed 5` walks from seed 5's noise to seed 6's, not from 0's to 1's (the noise asked
    for is checked: a one-epoch G's images of two seeds differ by less than a PNG's step)."""
    from typer.testing import CliRunner

    import gankit.sample
    from gankit.cli import app
    from gankit.sample import slerp

    gen = load_run_generator(trained_run, device="cpu")
    walked, generate = [], gen.generate
    monkeypatch.setattr(gen, "generate", lambda z, labels=None, batch_size=256: walked.append(z) or generate(z, labels))
    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: gen)
    r = CliRunner().invoke(app, ["sample", str(trained_run), "--interpolate", "-n", "4", "--seed", "5",
                                 "--out-dir", str(tmp_path / "walk"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert torch.allclose(walked[0], slerp(gen.noise(1, 5)[0], gen.noise(1, 6)[0], torch.linspace(0, 1, 4)))
    assert (_written(tmp_path / "walk", 4) - generate(walked[0])).abs().max() < 0.01


def test_an_animated_walk_with_out_dir_also_writes_its_frames_there(trained_run, tmp_path):
    """`sample --interpolate --grid walk.gif --out-dir f` wrote the GIF and left --out-dir out without a word (the
    folder was never made): its frames are written there too, as they are with a png grid."""
    from typer.testing import CliRunner

    from gankit.cli import app

    r = CliRunner().invoke(app, ["sample", str(trained_run), "--interpolate", "-n", "4", "--grid",
                                 str(tmp_path / "walk.gif"), "--out-dir", str(tmp_path / "f"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "walk.gif").n_frames == 6
    assert sorted(p.name for p in (tmp_path / "f").glob("*.png")) == [f"{i:05d}.png" for i in range(4)]


def test_a_class_index_out_of_range_is_a_one_line_error(conditional_gen):
    with pytest.raises(GankitError, match=r"labels must be 2 class indices in \[0, 3\), got \[0, 3\]"):
        conditional_gen.sample(2, seed=0, labels=torch.tensor([0, 3]))


def test_class_names_given_as_labels_are_a_one_line_error_that_names_label_index(conditional_gen):
    """From Python, `labels=["fire", "water"]` (the classes `gen.labels` names) failed in torch with "too many
    dimensions 'str'", which says nothing of labels or of `gen.label_index`."""
    with pytest.raises(GankitError) as e:
        conditional_gen.sample(2, seed=0, labels=list(CLASSES[:2]))
    assert str(e.value) == (f"labels must be 2 class indices in [0, 3) (gen.label_index(name) gives a class's index), "
                            f"got {list(CLASSES[:2])!r}")


@pytest.mark.parametrize("n, seed, said", [
    (0, 0, "n must be at least 1, got 0"),
    (-1, 0, "n must be at least 1, got -1"),
    (2.0, 0, "n must be at least 1, got 2.0"),
    (2, None, "seed must be a whole number from 0 to 4294967295, got None"),
    (2, 1.5, "seed must be a whole number from 0 to 4294967295, got 1.5"),
])
def test_a_count_or_seed_that_is_not_a_whole_number_is_a_one_line_error_from_python(conditional_gen, n, seed, said):
    """From Python (a notebook cell) `gen.sample(0, seed=0)` failed in torch.cat, -1 and 2.0 in torch.randn, seed=None
    in a comparison and 1.5 in torch's manual_seed: errors that did not say which argument, where the command line
    refuses `-n 0` in one line. They name the arguments as the caller passed them, not the command line's -n and
    --seed (which `gankit sample` says: tests/test_bad_input.py)."""
    with pytest.raises(GankitError) as e:
        conditional_gen.sample(n, seed=seed)
    assert str(e.value) == said
    assert torch.equal(conditional_gen.sample(2, seed=np.int64(3)), conditional_gen.sample(2, seed=3))  # numpy's ints


# ------------------------------------------------------------------ what sample and evaluate check before drawing


@pytest.mark.parametrize("n", [10**18, 2**63, 10**23, 10**15])
def test_a_grid_of_an_enormous_n_is_refused_at_once(trained_run, tmp_path, monkeypatch, capsys, n):
    """`sample -n 1000000000000000000 --grid h.png` hung: grid_columns searched up to sqrt(n) rows for a layout before
    the grid's size was checked (-n 1e15: 6 s). The near-square layout, never narrower than the one chosen, is checked
    first; grid_columns is not asked about such an n."""
    import gankit.report.grids
    from gankit.cli import main

    columns = gankit.report.grids.grid_columns

    def bounded(k, *a, **kw):
        assert k < 10**7, f"grid_columns({k}) searched before the size check"
        return columns(k, *a, **kw)

    monkeypatch.setattr(gankit.report.grids, "grid_columns", bounded)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", str(n), "--grid", str(tmp_path / "h.png"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    side = math.isqrt(n - 1) + 1
    assert done.value.code == 2 and err.splitlines() == [err], err
    assert err.startswith(f"error: --grid of {side} x {-(-n // side)} images at 16px would be {side * 18 + 2} x ")


@pytest.mark.parametrize("args, said", [
    (["--interpolate", "-n", "1000000", "--grid", "w.gif"], "-n 1000000: a walk of that many steps takes 36 GiB"),
    (["--interpolate", "-n", "1000000", "--out-dir", "w"], "-n 1000000: a walk of that many steps takes 6 GiB"),
    (["-n", "300000", "--grid", "g.png"], "-n 300000: a grid of that many images takes 2 GiB"),
    (["-n", "10000000000", "--out-dir", "w"], "-n 10000000000: the noise of that many images takes 596 GiB"),
], ids=["gif", "walk", "grid", "noise"])
def test_sample_refuses_an_n_whose_images_cannot_fit_in_memory(trained_run, tmp_path, monkeypatch, capsys, args, said):
    """`sample --interpolate -n 100000000 --grid w.gif` ran out of memory, and the line then named --batch-size and
    --resolution, which sample does not have: how much drawing that many holds is checked first (here against a
    1 GiB machine), with what to ask for instead."""
    import gankit.evaluate
    from gankit.cli import main
    from gankit.sample import LoadedGenerator

    def no_drawing(*a, **k):
        raise AssertionError("drew images it then could not hold")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(LoadedGenerator, "generate", no_drawing)
    monkeypatch.setattr(LoadedGenerator, "batches", no_drawing)
    monkeypatch.setattr(gankit.evaluate, "physical_memory", lambda: 2**30)
    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), *args, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.splitlines() == [err] and err.startswith(f"error: {said}"), err
    assert "more than this machine's 1 GiB of memory: ask for fewer" in err and not list(tmp_path.iterdir())


def test_sample_same_noise_labels_refuses_a_grid_that_cannot_fit_in_memory(conditional_gen, tmp_path, monkeypatch,
                                                                           capsys):
    """`sample --same-noise-labels` drew its rows of -n images without the memory check that -n alone has: 400 rows
    of 900 images (within a grid's largest side) are checked first against a 1 GiB machine, and refused in a line."""
    import gankit.evaluate
    import gankit.sample
    from gankit.cli import main
    from gankit.sample import LoadedGenerator

    def no_drawing(*a, **k):
        raise AssertionError("drew images it then could not hold")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: conditional_gen)
    monkeypatch.setattr(LoadedGenerator, "generate", no_drawing)
    monkeypatch.setattr(gankit.evaluate, "physical_memory", lambda: 2**30)
    with pytest.raises(SystemExit) as done:
        main(["sample", "run", "--same-noise-labels", "-n", "900", *["--label", "fire"] * 400, "--grid", "g.png"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.splitlines() == [err], err
    assert err.startswith("error: -n 900: a grid of 400 rows of that many images takes 2 GiB at 16px, more than this "
                          "machine's 1 GiB of memory: ask for fewer (or name fewer classes with --label)"), err
    assert not list(tmp_path.iterdir())


def test_sample_same_noise_labels_too_wide_a_grid_is_not_told_to_use_out_dir(conditional_gen, tmp_path, monkeypatch,
                                                                             capsys):
    """A --same-noise-labels grid wider than a grid can be was told to write one file per image with --out-dir,
    which that mode refuses: it is told to draw fewer per class or name fewer classes."""
    import gankit.sample
    from gankit.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: conditional_gen)
    with pytest.raises(SystemExit) as done:
        main(["sample", "run", "--same-noise-labels", "-n", "2000", "--grid", "g.png"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.splitlines() == [err], err
    assert err.endswith("(at most 16383 a side): draw fewer per class with -n, or name fewer classes with --label"), err
    assert "--out-dir" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("command, error, said", [
    ("sample", MemoryError(), "error: this machine ran out of memory: draw fewer images with -n"),
    ("evaluate", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 1 GiB free."),
     "error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 1 GiB free.): use a "
     "smaller -n or --n-real"),
])
def test_running_out_of_memory_names_the_commands_own_options(trained_run, tmp_path, monkeypatch, capsys, command,
                                                              error, said):
    """The out-of-memory line named train's --batch-size and --resolution, which sample and evaluate do not have."""
    import gankit.evaluate
    from gankit.cli import main
    from gankit.sample import LoadedGenerator

    def out_of_memory(*a, **k):
        raise error

    monkeypatch.setattr(LoadedGenerator, "batches", out_of_memory)
    monkeypatch.setattr(gankit.evaluate, "evaluate_run", out_of_memory)
    with pytest.raises(SystemExit) as done:
        main([command, str(trained_run), "-n", "4", "--device", "cpu",
              *(["--grid", str(tmp_path / "g.png")] if command == "sample" else [])])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith(said) and err.count("\n") == 1 and "--batch-size" not in err, err


def test_a_conditional_walk_says_its_class_and_takes_one_label(conditional_gen, tmp_path, monkeypatch):
    """An ACGAN `sample --interpolate` walked class 0 without a word, and `--label fire --label water` dropped water."""
    from typer.testing import CliRunner

    import gankit.sample
    from gankit.cli import app

    monkeypatch.setattr(gankit.sample, "load_run_generator", lambda *a, **k: conditional_gen)
    walked, generate = [], conditional_gen.generate
    monkeypatch.setattr(conditional_gen, "generate", lambda z, labels=None, batch_size=256:
                        walked.append(labels) or generate(z, labels))
    runner = CliRunner()
    r = runner.invoke(app, ["sample", "run", "--interpolate", "-n", "3", "--grid", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    assert "the walk draws class 'fire' (the run's first): --label NAME walks another" in r.output
    r = runner.invoke(app, ["sample", "run", "--interpolate", "-n", "3", "--label", "water", "--grid",
                            str(tmp_path / "b.png")])
    assert r.exit_code == 0 and "the walk draws" not in r.output, r.output
    assert [y.tolist() for y in walked] == [[0, 0, 0], [2, 2, 2]]
    r = runner.invoke(app, ["sample", "run", "--interpolate", "--label", "fire", "--label", "water", "--grid",
                            str(tmp_path / "c.png")])
    assert isinstance(r.exception, GankitError) and not (tmp_path / "c.png").exists()
    assert str(r.exception) == ("--interpolate walks one class, got 2 --label (fire, water): give one --label, and run "
                                "the command once per class")
    assert len(walked) == 2


def test_a_checkpoint_of_another_run_is_named_in_a_warning(trained_run, tmp_path, capsys, monkeypatch):
    """`sample d1 --checkpoint ac/checkpoints/last.pt` drew ac's images as d1's, and `evaluate` measured them against
    ac's dataset as d1's FID, without a word. A checkpoint whose config differs from the run folder's config.yaml in
    a key one run cannot change (config.RESUMABLE_CHANGES) is another run's: a warning names the keys, and evaluate
    names the dataset it compares with; the run's own checkpoints, and a resumed run's changes, say nothing."""
    import shutil

    import yaml

    import gankit.evaluate
    from gankit.evaluate import evaluate_run

    other = shutil.copytree(trained_run, tmp_path / "other", ignore=shutil.ignore_patterns("*.pt", "tensorboard"))
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["path"], config["model"]["nz"] = str(tmp_path / "elsewhere"), 32
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    ckpt = trained_run / "checkpoints" / "last.pt"
    capsys.readouterr()
    gen = load_run_generator(other, ckpt, device="cpu")
    assert gen.other_run == ["model.nz", "data.path"]
    assert capsys.readouterr().err == (f"warning: checkpoint '{ckpt}' is not of run '{other}': its config differs in "
                                       "model.nz, data.path; drawing from the checkpoint's generator, as its own config "
                                       "describes it\n")
    assert torch.equal(gen.sample(2, seed=0), load_run_generator(trained_run, device="cpu").sample(2, seed=0))

    class NoInception:
        def __init__(self, data, *a, **k):
            self.data = data

        def __call__(self, generate, n_fake, batch_size=50):
            return {"fid": 1.0, "dataset": self.data}

    monkeypatch.setattr(gankit.evaluate, "Evaluator", NoInception)
    evaluated = evaluate_run(other, None, ckpt, n_fake=2, n_real=2, device="cpu")
    dataset = yaml.safe_load((trained_run / "config.yaml").read_text())["data"]["path"]
    assert len(evaluated["dataset"].images) == 32  # the checkpoint's run's images, not the run folder's (no such)
    assert (f"warning: FID and KID compare the checkpoint's images with its own run's dataset '{dataset}' at 16px, "
            f"not with the dataset of run '{other}': pass --data DIR") in capsys.readouterr().err

    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    config["train"]["epochs"], config["log"]["every"] = 9, 7  # what a resume may change: still the same run
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    for run, checkpoint in ((trained_run, ckpt), (trained_run, trained_run / "generator.safetensors"), (other, ckpt)):
        assert load_run_generator(run, checkpoint, device="cpu").other_run == []
    moved = load_checkpoint(ckpt)  # a checkpoint from before its run's data moved (`train --data NEW_PLACE`): its
    moved["config"]["data"]["path"] = str(tmp_path / "gone")  # data.path is gone, config.yaml names the new place
    save_checkpoint(moved, tmp_path / "epoch_0001.pt")
    assert load_run_generator(trained_run, tmp_path / "epoch_0001.pt", device="cpu").other_run == []
    (other / "config.yaml").unlink()  # a folder that cannot tell: nothing said
    assert load_run_generator(other, ckpt, device="cpu").other_run == []
    assert capsys.readouterr().err == ""


def test_a_checkpoint_of_a_run_on_the_builtin_dataset_names_it_in_the_warning(trained_run, tmp_path, capsys,
                                                                                monkeypatch):
    """`gankit evaluate runA --checkpoint runB/checkpoints/last.pt`, runB trained without --data, said "its own run's
    dataset 'None'"."""
    import shutil

    import yaml

    import gankit.data
    from gankit.evaluate import evaluate_run

    other = shutil.copytree(trained_run, tmp_path / "other", ignore=shutil.ignore_patterns("*.pt", "tensorboard"))
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["model"]["nz"] = 32  # another run
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    saved = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    saved["config"]["data"]["path"] = None
    save_checkpoint(saved, tmp_path / "builtin.pt")

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(gankit.data, "load_dataset", stop)  # (the warning comes before the images)
    capsys.readouterr()
    with pytest.raises(Stop):
        evaluate_run(other, None, tmp_path / "builtin.pt", n_fake=2, n_real=2, device="cpu")
    said = capsys.readouterr().err
    assert "its own run's dataset the built-in MNIST at 16px" in said and "'None'" not in said, said


def test_one_image_is_said_as_one(trained_run, tmp_path, capsys):
    """It said "wrote 1 images to ..."."""
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["sample", str(trained_run), "-n", "1", "--out-dir", str(tmp_path / "one"), "--device", "cpu"])
    assert done.value.code == 0 and f"wrote 1 image to {tmp_path / 'one'}\n" in capsys.readouterr().out
