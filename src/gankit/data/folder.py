"""Image folders -> one uint8 tensor, decoded once and cached on disk.

`load_folder(root, resolution)` walks `root`, decodes every image file into an RGB square of
`resolution` pixels (colours of an embedded ICC profile converted to sRGB, transparency composited on white,
grayscale/palette/CMYK/16-bit converted,
resized and center-cropped), and caches the result keyed by the folder's listing, so the second
load is a single `torch.load`. Labels (class sub-folders or a CSV column) are applied after the
cache, so changing them never re-decodes. Files that cannot be used (damaged, empty, a broken link,
over Pillow's decompression-bomb limit, under 8 px) are skipped and named in one warning line; a folder that cannot be used at all raises `DataError`.
"""

from __future__ import annotations

import codecs
import csv
import errno
import functools
import io
import os
import re
import sys
import unicodedata
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from gankit import console
from gankit.config import MIN_RESOLUTION
from gankit.console import count, info, short_list, warn
from gankit.data import cache
from gankit.errors import ConfigError, DataError
from gankit.layout import CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE

# Bump when decoding changes what ends up in the tensor, so old caches are not reused.
LOADER_VERSION = 3  # 3: ICC profiles applied (`_to_srgb`), images that show nothing skipped
# Images whose shorter side is below this carry nothing to learn from (spacer GIFs, tracking pixels):
# upscaled they are flat colour, so they are skipped and named like damaged files.
MIN_IMAGE_SIDE = 8
# What Windows cannot hold in a file name (`windows_name`): these characters, and these names with any extension.
_WINDOWS_FORBIDDEN = str.maketrans({c: "_" for c in ':<>"|?*' + "".join(map(chr, range(32)))})
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))}
# AVIF where this Pillow reads it (Pillow 11.2+ built with libavif); else it is one of the formats named below.
_AVIF = (".avif",) if ".avif" in Image.registered_extensions() else ()
_SIGNED_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff", *_AVIF)
# (.icb/.vda/.vst are TGA's; .mpo is a camera's multi-picture JPEG, read as its first picture)
IMAGE_EXTENSIONS = (*_SIGNED_EXTENSIONS, ".tga", ".icb", ".vda", ".vst", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".jif",
                    ".jfi", ".mpo", ".dib", ".pcx", ".qoi")
# Pillow's names of the first formats, whose files start with a signature: a file without an extension (downloaders
# name files by a hash) is read when it holds one. Not TGA's, which has none (a file of any bytes could pass for one).
_FORMATS = sorted({Image.registered_extensions()[e] for e in _SIGNED_EXTENSIONS})
# Archives and compressed files: inside the folder they are named as unreadable; as the --data path one is told to
# unpack it (those gankit reads, data.archive's ARCHIVE_SUFFIXES, are read before).
_PACKED = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst", ".tzst")
# Image files gankit cannot read (phone photos, layered or vector art, camera raw, the image formats Pillow knows that
# gankit leaves out, archives inside the folder): named in a warning, not silently counted with text files.
UNREADABLE_EXTENSIONS = (
    ".heic", ".heif", ".psd", ".psb", ".xcf", ".kra", ".svg", ".svgz", ".eps", ".ps", ".ai", ".jxl", ".jxr", ".wdp",
    ".exr", ".hdr", ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx", ".pfm", ".icns", ".cur", ".dds", ".sgi", ".rgb",
    ".rgba", ".bw", ".xbm", ".xpm", ".blp", ".ras", ".pcd", ".pxr", ".msp", ".dcx",
    ".palm", ".ftc", ".ftu", ".gbr", ".fit", ".fits", ".fli", ".flc", ".emf", ".wmf", ".avifs",
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".pef", ".srw",
    *_PACKED, *((".avif",) if not _AVIF else ()))
# Folders that tools put beside the images, skipped like hidden ones (case-folded names): a Mac zip's AppleDouble files,
# a Synology NAS's thumbnails of every image and its recycle bin, a Windows drive's recycle bin and system folder.
SKIPPED_DIRS = {"__macosx", "@eadir", "#recycle", "$recycle.bin", "system volume information"}
# Decoding threads: Pillow releases the GIL while decoding and resampling.
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))

SUPPORTED = "/".join(e[1:] for e in IMAGE_EXTENSIONS)
# Longest example value a message quotes: a CSV with an unclosed quote makes one "value" of the rest of the file.
EXAMPLE_CHARS = 60
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


# A CSV's label for a name that rows written alike label differently: one image's rows, which disagree.
_REPEATED = "\0repeated"


class NoImages(DataError):
    """A data folder with no image files in it (for an archive's extraction folder, `load_dataset` names the
    archive instead)."""

    def __init__(self, message: str, found: str = ""):
        super().__init__(message)
        self.found = found  # what it holds instead, e.g. "2 other files, e.g. 'a.txt'"; "" when nothing


class NoneUsable(DataError):
    """A data folder none of whose image files can be used (damaged, too small...); `skipped` holds (file, why) for
    each, so that `load_archive` can say it of the archive instead of the cache folder it was extracted to."""

    def __init__(self, where: str, skipped: list[tuple[str, str]], resolution: int):
        super().__init__(_none_usable_message(where, skipped, resolution))
        self.skipped, self.resolution = skipped, resolution


@dataclass
class ImageSet:
    """A decoded dataset, ready to move to a device.

    images:      uint8 [N, C, R, R]; C = 3 for folders, 1 for built-in MNIST.
    labels:      int64 [N] indices into `class_names`, or None when no labels were asked for.
    class_names: index -> class name, sorted; [] when there are no labels.
    files:       relative posix paths of the images, in the order of `images`
                 (built-in datasets use ids such as "mnist/0042").
    name:        short dataset name for run names: the folder's name, or e.g. "mnist".
    key:         hex digest of (file listing, resolution, label settings); caches such as the real
                 FID statistics key on it.
    skipped:     (relative path, reason) for each image file that could not be decoded.
    sizes:       int32 [N, 2], (width, height) of each image before it was fitted to the resolution; None when
                 unknown (built-in datasets, caches written before gankit kept them).
    unlabelled:  how many decoded images were left out for want of a usable label (a CSV without their row, or with
                 an empty label; named in a warning).
    cache_name:  the name of its dataset cache file, without '.pt' (`load_folder`'s family of the folder at this
                 resolution, then the version of its files); '' for built-in datasets. FID's real-feature caches
                 start with it, and replace those of the folder's former versions (`metrics.real_features`).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    files: list[str]
    name: str
    key: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sizes: torch.Tensor | None = None
    unlabelled: int = 0
    cache_name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]


def load_folder(
    root: str | Path,
    resolution: int,
    labels: str | None = None,
    label_column: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    label_warnings: bool = True,
    source: str | Path | None = None,
) -> ImageSet:
    """Load every image under `root` as uint8 [N, 3, resolution, resolution].

    labels:       None (no labels), "folders" (class = first sub-folder under `root`), or the path
                  of a CSV file (tried as given, then relative to `root`) with one row per image.
    label_column: the CSV column that holds the class; the column with the file names is found
                  automatically (the one whose values match the most image file stems).
    cache_dir:    where decoded data is cached; default $GANKIT_CACHE_DIR or ~/.cache/gankit/datasets.
                  Nothing is ever written inside `root`.
    progress:     show a progress bar on stderr while decoding (only when stderr is a terminal).
    label_warnings: False leaves out the warnings about the label file (images without a label, rows naming no
                  image...): `gankit evaluate` reads a run's data as it was trained, whose start said them.
    source:       the archive `root` was extracted from (each version of it to another folder): its caches are
                  named after it, so that those of its former versions are replaced too.
    """
    _check_resolution(resolution)
    root = Path(root).expanduser()
    files, stats, ignored = _scan(root)
    name = root.resolve().name or "data"
    listing = "\n".join(f"{f}\t{size}\t{mtime}\t{ctime}" for f, (size, mtime, ctime) in zip(files, stats))
    # the folder's own path too: two copies with the same names, sizes and mtimes (`cp -p`, `rsync -a`, `tar x`) but
    # other pixels must not share one cache
    key = cache.digest("gankit-folder", LOADER_VERSION, resolution, root.resolve(), listing)
    # the caches of this folder at this resolution share a name up to the listing's digest: an edit of the folder
    # leaves its former cache, which the new one replaces (`cache.remove_older`)
    origin = Path(source).expanduser().resolve() if source is not None else root.resolve()
    family = f"{_safe(name)}-{resolution}px-{cache.digest('gankit-folder', resolution, origin)[:8]}-"
    cache_file = cache.cache_root(cache_dir) / f"{family}{key[:16]}.pt"

    payload = cache.read(cache_file, key, progress=progress)
    if payload is None or not _valid(payload, resolution):
        payload = _decode_folder(root, files, stats, resolution, name, progress)
        payload["key"] = key
        if payload["files"] and cache.write(cache_file, payload, progress=progress):
            cache.remove_older(cache_file, family)
            if progress:
                info(f"cached {count(len(payload['files']), 'image')} of '{name}' at {resolution}px in {cache_file}")

    images, kept, sizes = payload["images"], list(payload["files"]), _sizes(payload)
    skipped = [(str(f), str(r)) for f, r in payload["skipped"]]
    if not kept:
        raise NoneUsable(f"'{root}'", skipped, resolution)
    if skipped:
        warn(_skip_message(skipped, len(kept) + len(skipped), ignored))

    label_tensor, class_names, label_key, unlabelled = None, [], "none", 0
    if labels is not None:
        with console.muted(not label_warnings):
            rows, label_tensor, class_names, label_key = _apply_labels(root, kept, labels, label_column,
                                                                       unusable=[f for f, _ in skipped])
        unlabelled = len(kept) - len(rows)
        if unlabelled:
            images = images[torch.as_tensor(rows, dtype=torch.long)]
            sizes = sizes[torch.as_tensor(rows, dtype=torch.long)] if sizes is not None else None
            kept = [kept[i] for i in rows]
    return ImageSet(images=images, labels=label_tensor, class_names=class_names, files=kept,
                    name=name, key=cache.digest(key, label_key), skipped=skipped, sizes=sizes, unlabelled=unlabelled,
                    cache_name=cache_file.stem)


def upscale_note(data: ImageSet, resolution: int) -> str | None:
    """One line when most images of `data` (more than half) are smaller than `resolution` on their shorter side, so
    that fitting upscales them into blurry ones: how many, their median size and the fix; else None (also when the
    sizes before fitting are unknown)."""
    if data.sizes is None or not len(data.sizes):
        return None
    sides = data.sizes.min(dim=1).values
    small = sides[sides < resolution]
    if 2 * len(small) <= len(sides):
        return None
    median = int(small.median())
    lower = max(median, MIN_RESOLUTION)
    fix = f"train at --resolution {lower}, or use images at least {resolution} px" if lower < resolution else \
        f"use images at least {resolution} px"
    return (f"{len(small)} of {len(sides)} images are smaller than {resolution} px (shorter side; median {median} px) "
            f"and are upscaled to it, which blurs them: {fix}")


# ----------------------------------------------------------------------------- finding files


def _scan(root: Path) -> tuple[list[str], list[tuple[int, int, int]], int]:
    """Image files under `root` (sorted relative posix paths), their (size, mtime_ns, ctime_ns), and the
    number of other files. Raises DataError when `root` cannot be used."""
    if root.is_symlink() and not root.exists():
        raise DataError(f"data path '{root}' is a symbolic link that leads nowhere (broken, or a loop): "
                        "pass the real folder that holds the images")
    if not root.exists():
        raise DataError(f"data folder '{root}' does not exist: pass --data DIR with {SUPPORTED} images, "
                        "or omit --data to use the built-in MNIST")
    if not root.is_dir():
        hint = ("unpack it and pass the folder" if root.name.lower().endswith(_PACKED)
                else f"pass the folder that holds it, '{root.parent}'" if root.name.lower().endswith(IMAGE_EXTENSIONS)
                else "pass the folder that holds the images")
        raise DataError(f"data path '{root}' is a file, not a folder: {hint}")

    unreadable: list[OSError] = []
    files: list[str] = []
    unreadable_images: list[str] = []
    ignored: list[str] = []
    hidden: list[str] = []  # skipped hidden files and folders, named when nothing else is there
    runs: list[str] = []  # gankit's own run folders: `--data .` must not train on its samples and plots
    for rel_dir, filenames in _visible(root, unreadable.append, hidden, runs):
        for fname in filenames:
            rel = fname if rel_dir == "." else f"{rel_dir}/{fname}"
            lower = fname.lower()
            (files if _is_image(root / rel, fname)
             else unreadable_images if lower.endswith(UNREADABLE_EXTENSIONS) else ignored).append(rel)

    # images whose names end past their extension (`a.jpg_large`, `a.png_orig` from a browser, `a.jpg.1` from wget;
    # only those are opened, not every text file beside the images)
    misnamed = [f"{_clip(rel)} ({fmt})" for rel in sorted(ignored)
                if any(e in PurePosixPath(rel).name.lower() for e in _SIGNED_EXTENSIONS)
                for fmt in [_image_format(root / rel)] if fmt]
    if runs:
        info(f"left out {count(len(runs), 'gankit run folder')}: {short_list(sorted(runs))}")
    for err in unreadable:
        if err.filename is not None and Path(err.filename) == root:
            raise DataError(f"cannot read data folder '{root}' ({err.strerror}): check its permissions")
    if unreadable:
        names = [Path(e.filename).relative_to(root).as_posix() if e.filename else "?" for e in unreadable]
        warn(f"could not read {count(len(names), 'sub-folder')} of '{root}' ({unreadable[0].strerror}): "
             f"{short_list(names)}; their images are left out")

    if not files:
        hidden_images = sorted(n for n in hidden if n.lower().endswith(IMAGE_EXTENSIONS))
        skipped = (f"; {count(len(hidden_images), 'hidden image')} skipped, e.g. '{_clip(hidden_images[0])}' (names "
                   "must not start with '.')" if hidden_images else "")
        if runs and not unreadable_images and not ignored:
            raise NoImages(f"data folder '{root}' holds only gankit run folders ({short_list(sorted(runs))}), whose "
                           "samples and plots are not training data: pass the folder of training images")
        if unreadable_images:
            found = _formats(unreadable_images)
            raise NoImages(f"data folder '{root}' holds no image files gankit reads ({found}): convert them to png "
                           f"or jpg (gankit reads {SUPPORTED}){skipped}", found)
        if misnamed:
            raise NoImages(f"data folder '{root}' holds no file with an image extension but {_misnamed(misnamed)}",
                           f"{count(len(misnamed), 'image')} under another extension, e.g. {misnamed[0]}")
        if ignored:
            found = f"{count(len(ignored), 'other file')}, e.g. '{_clip(sorted(ignored)[0])}'"
            raise NoImages(f"data folder '{root}' holds no image files ({found}): supported extensions are "
                           f"{SUPPORTED}{skipped}",
                           found)
        if hidden:
            found = f"only hidden files, e.g. '{_clip(sorted(hidden)[0])}'"
            raise NoImages(f"data folder '{root}' holds only hidden files or folders ({short_list(sorted(hidden))}), "
                           "which gankit skips: move the images out of them (names must not start with '.')", found)
        raise NoImages(f"data folder '{root}' is empty: put {SUPPORTED} images in it (sub-folders are fine)")

    if unreadable_images:
        warn(f"ignored {count(len(unreadable_images), 'file')} gankit cannot read ({_formats(unreadable_images)}): "
             "convert them to png or jpg")
    if misnamed:
        warn(f"left out {_misnamed(misnamed)}")
    files.sort()
    stats = []
    for rel in files:
        try:
            st = os.stat(root / rel)  # follows symlinked files
            # the change time too: a file put back with its old mtime (`cp -p`, `touch -r`) has a new one
            stats.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            stats.append((-1, 0, 0))  # broken link or vanished; decoding reports why
    return files, stats, len(ignored)


def _misnamed(found: list[str]) -> str:
    """The end of a message about image files whose extension gankit does not read (`found`: 'name (FORMAT)')."""
    one = len(found) == 1
    it = "it" if one else "them"
    return (f"{count(len(found), 'file')} that hold{'s' if one else ''} {'an image' if one else 'images'} under "
            f"another extension: {short_list(found)}; rename {it} to the format's extension (.png, .jpg, ...) for "
            f"gankit to read {it}")


def _formats(names: list[str]) -> str:
    """'.heic x3, .psd x1, e.g. 'a.heic'': the extensions of `names`, most common first, and the first name."""
    suffixes: dict[str, int] = {}
    for name in names:
        suffix = PurePosixPath(name).suffix.lower()
        suffixes[suffix] = suffixes.get(suffix, 0) + 1
    kinds = sorted(suffixes.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{short_list([f'{s} x{n}' for s, n in kinds])}, e.g. '{_clip(sorted(names)[0])}'"


def image_files(root: str | Path) -> list[Path]:
    """The image files `load_folder` reads under `root` (links to folders followed; hidden names and gankit run
    folders left out), found without a word."""
    root = Path(root).expanduser()
    return [root / rel_dir / f for rel_dir, filenames in _visible(root, lambda e: None, [], [])
            for f in filenames if _is_image(root / rel_dir / f, f)]


def _is_image(path: Path, name: str) -> bool:
    """Whether `load_folder` reads the file `name` (at `path`): it has an image extension, or it has no extension and
    holds an image of one of those formats (only its header is read; a pipe or a folder is not opened)."""
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return True
    return not PurePosixPath(name).suffix and bool(_image_format(path))


def _image_format(path: Path) -> str:
    """The format of the image of one of _FORMATS that the file at `path` holds ("PNG", "JPEG"...; "image" for one over
    Pillow's size limit, which decoding skips and names), else "". Only its header is read; a pipe or a folder is not
    opened."""
    if not path.is_file():
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_FORMATS) as im:
                return im.format or "image"
    except Image.DecompressionBombError:
        return "image"
    except Exception:
        return ""


def _visible(root: Path, onerror, hidden: list[str], runs: list[str]):
    """(folder relative to `root`, its file names) for each folder `load_folder` looks in, leaving out hidden files
    and folders (appended to `hidden`) and gankit's run folders (appended to `runs`)."""
    for dirpath, dirnames, filenames in _walk(root, onerror):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        hidden += [n if rel_dir == "." else f"{rel_dir}/{n}" for n in (*dirnames, *filenames) if _hidden(n)]
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        found_runs = [d for d in dirnames if is_run_folder(Path(dirpath) / d)]
        dirnames[:] = [d for d in dirnames if d not in found_runs]
        runs += [d if rel_dir == "." else f"{rel_dir}/{d}" for d in found_runs]
        yield rel_dir, [f for f in filenames if not _hidden(f)]


def _walk(root: Path, onerror):
    """os.walk over `root` that also enters symbolic links to folders, each real folder once: the real tree first, then
    the links' targets (so a folder reached both ways keeps its real path), skipping a target already walked (a link to
    an ancestor, `root`'s own included, a loop, a second link to one folder). Like os.walk, the caller may prune
    `dirnames` in place."""
    # root's ancestors count as walked: a link up to one of them would pull in everything beside `root`.
    visited = {i for i in map(_identity, map(str, Path(root).resolve().parents)) if i is not None}
    pending = [str(root)]
    while pending:
        top = pending.pop(0)
        ident = _identity(top)
        if ident is None or ident in visited:
            continue
        visited.add(ident)
        for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=False):
            yield dirpath, dirnames, filenames
            for d in list(dirnames):
                path = os.path.join(dirpath, d)
                ident = _identity(path)
                if os.path.islink(path):
                    dirnames.remove(d)
                    pending.append(path)
                elif ident in visited:  # reached again through a link to one of its ancestors
                    dirnames.remove(d)
                elif ident is not None:
                    visited.add(ident)


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the folder `path` leads to, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a gankit run folder (config.yaml beside checkpoints/ or metrics.jsonl)."""
    return (path / CONFIG_FILE).is_file() and ((path / CHECKPOINTS_DIR).is_dir() or (path / METRICS_FILE).is_file())


def runs_held(path: Path) -> list[Path]:
    """The run folders directly inside `path` (`runs`, given where one run is meant), sorted; none when it is no folder."""
    return sorted(d for d in path.iterdir() if is_run_folder(d)) if path.is_dir() else []


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.casefold() in SKIPPED_DIRS


# ----------------------------------------------------------------------------- decoding


class _Skip(Exception):
    """An image file that cannot be used; the message is the short reason shown to the user."""


def _decode_folder(root: Path, files: list[str], stats: list[tuple[int, int, int]], resolution: int,
                   name: str, progress: bool) -> dict:
    """Decode `files` into the cache payload: images [N, 3, R, R], kept files, skipped (file, reason), and the kept
    images' sizes before fitting (`ImageSet.sizes`)."""
    out = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)
    sizes = torch.zeros((len(files), 2), dtype=torch.int32)
    ok = np.zeros(len(files), dtype=bool)
    skipped: list[tuple[str, str]] = []

    def work(i: int) -> tuple[int, tuple[np.ndarray, tuple[int, int]] | None, str]:
        if stats[i][0] == 0:
            return i, None, "empty file"
        try:
            return i, _decode_file(str(root / files[i]), resolution), ""
        except _Skip as exc:
            return i, None, str(exc)

    bar = console.progress(len(files), f"decoding {name}", "images", progress)
    # Oversized images must be skipped, not just warned about: make Pillow's warning an error.
    with warnings.catch_warnings(), bar:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            for i, decoded, reason in pool.map(work, range(len(files))):
                if decoded is None:
                    skipped.append((files[i], reason))
                else:
                    out[i] = torch.from_numpy(decoded[0]).permute(2, 0, 1)
                    sizes[i] = torch.tensor(decoded[1])
                    ok[i] = True
                bar.update()
    if not ok.all():
        out, sizes = out[torch.from_numpy(np.flatnonzero(ok))], sizes[torch.from_numpy(np.flatnonzero(ok))]
    return {"version": LOADER_VERSION, "images": out, "sizes": sizes,
            "files": [f for f, good in zip(files, ok) if good], "skipped": [list(s) for s in skipped]}


def _decode_file(path: str, resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One image file -> uint8 [resolution, resolution, 3] (first frame of animations), and its (width, height)
    before fitting. Raises _Skip."""
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.width * im.height > limit:
                raise _Skip(f"too large, {im.width}x{im.height}")
            if min(im.size) < MIN_IMAGE_SIDE:
                raise _Skip(f"too small, {im.width}x{im.height}")
            if im.format in ("JPEG", "MPO"):  # let libjpeg decode at a reduced scale when the image is huge
                short = min(im.size)
                im.draft(None, (im.width * 2 * resolution // short + 1, im.height * 2 * resolution // short + 1))
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block is no reason to drop a good image
                pass
            return np.array(_fit(_to_rgb(_to_srgb(im)), resolution), dtype=np.uint8), im.size
    except _Skip:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's limit, checked on opening
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise _Skip(f"too large, {int(pixels[1]) / 1e6:,.0f} MP" if pixels else "too large") from None
    except UnidentifiedImageError:
        raise _Skip(_not_an_image(path)) from None
    except FileNotFoundError:
        raise _Skip("missing or broken link") from None
    except PermissionError:
        raise _Skip("permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Skip("symlink loop") from None
        raise _Skip("truncated" if "truncated" in str(exc).lower() else "corrupt") from None
    except Exception:  # Pillow raises SyntaxError, ValueError, ... for damaged files
        raise _Skip("corrupt") from None


# What a file that Pillow does not know as an image holds, by its first bytes: a clone without `git lfs` leaves pointer
# files under the images' names, a download that failed an HTML page, an iPhone export HEIC under a .jpg name.
GIT_LFS_POINTER = "a Git LFS pointer, not the image: run git lfs pull"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _not_an_image(path: str) -> str:
    """The reason a file Pillow cannot identify is skipped: what it holds when its first bytes say, else 'not an
    image'."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return "not an image"
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return GIT_LFS_POINTER
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "a HEIC image, which gankit cannot read: convert it to jpg"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "a web page, not an image: download it again"
    return "not an image"


def _to_srgb(im: Image.Image) -> Image.Image:
    """`im` with the colours of its embedded ICC profile converted to sRGB, which the model's pixels (and Inception's)
    mean: a phone photo's Display P3 or an Adobe RGB image was read as sRGB, its colours dulled. Without a profile, with
    sRGB's, one that cannot be read, or in another mode, `im` as it is (taken as sRGB)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    try:
        transform = _srgb_transform(bytes(icc), "CMYK" if im.mode == "CMYK" else "RGB")
        if transform is None:
            return im
        out = ImageCms.applyTransform(im.convert("RGB") if im.mode == "RGBA" else im, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):  # a damaged profile is no reason to drop the image
        return im
    if im.mode == "RGBA":
        out.putalpha(im.getchannel("A"))
    return out


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from profile `icc` (images in `mode`) to sRGB; None for an sRGB profile (most PNGs that carry one).
    Without lcms's one-pixel cache: the decoding threads share it."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if "srgb" in ImageCms.getProfileDescription(profile).lower():
        return None
    return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB", flags=ImageCms.Flags.NOCACHE)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency composited on white (_Skip when nothing shows), 16-bit scaled to 8 bits."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if im.mode == "F":
            top = 1.0 if a.max(initial=0.0) <= 1.0 else 255.0
        else:  # 16-bit data; mode "I" may hold wider values, then use its maximum
            top = max(65535.0, float(a.max(initial=0.0)))
        a8 = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[1] == 0:  # nothing shows: a blank white square to learn from
            raise _Skip("fully transparent")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im.convert("RGB")


def _fit(im: Image.Image, resolution: int) -> Image.Image:
    """Center-crop the largest square and resize it to resolution x resolution (up or down)."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((resolution, resolution), Image.Resampling.LANCZOS,
                     box=(left, top, left + side, top + side), reducing_gap=3.0)


def _sizes(payload: dict) -> torch.Tensor | None:
    """A cache payload's image sizes before fitting, or None for a cache written before gankit kept them (still valid:
    only the note of `upscale_note` needs them)."""
    sizes = payload.get("sizes")
    ok = isinstance(sizes, torch.Tensor) and tuple(sizes.shape) == (len(payload["files"]), 2)
    return sizes if ok else None


def _valid(payload: dict, resolution: int) -> bool:
    images, files = payload.get("images"), payload.get("files")
    return (payload.get("version") == LOADER_VERSION and isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8 and images.dim() == 4 and isinstance(files, list)
            and images.shape[0] == len(files) and tuple(images.shape[1:]) == (3, resolution, resolution)
            and isinstance(payload.get("skipped"), list))


# ----------------------------------------------------------------------------- labels


def _apply_labels(root: Path, files: list[str], labels: str, label_column: str | None, unusable: list[str] = ()
                  ) -> tuple[list[int], torch.Tensor, list[str], str]:
    """(rows of `files` that have a label, their class indices, sorted class names, key material). `unusable`: the
    image files that could not be decoded (already named in a warning): a CSV row naming one names an image."""
    if labels == "folders":
        loose = [f for f in files if "/" not in f]
        if loose:
            raise DataError(
                f"labels='folders' needs every image inside a class sub-folder of '{root}', but "
                f"{len(loose)} lie directly in it (e.g. '{_clip(loose[0])}'): move them into sub-folders, "
                "or use a CSV label file")
        names = [f.split("/", 1)[0] for f in files]
        return _index(list(range(len(files))), names, "folders")
    return _csv_labels(root, files, Path(labels).expanduser(), label_column, unusable)


def _csv_labels(root: Path, files: list[str], csv_path: Path, column: str | None, unusable: list[str] = ()
                ) -> tuple[list[int], torch.Tensor, list[str], str]:
    if not csv_path.is_absolute() and (root / csv_path).is_file():  # the dataset's own before one from the current
        csv_path = root / csv_path  # folder: a run's saved relative label path means the dataset's (archives' too)
    if csv_path.is_dir():
        raise DataError(f"label file '{csv_path}' is a folder: pass --labels folders (data.labels) to take the labels from the data "
                        "folder's sub-folder names, or the path of a CSV file with a file-name column and a label column")
    if not csv_path.is_file():
        raise DataError(f"label file '{csv_path}' does not exist: pass --labels folders (data.labels) "
                        "or the path of a CSV file with a file-name column and a label column")
    header, rows, raw = _read_csv(csv_path)
    if column is None or column.strip().casefold() not in {h.casefold() for h in header}:
        _check_header(header, files, csv_path.name)
    if column is None:
        raise DataError(f"labels from '{csv_path.name}' need a label column: pass --label-column, "
                        f"one of: {_columns(header)}")
    folded = [h for h in header if h.strip().casefold() == column.strip().casefold()]
    if column not in header and len(folded) == 1:  # `--label-column Type1` for a `type1` column
        column = folded[0]
    if column not in header:
        raise DataError(f"label column '{column}' is not in '{csv_path.name}'; "
                        f"available columns: {_columns(header)}")
    label_at = header.index(column)

    def lookup(col: int) -> dict[tuple[str, ...], str | None]:
        """The labels of CSV column `col` by what its values name: each ending of a value's path (`b/abra.png`,
        `abra.png`) and the same with the file's stem (`b/abra`, `abra`), case-folded. An ending that rows label
        differently is ambiguous (None): `a/abra.png` and `b/abra.png` may be two pictures; written alike in each
        row, it names one picture twice (_REPEATED)."""
        labels_of: dict[tuple[str, ...], str | None] = {}
        first_value: dict[tuple[str, ...], str] = {}
        for row in rows:
            value = _csv_name(row[col]) if col < len(row) else ""
            if not value:
                continue
            label = row[label_at].strip() if label_at < len(row) else ""
            for key in _endings(PurePosixPath(value)):
                if labels_of.setdefault(key, label) != label:
                    alike = first_value[key] == value and labels_of[key] is not None
                    labels_of[key] = _REPEATED if alike else None
                first_value.setdefault(key, value)
        return labels_of

    def label_of(f: str, labels_of: dict) -> str | None | type[KeyError]:
        """An image's label by the longest ending of its path that the CSV names (KeyError: none)."""
        return next((labels_of[key] for key in _endings(PurePosixPath(_fold(f))) if key in labels_of), KeyError)

    best_col, best_map, best_hits = -1, {}, 0
    for col in range(len(header)):
        if col == label_at:
            continue
        mapping = lookup(col)
        hits = sum(label_of(f, mapping) is not KeyError for f in files)
        if hits > best_hits:
            best_col, best_map, best_hits = col, mapping, hits
    if best_hits == 0:
        tried = _columns([h for i, h in enumerate(header) if i != label_at])
        example = next((r[0] for r in rows if r), "")
        raise DataError(
            f"no file names in '{csv_path.name}' match the images in '{root}': tried columns {tried} "
            f"(e.g. '{_clip(example)}') against file names like '{_clip(PurePosixPath(files[0]).name)}'; "
            "the CSV needs a column of image file names or paths")

    keep, names, dropped = [], [], []
    for i, f in enumerate(files):
        label = label_of(f, best_map)
        if label is KeyError:
            dropped.append((f, "no row"))
        elif label is None:
            dropped.append((f, "rows give its name different labels: write its path in the CSV"))
        elif label is _REPEATED:
            dropped.append((f, "its rows give different labels: keep one"))
        elif not label:
            dropped.append((f, "empty label"))
        else:
            keep.append(i)
            names.append(label)
    if not keep:
        raise DataError(f"no image has a label in column '{column}' of '{csv_path.name}' "
                        f"(every matching row is empty): pick another --label-column")
    if dropped:
        warn(f"dropped {len(dropped)} of {len(files)} images without a '{column}' label in "
             f"'{csv_path.name}' (matched by column '{header[best_col]}'): {_name_list(dropped)}; give each one row "
             "with a label to train on it")
    _warn_rows_without_images(rows, best_col, best_map, [*files, *unusable], csv_path.name, header[best_col])
    _warn_case_twins(names, column, csv_path.name)
    if len(set(names)) == len(names) > 2 and all(label_of(files[i], own) is not KeyError
                                                 for own in [lookup(label_at)] for i in keep):  # (a column of names)
        others = _columns([h for i, h in enumerate(header) if i not in (label_at, best_col)])
        warn(f"column '{column}' of '{csv_path.name}' names the images themselves: each of the {len(names)} images is a "
             f"class of its own, which a conditional model learns nothing from; pick a label column"
             f"{f', one of: {others}' if others else ''}")
    return _index(keep, names, cache.digest("csv", raw, column))


def _check_header(header: list[str], files: list[str], csv_name: str) -> None:
    """Raise when the CSV's first row names an image file (with its extension: a column named `image` is no sign): the
    file has no header row, so its columns have no names to pass as --label-column (the ones a message would list are
    the first image's file name and label)."""
    names = {_fold(PurePosixPath(f).name) for f in files}
    if any(h.lower().endswith(IMAGE_EXTENSIONS) and PurePosixPath(_csv_name(h)).name in names
           for h in header):
        raise DataError(f"label file '{csv_name}' has no header row: its first row ('{_clip(', '.join(header))}') "
                        "names an image; add a first row naming the columns, e.g. file,label, and pass "
                        "--label-column label")


def _warn_rows_without_images(rows: list[list[str]], col: int, labels_of: dict, files: list[str], csv_name: str,
                              col_name: str) -> None:
    """Warn, in one line, about rows whose file name (column `col`) matches none of `files` (a typo, an image since
    deleted), as the warning about dropped images names the images without a row. A row naming an image that could
    not be decoded (in `files`) is not counted: the warning about skipped files named it."""
    used = {next((key for key in _endings(PurePosixPath(_fold(f))) if key in labels_of), None) for f in files}
    unmatched = []
    for row in rows:
        value = row[col].strip() if col < len(row) else ""
        if value and not any(key in used for key in _endings(PurePosixPath(_csv_name(value)))):
            unmatched.append(_clip(value))
    if unmatched:
        warn(f"{count(len(unmatched), 'row')} of '{csv_name}' name{'s' if len(unmatched) == 1 else ''} no image "
             f"(column '{col_name}'): {short_list(unmatched)}; fix the names or remove the rows")


def _warn_case_twins(names: list[str], column: str, csv_name: str) -> None:
    """Warn, in one line, about labels that differ only in case (`Fire` and `fire`): they stay separate classes."""
    spellings: dict[str, set[str]] = {}
    for name in names:
        spellings.setdefault(name.casefold(), set()).add(name)
    twins = ["/".join(f"'{_clip(n, 30)}'" for n in sorted(s)) for s in spellings.values() if len(s) > 1]
    if twins:
        warn(f"labels in column '{column}' of '{csv_name}' that differ only in case are separate classes: "
             f"{short_list(sorted(twins))}; write them alike in the CSV if they are one class")


def _fold(name: str) -> str:
    """A file name as the CSV matching compares it: case-folded, and its accents composed (NFC), as typed: macOS names
    files decomposed (NFD), so `flabébé.png` on its disk and `flabébé` in a CSV are otherwise two names."""
    return unicodedata.normalize("NFC", name.casefold())


def _csv_name(value: str) -> str:
    """A file name or path written in a CSV as the matching compares it (`_fold`), '\\' read as '/'. On Windows, as
    extracting an archive names that file there (`windows_name`): a CSV naming 'Type: Null.png' in a tar made on
    Linux finds the 'Type_ Null.png' extracted."""
    value = value.strip().replace("\\", "/")
    return _fold(windows_name(value) if sys.platform == "win32" else value)


def windows_name(path: str) -> str:
    """`path` ('/'-separated) with each part that Windows cannot hold as a file name made one it can: its forbidden
    characters (`_WINDOWS_FORBIDDEN`) replaced by '_' and its trailing dots and spaces removed, as zipfile does there
    (into an NTFS alternate data stream, or not at all, the file went missing), and '_' after a reserved name
    (`_WINDOWS_RESERVED`: 'CON.png' is the console) before its extension. Other paths are returned as they are."""
    def part_name(part: str) -> str:
        if part in ("", ".", ".."):
            return part
        part = part.translate(_WINDOWS_FORBIDDEN).rstrip(". ") or "_"
        base = part.split(".", 1)[0]
        return f"{base}_{part[len(base):]}" if base.rstrip(" ").upper() in _WINDOWS_RESERVED else part

    return "/".join(map(part_name, path.split("/")))


