"""One training at a time per run folder.

A second `gankit train` on a folder that a first one is training (the same command typed in two terminals, a job
started twice) would resume from the same checkpoint, truncate the first's metrics.jsonl and overwrite its grids
and checkpoints in turn. The training process holds an exclusive `flock` on the run folder itself (no lock file
to go stale: the system drops the lock when the process ends, even on kill -9); `in_use` lets readers such as
`gankit compare` tell a run in progress. Where the system has no flock (Windows) or the disk does not support it
(some network file systems), runs are not guarded. The folders a process reads a dataset from (an archive's
extraction in the cache) it holds with a shared lock (`share`), which keeps another process from removing them.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from gankit.errors import RunError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

RETRY_SECONDS = 0.2  # a reader (`in_use`) holds the folder for an instant: one more try after this long


def _open(folder: Path) -> int | None:
    try:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _try_lock(fd: int, mode: int) -> bool | None:
    """True: locked; False: another process holds it; None: this disk cannot lock."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


@contextlib.contextmanager
def hold(run_dir: Path, other_folder_hint: str, busy: str = "") -> Iterator[None]:
    """Hold `run_dir` (made if needed) while the block trains it; a RunError when another process trains it (`busy`:
    that error's message, for a folder held for something else, such as `sample --out-dir`'s drawing). The folders
    this call made that are still empty at the end (the run failed before writing) are removed, unless another
    process holds the run folder."""
    run_dir = Path(run_dir)
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # the deepest first
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise  # a file where a folder is needed: the command line names that file
    except OSError as e:
        raise RunError(f"cannot make folder '{run_dir}' ({e.strerror or e}): pass {other_folder_hint} a folder "
                       "you can write") from None
    fd = _open(run_dir) if fcntl is not None else None
    try:
        if fd is not None:
            locked = _try_lock(fd, fcntl.LOCK_EX)
            if locked is False:
                time.sleep(RETRY_SECONDS)
                locked = _try_lock(fd, fcntl.LOCK_EX)
            if locked is False:  # another process holds the folder: its own now, even if this one made it (two
                made = []  # trainings of a new run started at once), and it may be about to write there
                raise RunError(busy or f"run '{run_dir}' is being trained by another gankit process: wait for it to "
                               f"end (or stop it), or pass {other_folder_hint} NEW_FOLDER to train a run of its own")
        yield
    finally:
        if fd is not None:
            os.close(fd)  # drops the lock
        with contextlib.suppress(OSError):
            for folder in made:
                folder.rmdir()  # only if empty


def in_use(run_dir: Path) -> bool:
    """Whether a process is training `run_dir` now (False where that cannot be told)."""
    if fcntl is None:
        return False
    fd = _open(Path(run_dir))
    if fd is None:
        return False
    try:
        return _try_lock(fd, fcntl.LOCK_SH) is False
    finally:
        os.close(fd)


_shared: dict[str, int] = {}  # the folders `share` holds, and their descriptors, open until the process ends


def share(folder: Path) -> bool:
    """Hold a shared lock on `folder` until this process ends (a dataset folder it reads), so that `unused` tells
    another process to leave it; False when it is gone (another removed it just now). Waits out a removal under way.
    Without flock (Windows) nothing is held: there a folder with a file open cannot be moved."""
    if fcntl is None:
        return Path(folder).is_dir()
    fd = _shared.pop(str(folder), None)
    if fd is not None and not _same(fd, folder):  # (extracted again since)
        os.close(fd)
        fd = None
    if fd is None:
        fd = _open(Path(folder))
        if fd is None:
            return False
        with contextlib.suppress(OSError):  # (a disk that cannot lock)
            fcntl.flock(fd, fcntl.LOCK_SH)
        if not _same(fd, folder):  # moved aside while this waited
            os.close(fd)
            return False
    _shared[str(folder)] = fd
    return True


def _same(fd: int, folder: Path) -> bool:
    """Whether the folder open as `fd` is still the one at `folder`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(folder))
    except OSError:
        return False


@contextlib.contextmanager
def unused(folder: Path) -> Iterator[bool]:
    """Whether no process holds `folder` (`hold`, `share`; True where that cannot be told), held for the block so
    that none starts to: removing it then breaks no reader."""
    fd = _open(Path(folder)) if fcntl is not None else None
    try:
        yield fd is None or _try_lock(fd, fcntl.LOCK_EX) is not False
    finally:
        if fd is not None:
            os.close(fd)
