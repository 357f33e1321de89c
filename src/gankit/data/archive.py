"""Datasets shipped as archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz): checked, then extracted once.

`extract_archive(path)` unpacks into the gankit cache, in a folder keyed by the archive's resolved
path, size and modification time, so the next run finds it there; the extractions of its former versions (the
archive replaced) are removed then, unless a process reads one. An archive is untrusted input: before
anything is written, every member is checked, and one that would land outside the target (an
absolute path, a `..` component, a link pointing outside, a device file) refuses the whole archive
with a `DataError` naming it. Tar members go through tarfile's "data" filter (PEP 706); zip members
are checked here, since zipfile has no such filter. A zip that zipfile cannot read (password-protected,
or Deflate64 as Windows Explorer and 7-Zip write for large files) is refused up front too. Extraction
happens in a temporary folder that is renamed into place when complete, so a crash never leaves a
half-extracted dataset behind (the temporary folders of extractions that a kill -9 cut short are removed by a
later one, `_remove_abandoned`); a manifest of the extracted files is checked (a stat each) before an
extraction is reused, and one that lost files since (a tmp cleaner) is extracted again.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from gankit import console, runlock
from gankit.console import count, info, short_list, warn
from gankit.data import cache
from gankit.data.folder import _fold, _hidden, _safe, windows_name
from gankit.errors import DataError

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES
# Written beside the extracted folder once extraction is complete: every file's size, checked on reuse.
_MANIFEST = ".gankit-files.json"
# Bump when extraction names files otherwise, so that an extraction by an older gankit is not reused (its manifest
# holds another version, or none). 2: zip names in Shift-JIS and GBK (`_zip_names`), members that would be one file
# made unique (`_disk_names`).
EXTRACT_VERSION = 2
# Zip compression methods that Python's zipfile reads, and names for common ones it does not.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ZIP_METHOD_NAMES = {6: "Implode", 9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd"}
# ZipInfo.flag_bits: 0x1 encrypted, 0x40 strong encryption (zipfile refuses both), 0x20 patched data (refused too),
# 0x800 names in UTF-8 (else zipfile reads them as cp437).
_ZIP_ENCRYPTED, _ZIP_PATCHED, _ZIP_UTF8 = 0x41, 0x20, 0x800
# The code pages in which Windows' own zipper writes names (the system's, not flagged as UTF-8), tried in turn on a zip's
# names that are not UTF-8: Japanese Windows' Shift-JIS, Chinese Windows' GBK. Else they are read as zipfile reads
# them, as cp437 (DOS).
_LEGACY_CODECS = ("cp932", "gbk")
# Characters that a name read in the wrong one of them is full of, and that real names hardly hold: half-width katakana
# (GBK's Chinese read as Shift-JIS) and private-use ones (code points the code page leaves to users).
_IMPLAUSIBLE = re.compile("[\uff61-\uff9f\ue000-\uf8ff]")
# The hidden folders of the archives folder that extractions write: '.<stem>-XXXXXXXX' (mkdtemp's, being extracted
# into) and '.<stem>-<key>.stale-<pid>' (`_remove`'s, being deleted).
_UNFINISHED = re.compile(r"\..+-[a-z0-9_]{8}|\..+\.stale-[0-9]+")
# One of them that no process holds (the extracting one holds a flock on its folder, which the system drops when the
# process ends, even on kill -9) and that was made this long ago was left by a process that a kill -9 stopped. (The
# age covers the instant between mkdtemp and the lock, and disks that cannot lock: there an extraction under way
# for longer than this would lose its folder.)
ABANDONED_SECONDS = 3600


def is_archive(path: str | Path) -> bool:
    """True for an existing file whose name ends in one of ARCHIVE_SUFFIXES."""
    p = Path(path)
    return p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: str | Path) -> str:
    """'pokemon.tar.gz' -> 'pokemon'."""
    name = Path(path).name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "data"
    return Path(name).stem


def extract_archive(path: str | Path, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Extract `path` into the cache (once) and return the folder that holds its images: the archive's
    single top-level folder when it has one, else the extraction folder (named after the archive)."""
    archive = Path(path).expanduser()
    st = archive.stat()
    stem = archive_stem(archive)
    # the path tells apart archives of one name, size and mtime (tars pad to 10 KiB; `cp -p`, `rsync -a` keep mtimes),
    # the change time one put back in place with its old mtime
    key = cache.digest("gankit-archive", archive.resolve(), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    parent = cache.cache_root(cache_dir) / "archives"
    family = f"{_safe(stem)}-{cache.digest('gankit-archive', archive.resolve())[:8]}-"  # its versions' folders
    target = parent / f"{family}{key[:12]}"
    cache.rename_former(parent / f"{_safe(stem)}-{key[:20]}", target)  # (before its name started with `family`)
    _remove_abandoned(parent)
    if not _reusable(archive, target):
        why = cache.unwritable(parent)
        if why is not None:
            raise DataError(f"cannot extract '{archive}': the cache folder '{parent}' is not writable ({why}): "
                            f"{cache.CHOOSE_ANOTHER}, or unpack it yourself and pass the folder")
        members = _checked_members(archive, os.path.realpath(parent / "check"), progress)
        _check_space(archive, parent, sum(size for _, size, _ in members))
        if progress:
            info(f"extracting {count(len(members), 'file')} of '{archive.name}' to {target}")
        names = _disk_names(members, archive.name)
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{_safe(stem)}-", dir=parent))
        try:
            with runlock.hold(tmp, "--data"):  # (made just now: no other process holds it)
                with console.progress(len(members), f"extracting {archive.name}", "files", progress) as bar:
                    _extract(archive, tmp / stem, bar, names)
                _write_manifest(tmp)
                os.rename(tmp, target)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
            raise _damaged(archive, e) from None
        except OSError as e:
            if _missing(target) != 0:  # another process finishing first is fine; anything else is not
                raise DataError(f"could not extract '{archive}' into {parent} ({e.strerror or e}): "
                                "check free space and permissions there, or unpack it yourself") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not runlock.share(target):  # held until this process ends: another's `_remove_older` leaves it
        raise DataError(f"archive '{archive}' was replaced while gankit read it: run the command again")
    _remove_older(parent, family, target)
    return _data_root(target / stem)


def _remove_older(parent: Path, family: str, target: Path) -> None:
    """Delete the extractions of the archive's former versions (`family`) beside `target`, which nothing reads any
    more, each as large as the archive unpacked: replacing an archive left its former extraction for ever, and
    every further replacement another. One that a process reads (`runlock.share`; on Windows, with a file open) is
    left for a later run to remove."""
    for old in parent.glob(f"{family}*"):
        if old != target and old.is_dir():
            with runlock.unused(old) as free:
                if free:
                    _remove(old, quiet=True)


def _remove_abandoned(parent: Path) -> None:
    """Delete the unfinished extractions (`_UNFINISHED`) that kills left in `parent` (`ABANDONED_SECONDS`)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    now, removed = time.time(), []
    for e in entries:
        try:
            old = e.is_dir(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > ABANDONED_SECONDS
        except OSError:
            continue
        if _UNFINISHED.fullmatch(e.name) and old and not runlock.in_use(Path(e.path)):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.name)
    if removed:
        info(f"removed {count(len(removed), 'unfinished extraction')} that stopped processes left in {parent}: "
             f"{short_list(removed)}")


def _reusable(archive: Path, target: Path) -> bool:
    """Whether `target` holds a complete extraction of `archive`. One that lost files since (a tmp cleaner deleted
    some) or that has no manifest (an older gankit's) is removed, to be extracted again."""
    if not target.is_dir():
        return False
    missing = _missing(target)
    if missing == 0:
        return True
    if missing is not None:
        warn(f"{count(missing, 'file')} extracted from '{archive.name}' into {target} {'is' if missing == 1 else 'are'} "
             "missing or changed since; extracting the archive again")
    _remove(target)
    return False


def _write_manifest(folder: Path) -> None:
    """Record the size of every file under `folder` in its manifest, so that a later run can check it is all there."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            files[Path(os.path.relpath(path, folder)).as_posix()] = os.lstat(path).st_size
    (folder / _MANIFEST).write_text(json.dumps({"version": EXTRACT_VERSION, "files": files}), encoding="utf-8")


def _missing(target: Path) -> int | None:
    """How many files in `target`'s manifest are gone or have another size (a stat each); None without a manifest, or
    with an older gankit's (`EXTRACT_VERSION`)."""
    try:
        manifest = json.loads((target / _MANIFEST).read_text(encoding="utf-8"))
        files = manifest.get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(files, dict) or manifest.get("version") != EXTRACT_VERSION:
        return None
    return sum(1 for name, size in files.items() if _size(target / name) != size)


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return -1


def _remove(target: Path, quiet: bool = False) -> None:
    """Move `target` aside (a process that finds it at the same time moves nothing), then delete it. `quiet`: one
    that cannot be moved stays (on Windows, a file in it is open), else that is a DataError."""
    stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
    try:
        os.rename(target, stale)
    except FileNotFoundError:
        return
    except OSError as e:
        if quiet:
            return
        raise DataError(f"could not remove the incomplete extraction {target} ({e.strerror or e}): "
                        "delete that folder yourself, then run the command again") from None
    shutil.rmtree(stale, ignore_errors=True)


def _data_root(root: Path) -> Path:
    entries = [e for e in root.iterdir() if not _hidden(e.name)]  # (a Mac zip's __MACOSX beside the folder)
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return root


def _checked_members(archive: Path, dest: str, progress: bool = False) -> list[tuple[str, int, bool]]:
    """(name, size, whether it is a file) of every member, after checking that each one would stay inside `dest`. A tar is read whole
    for it (decompressed: minutes for gigabytes), with a progress bar over its MiB when `progress`."""
    try:
        if archive.name.lower().endswith(ZIP_SUFFIXES):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                names, undecoded = _zip_names(members)
                if undecoded:
                    warn(f"read {count(len(undecoded), 'file name')} of '{archive.name}' as DOS's cp437 (not UTF-8, "
                         f"Shift-JIS or GBK): {short_list(undecoded)}; if they look wrong, pack it again with "
                         "UTF-8 names (7-Zip does)")
                return [(_check_zip_member(archive, zf, m, name), m.file_size, not m.is_dir())
                        for m, name in zip(members, names)]
        if not hasattr(tarfile, "data_filter"):
            raise DataError(f"this Python ({'.'.join(map(str, sys.version_info[:3]))}) lacks tarfile's safe "
                            f"extraction filter: upgrade Python, or unpack '{archive}' yourself and pass the folder")
        size = archive.stat().st_size
        with open(archive, "rb") as f, console.progress(-(-size >> 20), f"checking {archive.name}", "MiB",
                                                        progress) as bar, tarfile.open(fileobj=_Read(f, bar)) as tf:
            out = []
            for m in tf.getmembers():
                reason = _escape_reason(m.name)  # the data filter would quietly strip a leading '/'
                if reason:
                    raise _unsafe(archive, m.name, reason)
                try:
                    tarfile.data_filter(m, dest)
                except tarfile.FilterError as e:
                    raise _unsafe(archive, m.name, _filter_reason(e)) from None
                out.append((m.name, m.size if m.isfile() else 0, m.isfile()))
            return out
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as e:
        raise _damaged(archive, e) from None


def _check_zip_member(archive: Path, zf: zipfile.ZipFile, m: zipfile.ZipInfo, name: str) -> str:
    """Check member `m`, which extracts as `name` (`_zip_names`), and return that."""
    reason = _escape_reason(name)
    if reason:
        raise _unsafe(archive, m.filename, reason)
    _check_zip_readable(archive, m)
    mode = m.external_attr >> 16
    if stat.S_ISLNK(mode):  # zipfile writes a link as a small file holding its target; still refuse escapes
        target = zf.read(m).decode("utf-8", "replace")
        folder = PurePosixPath(name).parent
        if PurePosixPath(target.replace("\\", "/")).is_absolute() or _leaves(folder, target):
            raise _unsafe(archive, m.filename, f"a link to '{target}', outside the archive")
    return name


def _check_zip_readable(archive: Path, m: zipfile.ZipInfo) -> None:
    """Refuse a member that zipfile cannot read (it would raise RuntimeError or NotImplementedError mid-way)."""
    if m.flag_bits & _ZIP_ENCRYPTED:
        raise DataError(f"archive '{archive}' is password-protected (member '{m.filename}' is encrypted), which "
                        "gankit cannot open: unpack it yourself (e.g. with 7-Zip) and pass the folder")
    patched = m.flag_bits & _ZIP_PATCHED
    if patched or m.compress_type not in _ZIP_METHODS:
        method = "patched-data" if patched else _ZIP_METHOD_NAMES.get(m.compress_type, f"method {m.compress_type}")
        raise DataError(f"archive '{archive}' uses {method} compression (member '{m.filename}'), which Python's "
                        "zipfile cannot read: unpack it yourself (e.g. with 7-Zip) and pass the folder")


def _zip_names(members: list[zipfile.ZipInfo]) -> tuple[list[str], list[str]]:
    """The members' names with '/' separators, and those of them read as cp437. Windows tools (PowerShell's
    Compress-Archive) write 'fire\\abra.png', which zipfile would extract on Linux and macOS as one file named so, not
    as 'abra.png' in a folder 'fire'. A name that its zip does not flag as UTF-8 is read as UTF-8 when it is (macOS's
    Compress and the `zip` command write them so: 'café.png' was extracted as 'caf├⌐.png', which no CSV row names and
    folder labels show), and the others in the first of `_LEGACY_CODECS` that reads them all (Windows' zipper on a
    Japanese system wrote 'ピカチュウ.png' as Shift-JIS, extracted as 'âsâJâ`âàâE.png'), else as zipfile's cp437."""
    names = [m.filename for m in members]
    legacy: dict[int, bytes] = {}
    for i, m in enumerate(members):
        if m.flag_bits & _ZIP_UTF8 or m.orig_filename.isascii():
            continue
        raw = m.orig_filename.encode("cp437")  # the bytes in the zip (zipfile decoded them as cp437)
        try:
            names[i] = raw.decode("utf-8")
        except UnicodeError:
            legacy[i] = raw
    codec = next((c for c in _LEGACY_CODECS if all(_reads(raw, c) for raw in legacy.values())), None)
    if codec:
        names = [legacy[i].decode(codec) if i in legacy else name for i, name in enumerate(names)]
    names = [name.split("\0", 1)[0].replace("\\", "/") for name in names]  # (zipfile ends a name at a NUL too)
    return names, [] if codec else [names[i] for i in legacy]


def _reads(raw: bytes, codec: str) -> bool:
    """Whether `raw` is a name written in `codec`: it decodes, to none of the characters a wrong one gives."""
    try:
        return not _IMPLAUSIBLE.search(raw.decode(codec))
    except UnicodeError:
        return False


def _escape_reason(name: str) -> str:
    """Why a member name would land outside the target folder ('' when it would not)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "a '..' path that leaves the archive"
    return ""


def _leaves(folder: PurePosixPath, link: str) -> bool:
    depth = len(folder.parts)
    for part in PurePosixPath(link.replace("\\", "/")).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _filter_reason(e: tarfile.FilterError) -> str:
    if isinstance(e, tarfile.AbsolutePathError):
        return "an absolute path"
    if isinstance(e, tarfile.OutsideDestinationError):
        return "a '..' path that leaves the archive"
    if isinstance(e, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        return f"a link to '{e.tarinfo.linkname}', outside the archive"
    if isinstance(e, tarfile.SpecialFileError):
        return "a device or other special file"
    return str(e)


def _unsafe(archive: Path, member: str, reason: str) -> DataError:
    return DataError(f"archive '{archive}' is unsafe: member '{member}' is {reason}; nothing was extracted. "
                     "Use an archive from a source you trust, or unpack it yourself and pass the folder")


def _damaged(archive: Path, e: Exception) -> DataError:
    kind = "zip" if archive.name.lower().endswith(ZIP_SUFFIXES) else "tar"
    why = (str(e).strip().splitlines() or [""])[0].rstrip(":")
    return DataError(f"archive '{archive}' is damaged or not a {kind} archive ({type(e).__name__}: {why}): "
                     "download or pack it again")


def _check_space(archive: Path, parent: Path, needed: int) -> None:
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DataError(f"archive '{archive}' unpacks to {needed / 2**30:.1f} GiB but {probe} has only "
                        f"{free / 2**30:.1f} GiB free: free some space, or set GANKIT_CACHE_DIR to a larger disk")


def _extract(archive: Path, dest: Path, bar, names: dict[str, str]) -> None:
    """Extract every member into `dest` under its name in `names` (`_disk_names`), counting them on `bar`."""
    dest.mkdir(parents=True)
    if archive.name.lower().endswith(ZIP_SUFFIXES):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m, name in zip(members, _zip_names(members)[0]):  # as checked (zipfile reads one by its orig_filename)
                m.filename = names[name]
            zf.extractall(dest, _counted(members, bar))
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, _counted(tf, bar), filter=lambda m, to: _tar_filter(m, to, names))


def _on_disk(name: str) -> str:
    """A member's name as extracted here: on Windows, one it can hold (`folder.windows_name`), which the labels CSV's
    matching reads its names as there; elsewhere `name`."""
    return windows_name(name) if sys.platform == "win32" else name


def _disk_names(members: list[tuple[str, int, bool]], archive: str) -> dict[str, str]:
    """Each member's name -> the name it is extracted under here: `_on_disk`'s (those it changes said in one line),
    made unique where two files' would be one file on this system (said in a warning): on Windows 'a:b.png' became
    the 'a_b.png' beside it, and there and on macOS 'Abra.png' and 'abra.png' are one file, so one image silently
    overwrote the other. The later one gets ' (2)' before its extension."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name, _, is_file in members:
        if name in out:  # a tar's later copy of a member, which replaces it
            continue
        disk, n = _on_disk(name), 1
        while is_file and _same_file(disk) in taken:
            n += 1
            path = PurePosixPath(_on_disk(name))
            disk = str(path.with_name(f"{path.stem} ({n}){path.suffix}"))
        if is_file:
            taken.add(_same_file(disk))
        out[name] = disk
    renamed = [(name, disk) for name, disk in out.items() if disk.rstrip("/") != name.rstrip("/")]
    forbidden = [f"'{name}' as '{disk}'" for name, disk in renamed if disk == _on_disk(name)]
    twins = [f"'{name}' as '{disk}'" for name, disk in renamed if disk != _on_disk(name)]
    if forbidden:
        info(f"extracting {count(len(forbidden), 'member')} of '{archive}' under names Windows can hold: "
             f"{short_list(forbidden)} (a labels CSV still finds them by their names in the archive)")
    if twins:
        warn(f"extracting {count(len(twins), 'member')} of '{archive}' under other names, as this system would "
             f"write {'it' if len(twins) == 1 else 'them'} over another file (names alike but for case, or for "
             f"characters Windows replaces): {short_list(twins)}; rename them in the archive for a labels CSV "
             "to find them")
    return out


def _same_file(name: str) -> str:
    """What makes two extracted names one file here: their text, and on Windows and macOS (whose disks ignore case, and
    macOS's accents' composition too) their `_fold`."""
    name = posixpath.normpath(name)
    return _fold(name) if sys.platform in ("win32", "darwin") else name


def _tar_filter(m: tarfile.TarInfo, dest: str, names: dict[str, str]) -> tarfile.TarInfo:
    """tarfile's "data" filter, then the member named as `names` says (`_disk_names`), and a link to another member
    (a hard link) or to a path (a symbolic link) as `_disk_names` or `_on_disk` names that."""
    m = tarfile.data_filter(m, dest)
    links = ({"linkname": names.get(m.linkname, _on_disk(m.linkname))} if m.islnk()
             else {"linkname": _on_disk(m.linkname)} if m.issym() else {})
    return m.replace(name=names.get(m.name, _on_disk(m.name)), **links, deep=False)


def _counted(members, bar):
    """`members`, each counted on `bar` once extracted (when the next one is asked for)."""
    for m in members:
        yield m
        bar.update()


class _Read:
    """A file read through, the MiB read so far counted on a progress bar."""

    def __init__(self, f, bar):
        self._f, self._bar, self._counted = f, bar, 0

    def read(self, *args):
        data = self._f.read(*args)
        mib = self._f.tell() >> 20
        if mib > self._counted:
            self._bar.update(mib - self._counted)
            self._counted = mib
        return data

    def __getattr__(self, name):
        return getattr(self._f, name)
