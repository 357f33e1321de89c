"""The on-disk cache of decoded datasets: where it lives, and safe reads and writes.

A cache file is a plain dict of tensors, strings, ints and lists saved with `torch.save` and read
back with `torch.load(weights_only=True)`, so opening one never runs code. Files are written to a
temporary name and renamed into place, so a crash or a parallel writer never leaves half a file;
an unreadable or stale file is treated as missing and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from gankit.checkpoint import _atomic_write, file_in_the_way
from gankit.console import count, info, warn
from gankit.errors import RunError

ENV_VAR = "GANKIT_CACHE_DIR"
CHOOSE_ANOTHER = f"set {ENV_VAR} (or data.cache_dir) to a writable folder"  # said where the cache cannot be written
# A write's temporary file ('.NAME.XXXXXXXX.tmp') untouched for this long was left by a process that a kill -9 or the
# system's OOM killer stopped while writing it (Ctrl-C removes its own): as large as the cache it was to become.
ABANDONED_SECONDS = 3600
# A cache file at least this large is said before it is read or written (a 1.6 GB one takes 4-5 s, silent otherwise).
LARGE_BYTES = 500 * 2**20
_off: set[Path] = set()  # the cache folders `write` found unwritable and said so of: once a process each


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder for dataset caches: `cache_dir`, else $GANKIT_CACHE_DIR, else ~/.cache/gankit/datasets."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "gankit" / "datasets"


def digest(*parts: object) -> str:
    """A stable hex digest of the parts' text (joined with a separator that cannot occur in them)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def read(path: Path, key: str, progress: bool = True) -> dict[str, Any] | None:
    """The cached dict at `path` if it exists, loads safely and was written for `key`; else None. First removes the
    partial files of writes that a kill cut short (`_remove_abandoned`): the write after such a kill made the cache, and
    later runs only read it."""
    if not path.is_file():
        return None
    _remove_abandoned(path.parent)
    try:
        _say_if_large("reading", path, path.stat().st_size, progress)
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any damage (truncated, garbage, wrong format) means: rebuild
        warn(f"ignoring unreadable dataset cache '{path}' ({type(exc).__name__}); rebuilding it")
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    return payload


def write(path: Path, payload: dict[str, Any], again: str = "the data will be decoded again next time",
          progress: bool = True) -> bool:
    """Save `payload` to `path` atomically; on failure (read-only, disk full, also half way through torch.save) warn,
    saying what `again` costs, and return False; a folder that cannot be written is said once a process
    (`unwritable`). First removes the partial files of writes that a kill cut short."""
    why = unwritable(path.parent)
    if why is not None:
        if path.parent not in _off:
            _off.add(path.parent)
            warn(f"the cache is off: '{path.parent}' is not writable ({why}), so {again}; to cache, {CHOOSE_ANOTHER}")
        return False
    _remove_abandoned(path.parent)
    size = sum(v.nbytes for v in payload.values() if isinstance(v, torch.Tensor))
    _say_if_large("writing", path, size, progress)
    try:
        _atomic_write(path, lambda f: torch.save(payload, f), what="the cache ")
        return True
    except RunError as exc:
        warn(f"{exc}; {again}")
        return False


def remove_older(path: Path, family: str, current: str | None = None) -> None:
    """Delete the cache files beside `path` (just written) whose names start with `family` too: the former caches of
    one dataset, which nothing reads any more (their key names files as they were before an edit), each as large as
    `path`: fixing one image in a folder of thousands left a second copy of its whole cache, and every further edit
    another. `current`: a longer prefix of `path`'s name, whose files are kept too (caches of the same version)."""
    for old in path.parent.glob(f"{family}*.pt"):
        if old != path and not old.name.startswith(current or path.name):
            try:
                old.unlink()
            except OSError:  # (another process removed it, or, on Windows, is reading it)
                pass


def rename_former(former: Path, path: Path) -> None:
    """Give the cache file or folder `former`, named as an older gankit named it, the name `path` (when free): what it
    holds is still good, and would take long to make again."""
    if former != path and former.exists() and not path.exists():
        try:
            os.rename(former, path)
        except OSError:  # (another process renamed it first)
            pass


def unwritable(folder: Path) -> str | None:
    """Why no cache file can be written in `folder` (made when missing): a file in the way, no permission (a read-only
    HOME on a cluster or in a container), a read-only file system; None when one can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = file_in_the_way(e)
        return f"'{blocker}' is a file where a folder is needed" if blocker else (e.strerror or str(e)).lower()
    return None if os.access(folder, os.W_OK) else "no permission to write there"


def _say_if_large(doing: str, path: Path, size: int, progress: bool) -> None:
    """One line before a read or write of a cache file of LARGE_BYTES or more, which takes seconds."""
    if progress and size >= LARGE_BYTES:
        info(f"{doing} the dataset cache {path} ({size / 2**20:,.0f} MiB)...")


def _remove_abandoned(folder: Path) -> None:
    """Delete the temporary files in `folder` that writes stopped by a kill left (`ABANDONED_SECONDS`): nothing
    else would ever remove them. (Other processes may be writing theirs: those are recent.)"""
    import time

    removed, size, now = [], 0, time.time()
    for path in folder.glob(".*.pt.*.tmp") if folder.is_dir() else ():  # _atomic_write's names for caches
        try:
            st = path.stat()
            if now - st.st_mtime > ABANDONED_SECONDS:
                path.unlink()
                removed.append(path.name)
                size += st.st_size
        except OSError:
            continue
    if removed:
        info(f"removed {count(len(removed), 'partial cache file')} ({size / 2**20:,.0f} MiB) that writes stopped by a "
             f"kill left in {folder}")
