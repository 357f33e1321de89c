"""Atomic file writes: a reader (an image viewer, a browser, the next epoch) never sees half a file.

Each writer gets a hidden temporary path in the destination folder, fills it, and the temporary file is
moved over the destination with `os.replace`, which is atomic on the same file system.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from gankit import console


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path`, on failure remove it.

    The temporary name starts with a dot and ends in `.tmp`, so globs such as `epoch_*.png` never match it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # an error names the file asked for (`-o /proc/r.html`), not this hidden temporary one
        if e.filename is not None and Path(e.filename) == tmp:
            e.filename, e.filename2 = str(path), None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _remove_abandoned(path: Path) -> None:
    """Delete the temporary files of earlier writes of `path` that a kill -9 cut short (`.NAME.PID.tmp` of a process
    that has ended), with a line each: beside a `compare -o` page or a `sample --grid` nothing else would ever remove
    them. Not on Windows, which has no signal 0 to ask whether a process is alive."""
    if sys.platform == "win32":
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                console.info(f"removed '{tmp}', left by a write of '{path.name}' that a kill cut short")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, the process is only looked up
    except ProcessLookupError:
        return False
    except OSError:  # another user's
        return True
    return True


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
