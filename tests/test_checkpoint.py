"""Checkpoints: verified on load, the previous one kept and used when the newest is damaged, a failed
write leaves the old file intact, and a pickled payload is refused without ever running."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from conftest import FillsUp
from gankit.checkpoint import (PREVIOUS, load_checkpoint, load_latest_checkpoint, save_checkpoint,
                               state_digest)
from gankit.errors import RunError

MARK = torch.arange(1000, 1256, dtype=torch.float32)  # its bytes are easy to find inside the file


def state(step: int) -> dict:
    return {"G": {"w": MARK + step, "bn.num_batches_tracked": torch.tensor(step)},
            "opt": {"state": {0: {"exp_avg": torch.ones(3) * step}}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.9)}]},
            "iteration": step, "rng": torch.get_rng_state(), "names": ["a", "b"], "best": float("inf")}


def assert_same(a: dict, b: dict) -> None:
    assert state_digest(a) == state_digest(b)
    assert torch.equal(a["G"]["w"], b["G"]["w"]) and a["iteration"] == b["iteration"]


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_round_trip_and_the_previous_last_is_kept(tmp_path):
    last = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(state(1), last)
    assert not (last.parent / PREVIOUS).exists()
    save_checkpoint(state(2), last)
    assert_same(load_checkpoint(last), state(2))
    assert_same(load_checkpoint(last.parent / PREVIOUS), state(1))
    save_checkpoint(state(3), last.parent / "epoch_0003.pt")  # numbered files are never rotated
    assert load_checkpoint(last.parent / PREVIOUS)["iteration"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch_0003.pt", "last.prev.pt", "last.pt"]


def test_the_digest_changes_with_any_tensor_byte():
    a, b = state(1), state(1)
    assert state_digest(a) == state_digest(b)
    b["opt"]["state"][0]["exp_avg"][1] += 1e-7
    assert state_digest(a) != state_digest(b)
    b = state(1)
    b["G"]["w"] = b["G"]["w"].to(torch.float64)  # same values, other dtype
    assert state_digest(a) != state_digest(b)
    assert state_digest({"w": torch.arange(16.0)}) != state_digest({"w": torch.arange(16.0).reshape(4, 4)})  # shape


def test_a_file_that_is_not_a_checkpoint_is_refused_and_the_previous_one_taken(tmp_path):
    """A tensor saved where last.pt should be (another tool's file, a script's mistake) is no gankit checkpoint:
    loading it says so, and finding the latest falls back to last.prev.pt."""
    folder = tmp_path / "checkpoints"
    save_checkpoint({"iteration": 1}, folder / "last.pt")
    save_checkpoint({"iteration": 2}, folder / "last.pt")
    torch.save(torch.zeros(3), folder / "last.pt")
    with pytest.raises(RunError, match="not a gankit checkpoint"):
        load_checkpoint(folder / "last.pt")
    state, path = load_latest_checkpoint(folder)
    assert path.name == PREVIOUS and state["iteration"] == 1


def test_last_pt_is_still_there_when_the_write_of_the_next_one_fails_at_its_rename(tmp_path, monkeypatch):
    """The new checkpoint is written beside last.pt and renamed over it; last.pt is kept as last.prev.pt by a link, so
    a failure (or a kill) at the rename leaves the old last.pt where it was, never no last.pt at all."""
    from gankit import checkpoint

    folder = tmp_path / "checkpoints"
    save_checkpoint({"iteration": 1}, folder / "last.pt")
    replace = os.replace

    def failing(src, dst):
        if Path(dst).name == "last.pt" and str(src).endswith(".tmp"):
            raise OSError(errno.EIO, "Input/output error")
        return replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", failing)
    with pytest.raises(RunError):
        save_checkpoint({"iteration": 2}, folder / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(folder / "last.pt")["iteration"] == 1


@pytest.mark.parametrize("platform, saved", [("win32", True), ("linux", False)])
def test_windows_refusing_to_replace_a_checkpoint_open_elsewhere_is_waited_out(tmp_path, monkeypatch, platform, saved):
    """Windows refuses (PermissionError) to replace a file another process has open: a `gankit sample` loading last.pt
    at the moment the training saved stopped the training ('no permission to write there'). Elsewhere that error is
    a real one, at once."""
    from gankit import checkpoint

    folder = tmp_path / "checkpoints"
    save_checkpoint({"iteration": 1}, folder / "last.pt")
    replace, refusals = os.replace, [3]

    def open_elsewhere(src, dst):  # as Windows while a reader has dst open, for three tries
        if Path(dst).name == "last.pt" and refusals[0] > 0:
            refusals[0] -= 1
            raise PermissionError(13, "Access is denied", str(dst))
        return replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", open_elsewhere)
    monkeypatch.setattr(checkpoint.time, "sleep", lambda s: None)
    monkeypatch.setattr(checkpoint.sys, "platform", platform)
    if saved:
        save_checkpoint({"iteration": 2}, folder / "last.pt")
    else:
        with pytest.raises(RunError):
            save_checkpoint({"iteration": 2}, folder / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(folder / "last.pt")["iteration"] == (2 if saved else 1)


def test_a_checkpoint_reaches_the_disk_before_it_replaces_the_last_one(tmp_path, monkeypatch):
    """Durable across a power cut: the file's data is synced before the rename, and its folder after it."""
    from gankit import checkpoint

    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (events.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(checkpoint.os, "replace", lambda src, dst: (events.append("replace"), replace(src, dst))[1])
    save_checkpoint({"iteration": 1}, tmp_path / "x.pt")
    assert events[:2] == ["fsync", "replace"] and events[-1] == "fsync"


def test_unfinished_files_are_removed_from_every_folder_of_the_run(tmp_path):
    """A kill while writing leaves `.NAME.RANDOM.tmp` files in the run folder, checkpoints/, samples/ or plots/."""
    from gankit.checkpoint import remove_leftovers

    for sub in ("", "checkpoints", "samples", "plots"):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / ".x.abc.tmp").write_bytes(b"partial")
    (tmp_path / "samples" / "epoch_0001.png").write_bytes(b"kept")
    assert len(remove_leftovers(tmp_path)) == 4
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["epoch_0001.png"]


