"""matplotlib's configuration and cache folder, chosen by `choose()`, which the report modules that use matplotlib
call before they import it (matplotlib reads MPLCONFIGDIR when it is first imported).

Where the user's folders cannot be written (a read-only or missing HOME: a shared cluster account, a container,
`HOME=/nonexistent` under a scheduler), matplotlib logs a two-line notice ('mkdir -p failed for path ...', 'Matplotlib
created a temporary cache directory ...') in every process and rebuilds its font list in a new temporary folder each
time. MPLCONFIGDIR then names a folder of gankit's in the system's temporary folder, kept between runs. A folder the
user set (MPLCONFIGDIR) and writable default folders are left alone; so is Windows (%LOCALAPPDATA%).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

ENV_VAR = "MPLCONFIGDIR"


@functools.cache
def choose() -> None:
    """Point MPLCONFIGDIR at `_private_folder()` when matplotlib's default folders cannot be written (once a process)."""
    if os.environ.get(ENV_VAR) or sys.platform == "win32" or _defaults_writable():
        return
    folder = _private_folder()
    if folder is not None:  # else matplotlib makes its own, as it would have
        os.environ[ENV_VAR] = str(folder)


def _defaults_writable() -> bool:
    """Whether matplotlib (3.x) can use its default folders: on Linux and FreeBSD `matplotlib` in $XDG_CONFIG_HOME and
    in $XDG_CACHE_HOME (default ~/.config, ~/.cache), elsewhere ~/.matplotlib; made when missing, as matplotlib does."""
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no entry for this user
        return False
    if sys.platform.startswith(("linux", "freebsd")):
        folders = [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config", "matplotlib"),
                   Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache", "matplotlib")]
    else:
        folders = [home / ".matplotlib"]
    return all(_writable(folder) for folder in folders)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK)


def _private_folder() -> Path | None:
    """`gankit-matplotlib-<uid>` in the temporary folder, made for this user alone (not one another user made, or
    that others may write: matplotlib would read a matplotlibrc put there); else a new folder removed at exit; None
    when none can be made."""
    folder = Path(tempfile.gettempdir()) / f"gankit-matplotlib-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return folder
    except OSError:
        pass
    try:
        fresh = Path(tempfile.mkdtemp(prefix="gankit-matplotlib-"))
    except OSError:
        return None
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh
