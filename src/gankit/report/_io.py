"""Atomic file writes: a reader (an image viewer, a browser, the next epoch) never sees half a file.

Each writer gets a hidden temporary path in the destination folder, fills it, and the temporary file is
moved over the destination with `os.replace`, which is atomic on the same file system.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path`, on failure remove it.

    The temporary name starts with a dot and ends in `.tmp`, so globs such as `epoch_*.png` never match it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