def test_a_kill_between_keeping_last_pt_and_replacing_it_leaves_no_second_copy(tmp_path):
    """`_keep_copy` links last.pt to `.last.prev.pt.PID.link` before renaming that over last.prev.pt: a kill -9 in
    between leaves the link, a whole checkpoint's worth of disk once last.pt is replaced; a resume removes it."""
    from gankit.checkpoint import remove_leftovers

    ckpts = tmp_path / "checkpoints"
    save_checkpoint({"iteration": 1}, ckpts / "last.pt")
    os.link(ckpts / "last.pt", ckpts / ".last.prev.pt.4242.link")  # the state the kill left
    assert [p.name for p in remove_leftovers(tmp_path)] == [".last.prev.pt.4242.link"]
    assert [p.name for p in ckpts.iterdir()] == ["last.pt"]


def test_a_save_after_a_kill_between_keeping_last_pt_and_replacing_it_leaves_no_link(tmp_path):
    """A kill after `_keep_copy` and before last.pt was replaced leaves last.prev.pt a second name of last.pt. The next
    save's link of last.pt renamed over last.prev.pt did nothing then (a rename between two names of one file does
    nothing on POSIX), and the finished run kept `.last.prev.pt.PID.link`."""
    save_checkpoint({"iteration": 1}, tmp_path / "last.pt")
    os.link(tmp_path / "last.pt", tmp_path / "last.prev.pt")  # the state the kill left
    save_checkpoint({"iteration": 2}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "last.prev.pt")["iteration"] == 1