def _endings(path: PurePosixPath) -> list[tuple[str, ...]]:
    """The endings of a path, longest first, each also with the file's stem: a/b.png -> (a, b.png), (a, b), (b.png,),
    (b,)."""
    parts, stem = path.parts, path.stem
    return [key for k in range(len(parts), 0, -1) for key in (parts[-k:], (*parts[-k:-1], stem))]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]], str]:
    """(header, rows, text) of a CSV file; comma-separated, or ; tab | when the header has no comma, or what Excel's
    `sep=X` first line names (that line is not the header)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read label file '{path}' ({exc.strerror}): check its permissions") from None
    try:  # UTF-16 with its byte-order mark: Excel's "Unicode Text" export (tab-separated)
        text = data.decode("utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:  # not text, or binary bytes that happen to decode
        raise DataError(f"label file '{path}' is not a UTF-8 text CSV: export it as CSV (UTF-8)")
    first = text.split("\n", 1)[0]
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel
    sep = _excel_sep(first)
    if sep:
        text = text.split("\n", 1)[1] if "\n" in text else ""
        dialect = _Delimited(sep)
    elif "," not in first:
        try:
            dialect = csv.Sniffer().sniff(first, delimiters=";\t|")
        except csv.Error:
            pass
    try:
        table = [r for r in csv.reader(io.StringIO(text, newline=""), dialect) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"label file '{path}' is not a valid CSV ({exc})") from None
    unclosed = _unclosed_quote_row(text, dialect)
    if unclosed:
        raise DataError(f"label file '{path}' is not a valid CSV: row {unclosed + bool(sep)} opens a quote that never "
                        "closes, so the rest of the file reads as one value: close the quote or remove it")
    if not table:
        raise DataError(f"label file '{path}' is empty: it needs a header row and one row per image")
    header = [h.strip() for h in table[0]]
    if len(header) < 2:
        raise DataError(f"label file '{path}' has a single column '{_clip(header[0])}': it needs a file-name "
                        "column and a label column, separated by commas")
    rows = table[1:]
    for n, row in enumerate(rows, start=2):
        if len(row) > len(header) and not any(c.strip() for c in row[len(header):]):
            del row[len(header):]  # `a.png,fire,`: a trailing delimiter (or empty cells) past the header's columns
        if len(row) > len(header):
            raise DataError(f"label file '{path}' is not a valid CSV: row {n} has {len(row)} fields "
                            f"but the header has {len(header)}: quote values that hold a '{dialect.delimiter}', "
                            "or give the extra columns a name in the header")
    return header, rows, text


def _excel_sep(line: str) -> str | None:
    """The delimiter an Excel `sep=;` first line names, else None."""
    line = line.rstrip("\r\n")  # not strip(): `sep=<tab>`
    return line[4] if len(line) == 5 and line[:4].lower() == "sep=" else None


class _Delimited(csv.excel):
    """Excel's CSV dialect with another delimiter."""

    def __init__(self, delimiter: str):
        super().__init__()
        self.delimiter = delimiter


def _unclosed_quote_row(text: str, dialect) -> int | None:
    """The row (counted from 1, the header, blank lines included) whose quoted field runs to the end of the file, if one
    does; the lenient reader takes the rest of the file as that field's value."""
    reader = csv.reader(io.StringIO(text, newline=""), dialect, strict=True)
    rows = 0
    try:
        for _ in reader:
            rows += 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return rows + 1
    return None


def _index(rows: list[int], names: list[str], key: str) -> tuple[list[int], torch.Tensor, list[str], str]:
    class_names = sorted(set(names))
    lookup = {n: i for i, n in enumerate(class_names)}
    labels = torch.tensor([lookup[n] for n in names], dtype=torch.int64)
    return rows, labels, class_names, key


# ----------------------------------------------------------------------------- small helpers


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive whole number of pixels, not {resolution!r}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "data"


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """`text` cut to `limit` characters (with '...'), newlines shown as \\n: an example in a one-line message."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _columns(header: list[str]) -> str:
    """A CSV header's column names for a message, each clipped; an empty one (pandas' index column) as (unnamed)."""
    return ", ".join(_clip(h) if h else "(unnamed)" for h in header)


def _name_list(items: list[tuple[str, str]]) -> str:
    """The files and why each is named; a reason they all share is said once, after them (three images without a
    CSV row made a line of 222 characters that said "(no row)" three times)."""
    whys = {why for _, why in items}
    if len(items) > 1 and len(whys) == 1:
        return f"{short_list([_clip(f) for f, _ in items])} (all: {whys.pop()})"
    return short_list([f"{_clip(f)} ({why})" for f, why in items])


def _none_usable_message(where: str, skipped: list[tuple[str, str]], resolution: int) -> str:
    """The error for a folder (`where`: "'PATH'", or "archive 'x.zip'") none of whose image files can be used: too
    small ones are valid images, not damaged."""
    if all(why.startswith("too small") for _, why in skipped):
        which = "the only image in" if len(skipped) == 1 else f"all {len(skipped)} images in"
        return (f"{which} {where} {'is' if len(skipped) == 1 else 'are'} smaller than {MIN_IMAGE_SIDE} px "
                f"({_name_list(skipped)}): gankit needs images at least {MIN_IMAGE_SIDE} px on each side; "
                f"upscale them (e.g. to {max(resolution, MIN_IMAGE_SIDE)} px) or use larger ones")
    if all(why.startswith("too large") for _, why in skipped):
        which = "the only image in" if len(skipped) == 1 else f"all {len(skipped)} images in"
        return (f"{which} {where} {'is' if len(skipped) == 1 else 'are'} larger than Pillow's limit of "
                f"{Image.MAX_IMAGE_PIXELS / 1e6:,.0f} megapixels, a guard against decompression bombs "
                f"({_name_list(skipped)}): downscale them (e.g. to {max(resolution, 4096)} px a side)")
    if all(why == GIT_LFS_POINTER for _, why in skipped):
        names = short_list([_clip(f) for f, _ in skipped])
        return (f"the image files in {where} are Git LFS pointers, not images ({names}): run git lfs pull in the "
                "repository they were cloned from (git lfs install first, once)")
    return (f"none of the {len(skipped)} image files in {where} could be decoded "
            f"({_name_list(skipped)}): check or re-export them, e.g. as PNG or JPEG")


def _skip_message(skipped: list[tuple[str, str]], total: int, ignored: int) -> str:
    extra = f"; {count(ignored, 'non-image file')} ignored" if ignored else ""
    return (f"skipped {len(skipped)} of {total} image files: {_name_list(skipped)} "
            f"— fix or remove them to silence this{extra}")
