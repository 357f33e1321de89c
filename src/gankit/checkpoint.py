"""Checkpoints and shared weights, written atomically, verified and read safely.

- Every file is written to a temporary name in the same folder, flushed to disk, then renamed over
  the target (`os.replace` is atomic), so a kill at any moment leaves either the old or the new file.
  A failed write (disk full, read-only) removes the temporary file and raises `RunError`; the old
  file is untouched.
- `last.pt` keeps its predecessor as `last.prev.pt`, and every checkpoint carries the sha256 of its
  own content (`"sha256"` in the saved dict). `load_latest_checkpoint` verifies it and falls back
  from last.pt to last.prev.pt to the newest epoch_NNNN.pt, naming each unusable file in a warning.
- Checkpoints are read with `torch.load(weights_only=True)`: a file carrying a pickled payload
  (arbitrary code) is refused, never executed.
- `generator.safetensors` holds only the generator's tensors plus the run's config as metadata:
  the format to share with strangers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from gankit import distributed
from gankit.console import short_list, short_path, warn
from gankit.errors import RunError
from gankit.layout import CHECKPOINTS_DIR, EPOCH_DIGITS, PLOTS_DIR, SAMPLES_DIR, epoch_file

LAST = "last.pt"
PREVIOUS = "last.prev.pt"
BEST = "best.pt"  # the checkpoint of the lowest FID so far (written when eval.every > 0)
NUMBERED = re.compile(r"epoch_(\d+)\.pt")
DIGEST_KEY = "sha256"
# Free disk space below which numbered checkpoints stop (`room_for_numbered`), on top of room for one more last.pt.
DISK_RESERVE = 1 << 30
# Windows refuses to replace a file that another process has open: tries over about this long (`_replace`).
REPLACE_TRIES, REPLACE_PAUSE = 20, 0.1


# ----------------------------------------------------------------------------- atomic writes


class _WriteErrors:
    """A file wrapper that remembers the OSError of a failed write: torch.save's C++ writer turns it
    into a RuntimeError that no longer says "disk full"."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):  # flush, tell, ... go to the file
        return getattr(self.f, name)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb", rotate_to: Path | None = None,
                  what: str = "", then: str = "", sync: bool = True) -> None:
    """Write `path` through a temporary file; with `rotate_to`, the old `path` is renamed there first.
    A failed write raises RunError "could not write {what}'path' (why): how to fix{then}". Without `sync`, nothing
    waits for the disk (an fsync takes milliseconds: minutes over 50,000 images): a killed process still leaves
    `path` whole or absent, a power cut may leave it empty."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; run folders are shared like any other output
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:  # not Windows' ANSI code page
            recorder = _WriteErrors(f)
            try:
                write(recorder)
            except Exception:
                if recorder.error is not None:
                    raise recorder.error from None
                raise
            f.flush()
            if sync:
                os.fsync(f.fileno())
        if rotate_to is not None and path.exists():
            _keep_copy(path, rotate_to)
        _replace(tmp, path)
        tmp = None
        if sync:
            _fsync_dir(path.parent)
    except OSError as e:
        raise RunError(f"could not write {what}'{short_path(path)}' ({e.strerror or e}): {write_hint(e)}{then}") \
            from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _keep_copy(path: Path, copy: Path) -> None:
    """Make `copy` the current `path` without `path` ever going missing: a hard link renamed over `copy`
    (a reader that looks only for `path` never finds it absent), or a rename where links are unsupported. A kill
    between the two leaves the link (`remove_leftovers`): another name of `path`, as large."""
    link = copy.with_name(f".{copy.name}.{os.getpid()}.link")
    try:
        if copy.exists() and os.path.samefile(path, copy):  # a kill came after this and before the replace after it:
            return  # `copy` is `path` already, and renaming one name of a file over another does nothing (link left)
        if link.exists():
            link.unlink()
        os.link(path, link)
        _replace(link, copy)
    except OSError:
        _replace(path, copy)


def _replace(src, dst) -> None:
    """os.replace; on Windows, which refuses (PermissionError) while another process has `dst` open (`gankit sample`
    loading last.pt as the training saves, an antivirus scanning it), tried again for about 2 s before that counts."""
    _patiently(lambda: os.replace(src, dst))


def _patiently(act: Callable[[], None]) -> None:
    """`act()`, a replace or delete of a file; on Windows, which refuses it (PermissionError) while another process has
    the file open, tried again for about 2 s (REPLACE_TRIES) before that counts."""
    for attempt in range(REPLACE_TRIES):
        try:
            act()
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == REPLACE_TRIES - 1:
                raise
            time.sleep(REPLACE_PAUSE)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (a power cut must not bring the old names back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_in_the_way(e: OSError) -> Path | None:
    """The file that stands where a folder is needed, for the errors that making or using such a folder raises."""
    if not isinstance(e, (FileExistsError, NotADirectoryError)) or not e.filename:
        return None
    path = Path(e.filename)
    return next((p for p in (path, *path.parents) if p.is_file()), None)


def in_the_way(e: OSError) -> str | None:
    """What to say of the file standing where a folder is needed (the one wording of every command's errors and
    warnings), or None when `e` was not raised for one."""
    blocker = file_in_the_way(e)
    if blocker is None:
        return None
    return f"'{blocker}' is a file where a folder is needed: move or delete it, or choose another path"


# A path with a name over the file system's limit (255 bytes) or longer than PATH_MAX (4096 bytes on Linux).
NAME_TOO_LONG = "the name is too long for the file system: choose a shorter one"


def write_hint(e: OSError) -> str:
    blocker = in_the_way(e)
    if blocker is not None:
        return blocker
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "no permission to write there: fix the folder's permissions or pick another folder"
    if e.errno == errno.ENAMETOOLONG:
        return NAME_TOO_LONG
    return "check the disk and the folder"


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------- checkpoints


def state_digest(state: Any) -> str:
    """sha256 of a checkpoint's content: every tensor's dtype, shape and bytes, every other value's repr,
    walked in order. Equal after a save/load round trip; any changed byte of any tensor changes it."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
            if t.numel():
                h.update(t.view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)};".encode())
            for k, v in obj.items():
                feed(k)
                feed(v)
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)};".encode())
            for v in obj:
                feed(v)
        else:
            h.update(f"S{type(obj).__name__}:{obj!r};".encode())

    feed(state)
    return h.hexdigest()