def _flip_inside_mark(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.find((MARK + 2).numpy().tobytes())
    assert at > 0
    raw[at + 513] ^= 0x10  # one bit of one float in the middle of the tensor: torch.load does not notice
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "truncated or corrupt"),
    ("bitflip", "does not match the sha256"),
    ("wrong-digest", "does not match the sha256"),
    ("garbage", "truncated or corrupt"),
    ("empty", "truncated or corrupt"),
])
def test_a_damaged_last_is_reported_and_the_previous_one_used(tmp_path, capsys, damage, reason):
    folder = tmp_path / "checkpoints"
    save_checkpoint(state(1), folder / "last.pt")
    save_checkpoint(state(2), folder / "last.pt")
    last = folder / "last.pt"
    if damage == "truncate":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "bitflip":
        _flip_inside_mark(last)
    elif damage == "wrong-digest":
        saved = torch.load(last, weights_only=True)
        saved["iteration"] = 99  # edited after saving, digest left as it was
        torch.save(saved, last)
    elif damage == "garbage":
        last.write_bytes(os.urandom(2000))
    else:
        last.write_bytes(b"")
    with pytest.raises(RunError, match=reason):
        load_checkpoint(last)
    got, path = load_latest_checkpoint(folder)
    assert path.name == PREVIOUS
    assert_same(got, state(1))
    lines = warnings_of(capsys.readouterr().err)
    assert len(lines) == 1 and "last.pt" in lines[0] and reason in lines[0]


def test_fallback_order_ends_with_the_newest_numbered_checkpoint(tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    for epoch in (9, 10, 2):
        save_checkpoint(state(epoch), folder / f"epoch_{epoch:04d}.pt")
    assert load_latest_checkpoint(folder)[1].name == "epoch_0010.pt"
    (folder / "last.pt").write_bytes(b"torn")
    (folder / "epoch_0010.pt").write_bytes(b"and this")
    (folder / PREVIOUS).write_bytes(b"torn too")  # written after every numbered one: tried before them
    got, path = load_latest_checkpoint(folder)
    assert path.name == "epoch_0009.pt" and got["iteration"] == 9
    lines = warnings_of(capsys.readouterr().err)
    assert [n for line in lines for n in ("last.pt", PREVIOUS, "epoch_0010.pt") if f"/{n}'" in line] == \
        ["last.pt", PREVIOUS, "epoch_0010.pt"]


def test_no_checkpoint_is_none_and_only_bad_ones_is_an_error(tmp_path):
    assert load_latest_checkpoint(tmp_path / "nothing") is None
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(RunError, match="no usable checkpoint .*tried last.pt.*another --run"):
        load_latest_checkpoint(tmp_path)


def test_a_checkpoint_without_a_digest_still_loads(tmp_path):
    torch.save(state(4), tmp_path / "old.pt")  # written before checkpoints carried their digest
    assert load_checkpoint(tmp_path / "old.pt")["iteration"] == 4


def _assert_disk_full_left_everything_intact(folder: Path, before: bytes, error: RunError) -> None:
    message = str(error)
    assert "could not write checkpoint" in message and "disk is full" in message
    assert f"gankit train --run {folder.parent}" in message and "\n" not in message
    assert (folder / "last.pt").read_bytes() == before
    assert not (folder / PREVIOUS).exists()  # nothing was rotated away
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]  # no temporary file left behind
    assert load_checkpoint(folder / "last.pt")["iteration"] == 1


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(state(1), folder / "last.pt")
    before = (folder / "last.pt").read_bytes()

    def full(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(RunError) as info:
        save_checkpoint(state(2), folder / "last.pt")
    _assert_disk_full_left_everything_intact(folder, before, info.value)
    assert "(the previous checkpoint is intact)" in str(info.value)
    with pytest.raises(RunError) as info:  # the run's first checkpoint: there is no previous one to speak of
        save_checkpoint(state(1), tmp_path / "new" / "checkpoints" / "last.pt")
    assert "disk is full" in str(info.value) and "intact" not in str(info.value)


def test_the_disk_filling_up_inside_torch_save_is_named(tmp_path, monkeypatch):
    """torch.save turns a failed write half way through into an opaque RuntimeError; the message still says why."""
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(state(1), folder / "last.pt")
    before = (folder / "last.pt").read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FillsUp(real_fdopen(*a, **k), room=5000))
    with pytest.raises(RunError) as info:
        save_checkpoint({**state(2), "D": torch.zeros(1 << 16)}, folder / "last.pt")
    monkeypatch.undo()
    _assert_disk_full_left_everything_intact(folder, before, info.value)


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "checkpoints"
    save_checkpoint(state(1), folder / "last.pt")
    torch.save({**state(2), "G": Payload(marker)}, folder / "evil.pt")
    with pytest.raises(RunError, match="refusing to load .*evil.pt.*pickled Python objects"):
        load_checkpoint(folder / "evil.pt")
    assert not marker.exists()
    # planted as the newest checkpoint of a run: named, skipped, and the run goes on from the good one
    os.replace(folder / "last.pt", folder / PREVIOUS)
    os.replace(folder / "evil.pt", folder / "last.pt")
    got, path = load_latest_checkpoint(folder)
    assert path.name == PREVIOUS and got["iteration"] == 1
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


