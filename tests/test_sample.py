"""Sampling from a trained run: shapes, files, and determinism by seed (library and command line)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import tiny_layers
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


def test_sample_command_writes_grid_and_files(trained_run, tmp_path):
    cmd = [sys.executable, "-m", "gankit", "sample", str(trained_run), "-n", "6", "--seed", "3",
           "--grid", str(tmp_path / "g.png"), "--out-dir", str(tmp_path / "out"), "--device", "cpu"]
    subprocess.run(cmd, check=True, capture_output=True)
    assert Image.open(tmp_path / "g.png").size[0] >= 3 * 16
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 6 and Image.open(files[0]).size == (16, 16)
    first = (tmp_path / "out" / "00000.png").read_bytes()
    subprocess.run(cmd, check=True, capture_output=True)
    assert (tmp_path / "out" / "00000.png").read_bytes() == first


def test_sample_without_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "gankit", "sample", str(tmp_path / "empty")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


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