def save_checkpoint(state: dict, path: Path, keep_previous: bool | None = None) -> None:
    """Write `state` (plus its digest) atomically. `keep_previous` (default: for last.pt only) first
    renames the file being replaced to last.prev.pt. Raises RunError when the disk refuses the write."""
    path = Path(path)
    if keep_previous is None:
        keep_previous = path.name == LAST
    payload = {**state, DIGEST_KEY: state_digest(state)}
    run = path.parent.parent if path.parent.name == CHECKPOINTS_DIR else path.parent
    intact = " (the previous checkpoint is intact)" if path.exists() else ""
    _atomic_write(path, lambda f: torch.save(payload, f), rotate_to=path.with_name(PREVIOUS) if keep_previous else None,
                  what="checkpoint ", then=f", then resume with {distributed.resume_command(run)}{intact}")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`: refuse pickled code, verify its digest, and
    explain broken files in one line (RunError)."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"checkpoint '{path}' is a folder: pass a checkpoint file ({files_in(path)})")
    if not path.is_file():
        raise missing_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        if "unsupported global" in str(e).lower():  # the file names a Python callable: code, not tensors
            raise RunError(
                f"refusing to load '{path}': it contains pickled Python objects (possible code), not just tensors; "
                "only load checkpoints written by gankit, or share generator.safetensors instead"
            ) from None
        raise RunError(f"checkpoint '{path}' is unreadable ({type(e).__name__}): it is truncated or corrupt, or not a "
                       "checkpoint at all (gankit writes them as checkpoints/*.pt in a run folder)") from None
    if not isinstance(state, dict):
        raise RunError(f"'{path}' is not a gankit checkpoint (it holds a {type(state).__name__}, not a dict)")
    stored = state.pop(DIGEST_KEY, None)
    if stored is not None and stored != state_digest(state):
        raise RunError(f"checkpoint '{path}' is corrupt: its content does not match the sha256 stored in it")
    return state


def missing_checkpoint(path: Path, run: Path | None = None) -> RunError:
    """The error for a checkpoint `path` that is not there, saying what is: the file of that name in the run folder
    `run` (when given) or its checkpoints/ (a name given relative to them), else the checkpoints of its own folder,
    else those of `run`."""
    near = [p for p in (run / path, run / CHECKPOINTS_DIR / path.name) if p.is_file()] if run is not None else []
    there = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
    hint = (f": did you mean --checkpoint {near[0]}?" if near else f": that folder holds {', '.join(there)}" if there
            else f": pass a checkpoint file ({files_in(run)})" if run is not None else "")
    if path.name == BEST and not near:
        hint += f"; {BEST} is written only when FID is measured during training (--set eval.every=N)"
    return RunError(f"checkpoint '{path}' not found{hint}")


def files_in(folder: Path) -> str:
    """The checkpoint files a folder given in place of one holds, as a hint: its own (a checkpoints/ folder), else
    those of a run folder (its generator.safetensors and checkpoints/), else what such a file is."""
    folder = Path(folder)
    found = []
    for where in (folder, folder / CHECKPOINTS_DIR):
        if where.is_dir():
            found += checkpoint_candidates(where) + [where / BEST] * (where / BEST).is_file()
            found += sorted(where.glob("*.safetensors"))
    if not found:
        return f"a run's {CHECKPOINTS_DIR}/{LAST}, or a .safetensors file"
    return "e.g. " + short_list([str(p) for p in found])


def checkpoint_candidates(ckpt_dir: Path) -> list[Path]:
    """The checkpoints a run can resume from, best first: last.pt, then last.prev.pt and the epoch_NNNN.pt newest
    first, last.prev.pt after the numbered ones written since (one written at last.pt's epoch end is further on)."""
    ckpt_dir = Path(ckpt_dir)

    def written(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    older = [p for p in numbered_checkpoints(ckpt_dir) if p.is_file()]
    previous = ckpt_dir / PREVIOUS
    if previous.is_file():
        older.insert(next((i for i, p in enumerate(older) if written(p) <= written(previous)), len(older)), previous)
    return [p for p in (ckpt_dir / LAST,) if p.is_file()] + older


def numbered_path(ckpt_dir: Path, epoch: int, digits: int = EPOCH_DIGITS) -> Path:
    """Where the numbered checkpoint of `epoch` goes: epoch_NNNN.pt (`NUMBERED`; `digits`: `layout.epoch_digits`)."""
    return Path(ckpt_dir) / epoch_file(epoch, ".pt", digits)


def numbered_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The epoch_NNNN.pt files in `ckpt_dir`, newest (highest epoch) first."""
    found = (p for p in Path(ckpt_dir).glob("epoch_*.pt") if NUMBERED.fullmatch(p.name))
    return sorted(found, key=lambda p: int(NUMBERED.fullmatch(p.name).group(1)), reverse=True)


def prune_numbered(ckpt_dir: Path, keep: int) -> list[Path]:
    """Delete every epoch_NNNN.pt but the newest `keep` (0 keeps them all); returns the deleted ones."""
    return delete_numbered(numbered_checkpoints(ckpt_dir)[keep:] if keep > 0 else [])


def delete_numbered(paths: list[Path]) -> list[Path]:
    """Delete the numbered checkpoints `paths`; returns the deleted ones. Those Windows keeps refusing (another process
    has them open: a `gankit evaluate` reading one) are left, named in one warning: a later epoch end prunes them."""
    deleted, kept = [], []
    for path in paths:
        try:
            _patiently(lambda: path.unlink(missing_ok=True))
            deleted.append(path)
        except PermissionError:
            if sys.platform != "win32":
                raise
            kept.append(path.name)
    if kept:
        warn(f"could not delete the old checkpoint{'s' if len(kept) > 1 else ''} {short_list(kept)} in "
             f"'{short_path(Path(paths[0]).parent)}' (open in another program): left for a later epoch end")
    return deleted


def disk_reserve(ckpt_dir: Path) -> int:
    """Room kept free beside the checkpoints: DISK_RESERVE (1 GiB), or a tenth of a disk smaller than 10 GiB."""
    return min(DISK_RESERVE, shutil.disk_usage(ckpt_dir).total // 10)


def room_for_numbered(ckpt_dir: Path, size: int, keep: int = 0) -> list[Path] | None:
    """Whether a numbered checkpoint of `size` bytes fits while leaving room for the next last.pt (written beside
    the old one before it is replaced) and `disk_reserve`: numbered checkpoints are history, last.pt is the run's
    safety. [] it fits; the numbered checkpoints to delete first when the room is what pruning to `keep` would free
    once it is written; None when it does not fit."""
    need = 2 * size + disk_reserve(ckpt_dir)
    free = shutil.disk_usage(ckpt_dir).free
    if free >= need:
        return []
    doomed = [p for p in numbered_checkpoints(ckpt_dir)[keep - 1:] if p.is_file()] if keep > 0 else []
    return doomed if doomed and free + sum(p.stat().st_size for p in doomed) >= need else None


def load_latest_checkpoint(ckpt_dir: Path, map_location: str | torch.device = "cpu") -> tuple[dict, Path] | None:
    """(state, path) of the newest checkpoint in `ckpt_dir` that loads and verifies, or None when there
    is none at all. Each unusable file is named in a warning; RunError when every one is unusable."""
    tried = []
    for path in checkpoint_candidates(ckpt_dir):
        try:
            return load_checkpoint(path, map_location), path
        except RunError as e:
            warn(f"{e}; trying an older checkpoint")
            tried.append(path.name)
    if tried:
        raise RunError(f"no usable checkpoint in '{ckpt_dir}' (tried {', '.join(tried)}): "
                       f"start a new run with another {distributed.run_option()} folder")
    return None


# ----------------------------------------------------------------------------- shared generators


def remove_leftovers(run_dir: Path, kept: list[OSError] | None = None) -> list[Path]:
    """Delete the temporary files (`.NAME.*.tmp`, and `_keep_copy`'s `.NAME.*.link`) of writes that a kill stopped
    midway, in the run folder and its checkpoints/, samples/ and plots/ (a partial checkpoint is as large as a whole
    one); returns them. The caller holds the run folder (`runlock`): no other gankit process is writing there. Those
    that could not be deleted (a read-only folder) are left as they are, their errors added to `kept`."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINTS_DIR, run_dir / SAMPLES_DIR, run_dir / PLOTS_DIR):
        for path in [*folder.glob(".*.tmp"), *folder.glob(".*.link")] if folder.is_dir() else ():
            try:
                path.unlink()
                removed.append(path)
            except OSError as e:  # not ours to remove after all: left as it is
                if kept is not None:
                    kept.append(e)
    return removed


def save_generator(state_dict: dict[str, torch.Tensor], config: dict, path: Path) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"gankit_config": json.dumps(config)})
    atomic_write_bytes(path, data)


def load_generator(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load

    path = Path(path)
    try:  # read here, not by path: safetensors refuses a path that is not UTF-8 (a Latin-1 folder name)
        data = path.read_bytes()
        tensors = load(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # the format's length-prefixed JSON
        meta = header.get("__metadata__") or {}
    except Exception as e:  # noqa: BLE001
        raise RunError(f"'{path}' is not a readable safetensors file ({type(e).__name__}): use a checkpoint of its run instead (--checkpoint RUN/checkpoints/last.pt)") from None
    try:
        config = json.loads(meta["gankit_config"]) if "gankit_config" in meta else None
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        raise RunError(f"'{path}' has no gankit config in its metadata: it was not written by gankit")
    return tensors, config