def test_sampling_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    from gankit.config import build_config, to_dict
    from gankit.models import build_generator
    from gankit.sample import load_run_generator

    cfg = build_config({"data": {"resolution": 16}, "model": {"ngf": 8, "nz": 16, "channels": 3}})
    G = build_generator(cfg)
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint({"G": G.state_dict(), "config": to_dict(cfg)}, folder / "last.pt")
    save_checkpoint({"G": G.state_dict(), "config": to_dict(cfg)}, folder / "last.pt")
    (folder / "last.pt").write_bytes(b"torn")
    gen = load_run_generator(tmp_path / "run", device="cpu")
    assert gen.sample(2, seed=0).shape == (2, 3, 16, 16)
    assert "last.pt" in capsys.readouterr().err


def test_a_numbered_checkpoint_written_after_last_prev_comes_before_it(tmp_path):
    """last.pt unusable: the epoch_NNNN.pt written at last.pt's epoch end is further on than last.prev.pt (the
    previous last.pt), so the resume takes it; numbered ones older than last.prev.pt come after it."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(state(80), folder / "epoch_0020.pt")
    save_checkpoint(state(84), folder / "last.pt")
    save_checkpoint(state(88), folder / "last.pt")  # 84 becomes last.prev.pt
    save_checkpoint(state(88), folder / "epoch_0022.pt")
    for name, age in (("epoch_0020.pt", 30), (PREVIOUS, 20), ("last.pt", 10)):  # coarse clocks: make the order plain
        os.utime(folder / name, (os.stat(folder / name).st_mtime - age,) * 2)
    (folder / "last.pt").write_bytes(b"torn")
    assert load_latest_checkpoint(folder)[0]["iteration"] == 88
    (folder / "epoch_0022.pt").unlink()
    assert load_latest_checkpoint(folder)[0]["iteration"] == 84


def test_numbered_checkpoints_make_room_by_pruning_first_and_count_small_disks_in_proportion(tmp_path, monkeypatch):
    """A numbered checkpoint must leave room for the next last.pt and a reserve: 1 GiB, or a tenth of a smaller
    disk (a 200 MB scratch disk with 198 MB free refused every one); when only the one keep_checkpoints is about
    to delete makes the room, it is deleted first."""
    from collections import namedtuple

    from gankit import checkpoint

    folder = tmp_path / "checkpoints"
    for epoch in (1, 2):
        save_checkpoint(state(epoch), folder / f"epoch_{epoch:04d}.pt")
    size = (folder / "epoch_0002.pt").stat().st_size
    Usage = namedtuple("Usage", "total used free")

    def disk(total, free):
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda _: Usage(total, total - free, free))

    disk(200 << 20, 198 << 20)
    assert checkpoint.room_for_numbered(folder, 1 << 20) == []
    disk(100 << 30, (1 << 30) + 2 * size - 1)  # short by one byte on a large disk
    assert checkpoint.room_for_numbered(folder, size, keep=0) is None
    assert checkpoint.room_for_numbered(folder, size, keep=3) is None  # nothing to prune: 2 kept + the new one
    assert checkpoint.room_for_numbered(folder, size, keep=2) == [folder / "epoch_0001.pt"]
    assert checkpoint.room_for_numbered(folder, size, keep=1) == [folder / "epoch_0002.pt", folder / "epoch_0001.pt"]


def test_a_resume_mends_what_a_kill_during_the_last_save_left(image_folder, tmp_path, capsys):
    """Killed while writing generator.safetensors (after last.pt) or epoch_NNNN.pt (after both), a finished run said
    "already complete": generator.safetensors kept the weights of the save before (`gankit sample` drew from them),
    the numbered checkpoint was never written, and the partial temporary files stayed."""
    import shutil

    from safetensors.torch import load_file

    from conftest import tiny_layers
    from gankit.train import run_training

    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["log"].update(write_share=0, plots=False)
    run = run_training(layers, tmp_path / "run")
    shutil.copy(run / "generator.safetensors", tmp_path / "epoch2.safetensors")
    layers[0]["train"]["epochs"] = 3
    run_training(layers, run)
    shutil.copy(tmp_path / "epoch2.safetensors", run / "generator.safetensors")  # as a kill mid-write leaves them
    (run / "checkpoints" / "epoch_0003.pt").unlink()
    (run / "checkpoints" / ".epoch_0003.pt.k2x9.tmp").write_bytes(b"partial")
    (run / ".generator.safetensors.q1w2.tmp").write_bytes(b"partial")
    capsys.readouterr()
    run_training(layers, run)
    err = capsys.readouterr().err
    assert "already complete" in err and "removed 2 unfinished files" in err
    assert not list(run.glob(".*.tmp")) and not list((run / "checkpoints").glob(".*.tmp"))
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    shared = load_file(str(run / "generator.safetensors"))
    assert all(torch.equal(shared[k], v) for k, v in last["G"].items() if k in shared) and shared
    assert load_checkpoint(run / "checkpoints" / "epoch_0003.pt")["iteration"] == last["iteration"]


def test_a_damaged_last_pt_is_not_kept_as_last_prev_over_the_good_one_resumed_from(image_folder, tmp_path, capsys):
    """A resume from last.prev.pt (last.pt damaged) rotated the damaged last.pt into last.prev.pt at its first save:
    the one good older checkpoint was replaced by the broken file."""
    from conftest import tiny_layers
    from gankit.train import run_training

    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["log"].update(write_share=0, plots=False, checkpoint_every=0)
    run = run_training(layers, tmp_path / "run")
    folder = run / "checkpoints"
    resumed_from = load_checkpoint(folder / PREVIOUS)["iteration"]
    (folder / "last.pt").write_bytes(os.urandom(2000))
    run_training(layers, run)  # trains again from last.prev.pt's epoch end to the end: one save
    assert "last.pt' is unreadable" in capsys.readouterr().err
    assert load_checkpoint(folder / PREVIOUS)["iteration"] == resumed_from
    assert load_checkpoint(folder / "last.pt")["iteration"] > resumed_from


def test_a_run_killed_during_its_first_save_loses_the_partial_files_when_it_starts_again(image_folder, tmp_path, capsys):
    """Killed while writing its first last.pt, a run holds config.yaml and the partial file, no checkpoint: started
    again (from iteration 0, nothing to resume) it kept the partial file, as large as a checkpoint, until a later resume."""
    from conftest import tiny_layers
    from gankit.train import run_training

    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"].update(plots=False, tensorboard=False)
    run = run_training(layers, tmp_path / "run")
    for path in [*run.rglob("*")][::-1]:
        if path.name != "config.yaml":
            path.unlink() if path.is_file() else path.rmdir()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".last.pt.k2x9.tmp").write_bytes(b"partial")
    capsys.readouterr()
    run_training(layers, run)
    assert "removed 1 unfinished file" in capsys.readouterr().err
    assert not list((run / "checkpoints").glob(".*.tmp"))


# ----------------------------------------------------------------------------- text files on Windows

SRC = Path(__file__).resolve().parents[1] / "src" / "gankit"
NOT_FILES = {"os", "Image", "tarfile", "zipfile"}  # os.open (a descriptor), PIL's and archives' opens: binary


def text_opens_without_encoding(source: str) -> list[int]:
    """Lines of `source` that open a text file without naming its encoding: open()/x.open()/os.fdopen() in a text
    mode (none given, or one without 'b', or one only known when it runs), read_text(), write_text()."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("read_text", "write_text"):
            lines.append(node.lineno)
        elif name in ("open", "fdopen"):
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in NOT_FILES \
                    and name == "open":
                continue
            at = 0 if isinstance(func, ast.Attribute) and name == "open" else 1  # path.open(mode), open(path, mode)
            mode = next((k.value for k in node.keywords if k.arg == "mode"),
                        node.args[at] if len(node.args) > at else None)
            if not (isinstance(mode, ast.Constant) and "b" in str(mode.value)):
                lines.append(node.lineno)
    return lines


