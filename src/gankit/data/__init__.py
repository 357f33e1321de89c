"""Datasets: image folders and label files -> one cached uint8 tensor; built-in datasets.

    load_dataset(None, 32)                         # built-in MNIST, [5000, 1, 32, 32]
    load_dataset("builtin:mnist", 64)
    load_dataset("./pokemon", 64, labels="./pokemon/types.csv", label_column="type1")
    load_dataset("./pokemon.zip", 64, labels="types.csv", label_column="type1")  # extracted once, safely
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gankit.data.archive import ARCHIVE_SUFFIXES, extract_archive, is_archive
from gankit.data.builtin import BUILTIN_NAMES, load_builtin
from gankit.data.folder import (IMAGE_EXTENSIONS, SUPPORTED, ImageSet, NoImages, NoneUsable, _none_usable_message,
                                load_folder, upscale_note)
from gankit.errors import DataError

__all__ = ["ImageSet", "load_folder", "upscale_note", "load_archive", "archive_errors", "load_builtin", "load_dataset", "extract_archive", "is_builtin", "flips_by_default", "is_missing", "is_relative", "label_file_missing",
           "BUILTIN_NAMES", "IMAGE_EXTENSIONS", "ARCHIVE_SUFFIXES"]

BUILTIN_PREFIX = "builtin:"


def is_builtin(path: str | None) -> bool:
    """Whether a config's data.path names a built-in dataset: none given (MNIST), or "builtin:NAME"."""
    return not path or path.startswith(BUILTIN_PREFIX)


def flips_by_default(path: str | None) -> bool:
    """Whether a run on the config's data.path flips its images at random when data.flip is unset (null): a folder's,
    not the built-in MNIST digits (a mirrored digit is another glyph)."""
    return not is_builtin(path)


def is_missing(path: str | Path | None) -> bool:
    """Whether a dataset path names a folder or archive that is not there (a built-in dataset never is)."""
    return not is_builtin(str(path) if path is not None else None) and not Path(path).exists()


def is_relative(path) -> bool:
    """Whether a saved config's data.path is a relative one (older gankit versions saved it as typed; it means the
    folder the run was started from, and is read from the current one, as those versions read it)."""
    return isinstance(path, str) and not is_builtin(path) and not os.path.isabs(os.path.expanduser(path))


def label_file_missing(labels: str | None, root: str | None) -> bool:
    """Whether a config's label file is neither where its path says (absolute, or from the current folder) nor, for a
    path relative to the dataset `root`, inside its data folder."""
    if not labels or labels == "folders" or os.path.isfile(labels):
        return False
    if os.path.isabs(labels) or is_builtin(root):
        return True
    return not is_archive(root) and not os.path.isfile(os.path.join(root, labels))  # (an archive's: once extracted)


def load_dataset(
    path: str | Path | None,
    resolution: int,
    labels: str | None = None,
    label_column: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    label_warnings: bool = True,
) -> ImageSet:
    """The built-in MNIST when `path` is None, a built-in dataset for "builtin:NAME", else a folder or an
    archive of one (.zip, .tar, .tar.gz, ...: checked and extracted once into the cache, see data.archive).

    Built-in datasets always carry their own labels (MNIST: the digits); asking for folder or CSV
    labels with them is an error. See `load_folder` for the folder arguments.
    """
    if path is None or str(path).startswith(BUILTIN_PREFIX):
        name = "mnist" if path is None else str(path)[len(BUILTIN_PREFIX):]
        if labels is not None:
            raise DataError(f"the built-in dataset '{name}' has its own labels; labels='{labels}' applies "
                            "only to an image folder passed with --data DIR")
        return load_builtin(name, resolution, cache_dir=cache_dir)
    if not is_archive(path):
        return load_folder(path, resolution, labels=labels, label_column=label_column, cache_dir=cache_dir,
                           progress=progress, label_warnings=label_warnings)
    return load_archive(path, resolution, labels=labels, label_column=label_column, cache_dir=cache_dir,
                        progress=progress, label_warnings=label_warnings)


def load_archive(
    path: str | Path,
    resolution: int,
    labels: str | None = None,
    label_column: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    label_warnings: bool = True,
) -> ImageSet:
    """The images of an archive (checked and extracted once into the cache, see data.archive), read as `load_folder`
    reads a folder. An archive without usable images is named as the user gave it, not as the cache folder it was
    extracted to."""
    folder = extract_archive(path, cache_dir=cache_dir, progress=progress)
    with archive_errors(path):
        return load_folder(folder, resolution, labels=labels, label_column=label_column, cache_dir=cache_dir,
                           progress=progress, label_warnings=label_warnings, source=path)


@contextlib.contextmanager
def archive_errors(path: str | Path):
    """Reading the folder archive `path` was extracted to: a folder without usable images is said of the user's
    archive, not of the cache folder."""
    try:
        yield
    except NoImages as e:
        holds = f" ({e.found})" if e.found else ""
        raise DataError(f"archive '{path}' holds no image files{holds}: pack {SUPPORTED} images into it, "
                        "or pass their folder") from None
    except NoneUsable as e:
        raise DataError(_none_usable_message(f"archive '{path}'", e.skipped, e.resolution)) from None
