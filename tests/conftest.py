"""Shared fixtures: tiny generated image folders and tiny training configs (CPU, fp32, seconds)."""

from __future__ import annotations

import errno
import io
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Under pytest-xdist (README: `-n 2`) each test process takes its share of the cores, it and the processes its tests
# start (torchrun, the benchmarks, the CLI), instead of each taking every core (two processes of two threads each on
# two cores would oversubscribe them).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_collection_modifyitems(items):
    """A test marked `longest` first, its module's other tests after it, then every other module in file order: under
    pytest-xdist a test of minutes started last would leave the other process idle until it ends. (Whole modules
    move, so that a module-scoped fixture is still set up once.)"""
    first = {item.module for item in items if item.get_closest_marker("longest")}
    items.sort(key=lambda item: (item.module not in first, not item.get_closest_marker("longest")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never write caches into the user's home during tests."""
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gankit-cache"))


def make_image_folder(root, n: int = 32, size: int = 24, classes: tuple[str, ...] = ()) -> None:
    """n small RGB images with simple structure (a coloured disc on a background), optionally in class sub-folders."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx, r = rng.integers(6, size - 6), rng.integers(6, size - 6), rng.integers(3, 7)
        img = np.full((size, size, 3), rng.integers(0, 80, 3), dtype=np.uint8)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(150, 256, 3)
        folder = root / classes[i % len(classes)] if classes else root
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"img_{i:03d}.png")


#: `classes` of make_image_folder that are imbalanced, as Pokemon's types are: of 16 images, 10 a, 4 b and 2 c.
IMBALANCED = ("a",) * 5 + ("b", "b", "c")


@pytest.fixture
def fake_mps(monkeypatch):
    """torch.mps's random-state functions (what code on an Apple GPU calls, torch.manual_seed too) faked where there is
    no Apple GPU: the stream's state is the last seed, a one-element tensor (`fake_mps.state`)."""
    import torch

    class FakeMPSGenerator:
        state = torch.tensor([0])

        def get_rng_state(self, device="mps"):
            return self.state.clone()

        def set_rng_state(self, new_state, device="mps"):
            self.state = new_state.clone()

        def manual_seed(self, seed):
            self.state = torch.tensor([int(seed)])

    fake = FakeMPSGenerator()
    for name in ("get_rng_state", "set_rng_state", "manual_seed"):
        monkeypatch.setattr(torch.mps, name, getattr(fake, name))
    return fake


class FillsUp:
    """A file on a disk with `room` bytes left: writes beyond that fail with ENOSPC, as a real full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def read_only(monkeypatch, folder: Path) -> None:
    """Writes under `folder` fail with EACCES, as in a folder that `chmod -R a-w` made read-only to anyone but root
    (who writes there anyway, as these tests may run): files opened to write, made, renamed or removed; folders made
    or removed."""
    inside = lambda path: os.path.abspath(os.fspath(path)).startswith(os.fspath(folder) + os.sep)  # noqa: E731
    flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refused(real, writes=lambda *args, **kwargs: True):
        def call(path, *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and inside(path) and writes(*args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    to_write = lambda mode="r", *args, **kwargs: any(c in mode for c in "wax+")  # noqa: E731
    monkeypatch.setattr("builtins.open", refused(open, to_write))
    monkeypatch.setattr(io, "open", refused(io.open, to_write))
    monkeypatch.setattr(os, "open", refused(os.open, lambda mode, *args, **kwargs: bool(mode & flags)))
    for name in ("mkdir", "rmdir", "unlink", "remove", "rename", "replace", "utime", "chmod"):
        monkeypatch.setattr(os, name, refused(getattr(os, name)))


def ctrl_c_at(monkeypatch, iteration: int):
    """A Ctrl-C (SIGINT to this process) just before the G step of `iteration`, so that training stops after that
    iteration; returns Trainer._g_phase as it was, for a test that trains on afterwards to put back."""
    from gankit.train import Trainer

    original = Trainer._g_phase

    def g_phase_with_ctrl_c(self, *args):
        if self.iteration == iteration:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration
        original(self, *args)

    monkeypatch.setattr(Trainer, "_g_phase", g_phase_with_ctrl_c)
    return original


def process_ended() -> None:
    """As when this process ends: the extraction folders it read (`runlock.share`) are held no more."""
    from gankit import runlock

    for fd in runlock._shared.values():
        os.close(fd)
    runlock._shared.clear()


def image_bytes(color=(200, 30, 30), size=(20, 20), fmt: str = "PNG") -> bytes:
    """A file's bytes of one solid-colour RGB image (BMP: the same byte size for any colour)."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def patch_zip(path: Path, method: int | None = None, flags: int = 0, clear: int = 0) -> Path:
    """Rewrite a zip's every member, in its local header and its central directory entry, to claim compression
    `method` (9: Deflate64) and/or to set general-purpose `flags` (0x1: encrypted) and clear `clear` (0x800: names in
    UTF-8, which macOS's Compress leaves unset), as other archivers write."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    count, pos = struct.unpack_from("<H", data, end + 10)[0], struct.unpack_from("<I", data, end + 16)[0]
    for _ in range(count):
        local = struct.unpack_from("<I", data, pos + 42)[0]
        for at in (pos + 8, local + 6):  # flags; the method follows them in both headers
            struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] & ~clear | flags)
            if method is not None:
                struct.pack_into("<H", data, at + 2, method)
        pos += 46 + sum(struct.unpack_from("<3H", data, pos + 28))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root)
    return root


def tiny_layers(data, **train) -> list[dict]:
    """Config override layers for a model that trains in well under a second per step on CPU."""
    return [{
        "data": {"path": str(data), "resolution": 16},
        "model": {"ngf": 8, "ndf": 8, "nz": 16},
        "train": {"batch_size": 8, "precision": "fp32", "device": "cpu", "epochs": 2, **train},
        "log": {"every": 2, "n_samples": 16, "progress": False, "checkpoint_every": 1},
    }]