def test_the_check_for_text_opens_without_an_encoding_finds_each_kind():
    found = text_opens_without_encoding(
        "open(p)\nopen(p, 'a')\np.open()\nos.fdopen(fd, mode)\np.read_text()\np.write_text(t)\n"
        "open(p, 'rb')\np.open('wb')\nos.open(p, os.O_RDONLY)\nImage.open(p)\nopen(p, encoding='utf-8')\n")
    assert found == [1, 2, 3, 4, 5, 6]


def test_every_text_file_gankit_opens_names_its_encoding():
    """Windows opens a text file in its ANSI code page (cp1252, cp932) unless told: config.yaml, metrics.jsonl and the
    other files of a run are UTF-8 everywhere, so a run folder (or a class name in it) reads the same on any machine."""
    found = [f"{path.relative_to(SRC)}:{line}" for path in sorted(SRC.rglob("*.py"))
             for line in text_opens_without_encoding(path.read_text(encoding="utf-8"))]
    assert found == []


def test_a_text_file_written_atomically_is_utf8_where_the_locale_is_not(tmp_path, monkeypatch):
    """As on a Windows whose ANSI code page is cp1252: a name it cannot encode is still written, in UTF-8."""
    import builtins
    import io

    real_open = io.open

    def windows_open(file, mode="r", buffering=-1, encoding=None, *args, **kwargs):
        if "b" not in mode and encoding in (None, "locale"):
            encoding = "cp1252"
        return real_open(file, mode, buffering, encoding, *args, **kwargs)

    monkeypatch.setattr(io, "open", windows_open)
    monkeypatch.setattr(builtins, "open", windows_open)
    from gankit.checkpoint import atomic_write_text

    atomic_write_text(tmp_path / "notes.txt", "ファイア\n")
    assert (tmp_path / "notes.txt").read_bytes().decode("utf-8").splitlines() == ["ファイア"]


@pytest.mark.parametrize("platform", ["win32", "linux"])
def test_an_old_numbered_checkpoint_open_elsewhere_on_windows_is_left_with_one_warning(tmp_path, monkeypatch, capsys,
                                                                                      platform):
    """Windows refuses (PermissionError) to delete a file another process has open: a `gankit evaluate` reading the
    oldest numbered checkpoint as the training pruned it stopped the training. It is now tried for about 2 s, then
    left with one warning (a later epoch end prunes it). Elsewhere that error is a real one."""
    from gankit import checkpoint

    folder = tmp_path / "checkpoints"
    for epoch in (1, 2, 3, 4):
        save_checkpoint({"iteration": epoch}, checkpoint.numbered_path(folder, epoch))
    unlink, tries = Path.unlink, []

    def open_elsewhere(self, missing_ok=False):  # as Windows while a reader has epoch_0001.pt open
        if self.name == "epoch_0001.pt":
            tries.append(self.name)
            raise PermissionError(13, "Access is denied", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(checkpoint.Path, "unlink", open_elsewhere)
    monkeypatch.setattr(checkpoint.time, "sleep", lambda s: None)
    monkeypatch.setattr(checkpoint.sys, "platform", platform)
    if platform == "linux":
        with pytest.raises(PermissionError):
            checkpoint.prune_numbered(folder, 2)
        assert len(tries) == 1
        return
    deleted = checkpoint.prune_numbered(folder, 1)
    monkeypatch.undo()
    assert [p.name for p in deleted] == ["epoch_0003.pt", "epoch_0002.pt"]
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.pt", "epoch_0004.pt"]
    assert len(tries) == checkpoint.REPLACE_TRIES
    assert warnings_of(capsys.readouterr().err) == [
        f"warning: could not delete the old checkpoint epoch_0001.pt in '{folder}' (open in another program): "
        "left for a later epoch end"]
