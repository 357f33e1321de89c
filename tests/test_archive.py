"""Datasets as archives: a good one loads (extracted once), a crafted one is refused before anything is written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import image_bytes, patch_zip, process_ended
from gankit.data import cache, load_dataset
from gankit import runlock
from gankit.data.archive import ABANDONED_SECONDS, archive_stem, extract_archive
from gankit.errors import DataError


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, members: dict[str, bytes] = {}, special: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(("gz", "tgz")) else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return path


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


GOOD = {f"pokemon/{name}.png": image_bytes((i * 40, 30, 30)) for i, name in enumerate(["bulbasaur", "ivysaur", "venusaur"])}
GOOD["pokemon/types.csv"] = b"Name,Type1\nbulbasaur,Grass\nivysaur,Grass\nvenusaur,Poison\n"


def test_a_zip_dataset_loads_with_its_labels_and_is_extracted_once(tmp_path, capsys):
    archive = make_zip(tmp_path / "pokemon.zip", GOOD)
    ds = load_dataset(archive, 16, labels="types.csv", label_column="Type1", cache_dir=tmp_path / "cache")
    assert len(ds) == 3 and ds.name == "pokemon" and ds.class_names == ["Grass", "Poison"]
    assert sorted(ds.files) == ["bulbasaur.png", "ivysaur.png", "venusaur.png"]
    assert "extracting 4 files of 'pokemon.zip'" in capsys.readouterr().err
    again = load_dataset(archive, 16, labels="types.csv", label_column="Type1", cache_dir=tmp_path / "cache")
    assert "extracting" not in capsys.readouterr().err and again.key == ds.key
    assert not (archive.parent / "pokemon").exists()  # nothing is written beside the archive


def test_an_archives_label_file_is_its_own_whatever_the_current_folder_holds(tmp_path, monkeypatch):
    """`--data x.zip --labels types.csv` saves the relative name (it is inside the archive): resumed from a folder
    holding another types.csv, that one was read instead, silently relabelling the images."""
    archive = make_zip(tmp_path / "pokemon.zip", GOOD)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "types.csv").write_text("Name,Type1\nbulbasaur,Poison\nivysaur,Fire\nvenusaur,Grass\n")
    monkeypatch.chdir(tmp_path / "here")
    ds = load_dataset(archive, 16, labels="types.csv", label_column="Type1", cache_dir=tmp_path / "cache",
                      progress=False)
    assert [(f, ds.class_names[i]) for f, i in zip(ds.files, ds.labels)] == [
        ("bulbasaur.png", "Grass"), ("ivysaur.png", "Grass"), ("venusaur.png", "Poison")]


def test_a_zip_with_windows_backslash_names_extracts_into_folders(tmp_path):
    """PowerShell 5.1's Compress-Archive writes 'fire\\charmander.png': it was extracted as one file named so, so
    `--labels folders` found every image loose in the root and CSV labels matched nothing."""
    members = {"pokemon\\fire\\charmander.png": image_bytes(), "pokemon\\fire\\vulpix.png": image_bytes((250, 90, 0)),
               "pokemon\\water\\squirtle.png": image_bytes((0, 0, 255)), "pokemon\\water\\": b""}
    archive = make_zip(tmp_path / "pokemon.zip", members)
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    assert folder.name == "pokemon" and files_under(folder) == {
        "fire", "fire/charmander.png", "fire/vulpix.png", "water", "water/squirtle.png"}
    ds = load_dataset(archive, 16, labels="folders", cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == ["fire", "water"] and [ds.class_names[i] for i in ds.labels] == ["fire", "fire", "water"]


def test_a_zip_with_utf8_names_it_does_not_flag_extracts_them_in_utf8(tmp_path):
    """macOS's Compress and the `zip` command write 'café/ポケモン.png' in UTF-8 without the zip's UTF-8 flag: zipfile
    read them as cp437 and extracted 'caf├⌐/πâ¥πé▒πâóπâ│.png', so folder labels showed that and CSV rows matched
    nothing. A name that is not UTF-8 (an old DOS zip's cp437) is kept as zipfile reads it."""
    members = {"data/café/ポケモン.png": image_bytes(), "data/thé/b.png": image_bytes((0, 0, 255)),
               "data/labels.csv": "file,kind\nポケモン.png,x\nb.png,y\n".encode()}
    archive = patch_zip(make_zip(tmp_path / "mac.zip", members), clear=0x800)
    with zipfile.ZipFile(archive) as zf:
        assert "data/caf├⌐/b.png" not in zf.namelist() and "data/th├⌐/b.png" in zf.namelist()  # (unflagged indeed)
    ds = load_dataset(archive, 16, labels="folders", cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == ["café", "thé"] and ds.files == ["café/ポケモン.png", "thé/b.png"]
    ds = load_dataset(archive, 16, labels="labels.csv", label_column="kind", cache_dir=tmp_path / "cache",
                      progress=False)
    assert ds.class_names == ["x", "y"] and len(ds) == 2
    dos = make_zip(tmp_path / "dos.zip", {"data/cafX.png": image_bytes()})
    dos.write_bytes(dos.read_bytes().replace(b"cafX", b"caf\x82"))  # cp437's é, in both headers, no UTF-8 flag
    assert files_under(extract_archive(dos, cache_dir=tmp_path / "cache", progress=False)) == {"café.png"}



def legacy_zip(path: Path, members: dict[str, bytes], codec: str) -> Path:
    """A zip whose member names are written in `codec`, without the UTF-8 flag, as Windows' own zipper writes them
    on a Japanese (cp932) or Chinese (gbk) system (zipfile itself writes ASCII or flagged UTF-8)."""
    raw = {name: name.encode(codec) for name in members}
    stand_ins = {name: chr(65 + i) * len(b) for i, (name, b) in enumerate(raw.items())}  # ASCII, as long
    make_zip(path, {stand_ins[name]: data for name, data in members.items()})
    data = path.read_bytes()
    for name, stand_in in stand_ins.items():
        assert data.count(stand_in.encode()) == 2  # its local header and its central directory entry
        data = data.replace(stand_in.encode(), raw[name])
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("codec", ["cp932", "gbk"])
def test_a_zip_with_shift_jis_or_gbk_names_extracts_them_so_and_a_utf8_csv_labels_them(tmp_path, capsys, codec):
    """Windows' zipper on a Japanese or Chinese system writes names in Shift-JIS or GBK, unflagged: zipfile read them
    as cp437, so 'ピカチュウ.png' was extracted as 'âsâJâ`âàâE.png' and a labels CSV naming the real names matched
    nothing (an error); 'ソ' (0x83 0x5C in Shift-JIS) even split a name into folders at its '\\'."""
    names = {"cp932": ["ピカチュウ.png", "ソニック/ゼニガメ.png"], "gbk": ["皮卡丘.png", "杰尼龟/小火龙.png"]}[codec]
    csv = "file,kind\n" + "".join(f"{n.split('/')[-1]},k{i}\n" for i, n in enumerate(names))
    archive = legacy_zip(tmp_path / "set.zip", {f"set/{names[0]}": image_bytes(), f"set/{names[1]}": image_bytes(
        (0, 0, 255)), "set/labels.csv": csv.encode()}, codec)
    ds = load_dataset(archive, 16, labels="labels.csv", label_column="kind", cache_dir=tmp_path / "cache",
                      progress=False)
    assert ds.files == sorted(names) and sorted(ds.class_names[i] for i in ds.labels) == ["k0", "k1"]
    assert "warning" not in capsys.readouterr().err


def test_zip_names_in_no_known_code_page_are_read_as_cp437_and_said_in_one_line(tmp_path, capsys):
    """Names that are not UTF-8, Shift-JIS or GBK (an old DOS zip's) are kept as zipfile reads them, and said."""
    archive = legacy_zip(tmp_path / "dos.zip", {"data/café.png": image_bytes(), "data/b.png": image_bytes()}, "cp437")
    assert files_under(extract_archive(archive, cache_dir=tmp_path / "cache")) == {"café.png", "b.png"}
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning == ["warning: read 1 file name of 'dos.zip' as DOS's cp437 (not UTF-8, Shift-JIS or GBK): "
                       "data/café.png; if they look wrong, pack it again with UTF-8 names (7-Zip does)"]


def test_an_extraction_by_an_older_gankit_is_extracted_again(tmp_path, capsys):
    """An older gankit extracted a Shift-JIS zip under garbled names, and its manifest matched them: the fixed naming
    never reached that archive (same path, size and mtime), whose labels kept matching nothing."""
    archive = legacy_zip(tmp_path / "set.zip", {"set/ピカチュウ.png": image_bytes(), "set/b.png": image_bytes()},
                         "cp932")
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    (folder / "ピカチュウ.png").rename(folder / "âsâJâ`âàâE.png")  # as the older gankit named it
    manifest = folder.parent.parent / ".gankit-files.json"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace('"version": 2, ', "").replace(
        "ピカチュウ", "âsâJâ`âàâE").replace("\\u30d4\\u30ab\\u30c1\\u30e5\\u30a6", "âsâJâ`âàâE"), encoding="utf-8")
    assert extract_archive(archive, cache_dir=tmp_path / "cache", progress=False) == folder
    assert files_under(folder) == {"ピカチュウ.png", "b.png"}


WINDOWS_UNFIT = {"pokemon/Type: Null.png": image_bytes(), "pokemon/CON.png": image_bytes((0, 0, 255)),
                 "pokemon/why?.png.": image_bytes((0, 250, 0)), "pokemon/lpt1.x.png": image_bytes((9, 9, 9)),
                 "pokemon/types.csv": b"Name,Type1\nType: Null.png,Normal\nCON,Fire\nwhy?.png.,Grass\nlpt1.x.png,Bug\n"}


@pytest.mark.parametrize("platform", ["win32", "linux"])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_member_names_windows_cannot_hold_are_renamed_there_and_the_labels_csv_still_finds_them(
        tmp_path, monkeypatch, platform, kind):
    """A tar made on Linux holding 'Type: Null.png' was extracted on NTFS into an alternate data stream of 'Type'
    ('CON.png' into the console, 'why?.png.' not at all): the images silently went missing. On Windows such names
    are made ones it can hold (as zipfile does for ':' and trailing dots, and now reserved names too), and the labels
    CSV, naming them as in the archive, still labels them. Elsewhere names are kept."""
    from gankit.data import archive as archive_module

    monkeypatch.setattr(archive_module.sys, "platform", platform)
    archive = (make_tar if kind == "tar" else make_zip)(tmp_path / f"pokemon.{kind}", WINDOWS_UNFIT)
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    renamed = {"Type_ Null.png", "CON_.png", "why_.png", "lpt1_.x.png", "types.csv"}
    assert files_under(folder) == (renamed if platform == "win32" else {n.split("/")[1] for n in WINDOWS_UNFIT})
    ds = load_dataset(archive, 16, labels="types.csv", label_column="Type1", cache_dir=tmp_path / "cache",
                      progress=False)
    assert len(ds) == 4 and sorted(ds.class_names[i] for i in ds.labels) == ["Bug", "Fire", "Grass", "Normal"]


@pytest.mark.parametrize("platform", ["win32", "darwin", "linux"])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_members_that_would_be_one_file_here_are_all_extracted_and_renames_are_said(
        tmp_path, monkeypatch, capsys, platform, kind):
    """On Windows 'a:b.png' was renamed 'a_b.png', silently, and written over the 'a_b.png' beside it; there and on
    macOS (disks that ignore case) 'abra.png' was written over 'Abra.png': 5 images extracted as 3, without a word.
    Now the later one gets ' (2)', in a warning, and Windows' renames are said in one line."""
    from gankit.data import archive as archive_module

    monkeypatch.setattr(archive_module.sys, "platform", platform)
    members = {f"set/{n}": image_bytes((i * 50, 0, 0)) for i, n in enumerate(
        ["a:b.png", "a_b.png", "Abra.png", "abra.png", "c.png"])}
    archive = (make_tar if kind == "tar" else make_zip)(tmp_path / f"set.{kind}", members)
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    err = capsys.readouterr().err
    expected = {"win32": {"a_b.png", "a_b (2).png", "Abra.png", "abra (2).png", "c.png"},
                "darwin": {"a:b.png", "a_b.png", "Abra.png", "abra (2).png", "c.png"}}
    assert files_under(folder) == expected.get(platform, {n.split("/")[1] for n in members})
    if platform == "win32":
        assert f"extracting 1 member of 'set.{kind}' under names Windows can hold: 'set/a:b.png' as 'set/a_b.png'" in err
    twins = {"win32": "2 members", "darwin": "1 member"}.get(platform)
    assert (f"warning: extracting {twins} of 'set.{kind}' under other names" in err) if twins else not err
    assert len(load_dataset(archive, 16, cache_dir=tmp_path / "cache", progress=False)) == 5


def test_an_extraction_that_lost_files_is_extracted_again(tmp_path, capsys):
    """A tmp cleaner deleted part of the cached extraction: the unchanged 12-image zip then gave 4 images, silently."""
    archive = make_zip(tmp_path / "set.zip", {f"set/{i:02d}.png": image_bytes((i * 20, 0, 0)) for i in range(12)})
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    for png in sorted(folder.glob("*.png"))[4:]:
        png.unlink()
    ds = load_dataset(archive, 16, cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 12 and len(list(folder.glob("*.png"))) == 12
    assert "warning: 8 files extracted from 'set.zip'" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "cache" / "archives").iterdir()] == [folder.parent.parent.name]


def test_an_extraction_without_a_manifest_is_extracted_again(tmp_path, capsys):
    """An extraction without a manifest (an older gankit's) cannot be checked, so it is not trusted."""
    archive = make_zip(tmp_path / "set.zip", {f"set/{i:02d}.png": image_bytes() for i in range(3)})
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    (folder.parent.parent / ".gankit-files.json").unlink(missing_ok=True)
    (folder / "00.png").unlink()
    assert extract_archive(archive, cache_dir=tmp_path / "cache") == folder and len(list(folder.glob("*.png"))) == 3
    assert "extracting 3 files of 'set.zip'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["set.tar.gz", "set.zip"])
def test_a_large_archive_counts_its_check_and_its_extraction_as_they_go(tmp_path, monkeypatch, capsys, name):
    """A .tar.gz of 20,000 images (270 MB) was read whole to be checked, then extracted, in 11 s with one line and
    no progress (gigabytes: minutes): a tar's check counts the MiB read, extraction the files, as decoding does (off a
    terminal, a line at most every LINE_EVERY seconds)."""
    from gankit import console

    monkeypatch.setattr(console, "LINE_EVERY", 0.0)
    members = {f"set/{i}.bin": os.urandom(1 << 20) for i in range(4)}
    archive = (make_tar if name.endswith("gz") else make_zip)(tmp_path / name, members)
    extract_archive(archive, cache_dir=tmp_path / "cache")
    err = capsys.readouterr().err
    assert f"extracting {name}: 1/4 files (25%)" in err and f"extracting {name}: 3/4 files (75%)" in err
    assert (f"checking {name}: 2/5 MiB (40%)" in err) == name.endswith("gz")  # 4 MiB + headers; a zip: its list


def test_extractions_that_a_kill_cut_short_are_removed_by_a_later_one(tmp_path, capsys):
    """kill -9 during an extraction left its hidden temporary folder in the cache for good (Ctrl-C removes it): a
    later extraction removes those that no process holds and that were made an hour ago or more."""
    archive = make_zip(tmp_path / "set.zip", {f"set/{i:02d}.png": image_bytes() for i in range(3)})
    folder = extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    parent = tmp_path / "cache" / "archives"
    names = [".set-k9x2mm_q", ".set-abcd1234", ".set-zz11yy22", f".{folder.parent.parent.name}.stale-123", ".mine"]
    for name in names:
        (parent / name / "set").mkdir(parents=True)
        (parent / name / "set" / "00.png").write_bytes(image_bytes())
        if name != names[0]:  # the first was made just now
            old = time.time() - ABANDONED_SECONDS - 60
            os.utime(parent / name, (old, old))
    with runlock.hold(parent / names[2], "--data"):  # being extracted into by a process still running
        assert extract_archive(archive, cache_dir=tmp_path / "cache", progress=False) == folder
    assert sorted(p.name for p in parent.iterdir()) == sorted([folder.parent.parent.name, names[0], names[2], ".mine"])
    assert (f"removed 2 unfinished extractions that stopped processes left in {parent}"
            in capsys.readouterr().err)


def test_archives_of_one_name_size_and_mtime_in_two_folders_are_two_datasets(tmp_path):
    """tA/train.tar and tB/train.tar (tars pad to 10 KiB; `cp -p` keeps the mtime) shared one extraction: FID 0 for
    red against blue images, and training on tB trained on tA's images."""
    tars = []
    for folder, color in (("tA", (255, 0, 0)), ("tB", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        tars.append(make_tar(tmp_path / folder / "train.tar", {f"{i}.png": image_bytes(color) for i in range(3)}))
        os.utime(tars[-1], ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    assert tars[0].stat().st_size == tars[1].stat().st_size
    red, blue = (load_dataset(t, 16, cache_dir=tmp_path / "cache", progress=False) for t in tars)
    assert red.images[:, 0].float().mean() > 200 and blue.images[:, 2].float().mean() > 200


@pytest.mark.parametrize("name", ["flat.tar", "flat.tar.gz", "flat.tgz"])
def test_a_tar_without_a_top_folder_is_named_after_the_archive(tmp_path, name):
    archive = make_tar(tmp_path / name, {"a.png": image_bytes(), "sub/b.png": image_bytes((0, 0, 255))})
    ds = load_dataset(archive, 16, cache_dir=tmp_path / "cache", progress=False)
    assert ds.name == "flat" and sorted(ds.files) == ["a.png", "sub/b.png"]


def test_archive_stem():
    assert [archive_stem(n) for n in ("a.tar.gz", "b.TGZ", "c.zip", "d.tar.xz")] == ["a", "b", "c", "d"]


UNSAFE = [
    ("zip-absolute", lambda p: make_zip(p / "x.zip", {"/tmp/gankit-evil.png": b"x"}), "'/tmp/gankit-evil.png' is an absolute path"),
    ("zip-dotdot", lambda p: make_zip(p / "x.zip", {"ok.png": image_bytes(), "a/../../evil.png": b"x"}), "'a/../../evil.png' is a '..' path"),
    ("zip-backslash-dotdot", lambda p: make_zip(p / "x.zip", {"..\\evil.png": b"x"}), "'..\\evil.png' is a '..' path"),
    ("zip-backslash-absolute", lambda p: make_zip(p / "x.zip", {"\\tmp\\gankit-evil.png": b"x"}),
     "'\\tmp\\gankit-evil.png' is an absolute path"),
    ("zip-backslash-nested-dotdot", lambda p: make_zip(p / "x.zip", {"a\\..\\..\\evil.png": b"x"}), "is a '..' path"),
    ("zip-backslash-symlink-up", lambda p: make_zip(p / "x.zip", {}, links={"a\\up": "..\\..\\x"}), "is a link to"),
    ("zip-symlink-to-etc", lambda p: make_zip(p / "x.zip", {}, links={"etc": "/etc"}), "'etc' is a link to '/etc'"),
    ("zip-symlink-up", lambda p: make_zip(p / "x.zip", {}, links={"a/up": "../../x"}), "'a/up' is a link to '../../x'"),
    ("tar-absolute", lambda p: make_tar(p / "x.tar", {"/tmp/gankit-evil.png": b"x"}), "is an absolute path"),
    ("tar-dotdot", lambda p: make_tar(p / "x.tar.gz", {"ok.png": image_bytes(), "../evil.png": b"x"}), "'../evil.png' is a '..' path"),
    ("tar-symlink-to-etc", lambda p: make_tar(p / "x.tar", special=[link("etc", "/etc")]), "'etc' is a link to '/etc'"),
    ("tar-symlink-up", lambda p: make_tar(p / "x.tgz", special=[link("a/up", "../../outside")]), "'a/up' is a link to '../../outside'"),
    ("tar-hardlink-out", lambda p: make_tar(p / "x.tar", special=[link("pw", "/etc/passwd", tarfile.LNKTYPE)]),
     "'pw' is a link to '/etc/passwd'"),
    ("tar-hardlink-up", lambda p: make_tar(p / "x.tar", special=[link("pw", "../../etc/passwd", tarfile.LNKTYPE)]),
     "'pw' is a link to '../../etc/passwd'"),
    ("tar-device", lambda p: make_tar(p / "x.tar", special=[link("null", "", tarfile.CHRTYPE)]), "'null' is a device"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in UNSAFE], ids=[c[0] for c in UNSAFE])
def test_a_crafted_archive_is_refused_before_anything_is_written(tmp_path, make, message):
    archive = make(tmp_path)
    before = files_under(tmp_path)
    with pytest.raises(DataError) as info:
        extract_archive(archive, cache_dir=tmp_path / "cache", progress=False)
    text = str(info.value)
    assert message in text and str(archive) in text and "nothing was extracted" in text and "\n" not in text
    assert files_under(tmp_path) - before <= {"cache", "cache/archives"}  # no member, no temporary folder
    assert not Path("/tmp/gankit-evil.png").exists()


@pytest.mark.parametrize("name, data", [
    ("bad.zip", b"PK\x03\x04 not really a zip"),
    ("bad.tar.gz", None),  # a real tar.gz cut in half
    ("bad.tar", os.urandom(3000)),
])
def test_a_damaged_archive_is_one_clear_error(tmp_path, name, data):
    path = tmp_path / name
    if data is None:
        make_tar(path, {f"{i}.png": os.urandom(20000) for i in range(3)})
        data = path.read_bytes()[:15000]
    path.write_bytes(data)
    with pytest.raises(DataError, match="is damaged or not a .* archive .*download or pack it again"):
        load_dataset(path, 16, cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").rglob("*.png"))


@pytest.mark.parametrize("patch, reason", [
    (dict(flags=0x1), "is password-protected (member 'pokemon/bulbasaur.png' is encrypted)"),
    (dict(method=9), "uses Deflate64 compression (member 'pokemon/bulbasaur.png')"),
], ids=["encrypted", "deflate64"])
def test_a_zip_that_zipfile_cannot_read_is_one_clear_error(tmp_path, patch, reason):
    """They ended in 'internal error (RuntimeError: File ... is encrypted, password required for extraction)' and
    '(NotImplementedError: That compression method is not supported)'."""
    archive = patch_zip(make_zip(tmp_path / "pokemon.zip", GOOD), **patch)
    with pytest.raises(DataError) as info:
        load_dataset(archive, 16, cache_dir=tmp_path / "cache", progress=False)
    text = str(info.value)
    assert f"archive '{archive}' {reason}" in text and "unpack it yourself (e.g. with 7-Zip)" in text
    assert "\n" not in text and not list((tmp_path / "cache").rglob("*.png"))


def _stored_zip(path: Path, color, mtime_ns: int) -> None:
    """One BMP, stored, with a fixed date inside: the same byte size for any colour."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("set/a.bmp", date_time=(2020, 1, 1, 0, 0, 0)), image_bytes(color, (16, 16), "BMP"))
    os.utime(path, ns=(mtime_ns,) * 2)


def test_an_archive_replaced_by_one_of_the_same_size_is_extracted_again(tmp_path):
    z = tmp_path / "set.zip"
    _stored_zip(z, (255, 0, 0), 1_700_000_000 * 10**9)
    size = z.stat().st_size
    red = load_dataset(z, 16, cache_dir=tmp_path / "c", progress=False)
    _stored_zip(z, (0, 0, 255), 1_700_000_100 * 10**9)
    assert z.stat().st_size == size
    blue = load_dataset(z, 16, cache_dir=tmp_path / "c", progress=False)
    assert red.images[0, 0].float().mean() > 200 and blue.images[0, 2].float().mean() > 200


def test_an_archive_replaced_with_its_old_date_kept_is_extracted_again(tmp_path):
    """`cp -p` over an archive of one size and mtime (tars pad to 10 KiB) reused the old extraction."""
    z = tmp_path / "set.zip"
    _stored_zip(z, (255, 0, 0), 1_700_000_000 * 10**9)
    red = load_dataset(z, 16, cache_dir=tmp_path / "c", progress=False)
    _stored_zip(z, (0, 0, 255), 1_700_000_000 * 10**9)
    blue = load_dataset(z, 16, cache_dir=tmp_path / "c", progress=False)
    assert red.images[0, 0].float().mean() > 200 and blue.images[0, 2].float().mean() > 200


def test_a_replaced_archive_leaves_no_former_extraction_nor_cache_behind(tmp_path):
    """Each replacement of an archive (a new size or date) left its former extraction in the cache for ever, and the
    dataset cache of that folder: the next one removes them, but not one that a process still reads, nor another
    archive's."""
    z, cache = tmp_path / "set.zip", tmp_path / "c"
    other = make_zip(tmp_path / "other.zip", {"o/a.png": image_bytes()})
    load_dataset(other, 16, cache_dir=cache, progress=False)
    for i in range(3):
        _stored_zip(z, (255, 0, 8 * i), (1_700_000_000 + i) * 10**9)
        process_ended()
        load_dataset(z, 16, cache_dir=cache, progress=False)
    assert len(list((cache / "archives").glob("set-*"))) == 1 and len(list((cache / "archives").glob("other-*"))) == 1
    assert len(list(cache.glob("set-16px-*.pt"))) == 1 and len(list(cache.glob("o-16px-*.pt"))) == 1
    _stored_zip(z, (0, 0, 255), 1_700_000_100 * 10**9)
    load_dataset(z, 16, cache_dir=cache, progress=False)  # the former one is this process's, still read
    assert len(list((cache / "archives").glob("set-*"))) == 2
    process_ended()
    blue = load_dataset(z, 16, cache_dir=cache, progress=False)
    assert len(list((cache / "archives").glob("set-*"))) == 1 and blue.images[0, 2].float().mean() > 200


def test_an_extraction_named_as_before_is_renamed_not_extracted_again(tmp_path, monkeypatch):
    from gankit.data import archive as archive_module

    archive = make_zip(tmp_path / "set.zip", {"set/a.png": image_bytes()})
    folder = extract_archive(archive, cache_dir=tmp_path / "c", progress=False)
    st, extraction = archive.stat(), folder.parent.parent
    key = cache.digest("gankit-archive", archive.resolve(), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    process_ended()
    extraction.rename(extraction.with_name(f"set-{key[:20]}"))  # an older gankit's name
    monkeypatch.setattr(archive_module, "_extract", None)  # not extracted again
    assert extract_archive(archive, cache_dir=tmp_path / "c", progress=False) == folder
    assert [p.name for p in extraction.parent.iterdir()] == [extraction.name]


def test_an_extracted_file_whose_size_changed_is_extracted_again(tmp_path, capsys):
    """Not only a missing file: one edited in the extraction folder (another size) brings the archive's back."""
    z = tmp_path / "set.zip"
    _stored_zip(z, (255, 0, 0), 1_700_000_000 * 10**9)
    folder = extract_archive(z, cache_dir=tmp_path / "c", progress=False)
    (folder / "a.bmp").write_bytes(image_bytes((0, 0, 255), (20, 20), "BMP"))
    capsys.readouterr()
    images = load_dataset(z, 16, cache_dir=tmp_path / "c", progress=False).images
    assert images[0, 0].float().mean() > 200
    assert "missing or changed since" in capsys.readouterr().err


@pytest.mark.parametrize("name, members, said", [
    ("noimg.zip", {"noimg/notes.txt": b"x"}, "archive '{}' holds no image files (1 other file, e.g. 'notes.txt')"),
    ("empty.tar", {}, "archive '{}' holds no image files: pack"),
    ("broken.zip", {"broken/a.png": b"\x89PNG not one", "broken/b.png": b""},
     "none of the 2 image files in archive '{}' could be decoded"),
    ("tiny.tar", {"tiny/a.png": image_bytes(size=(2, 2))}, "the only image in archive '{}' is smaller than 8 px"),
])
def test_an_archive_without_usable_images_is_named_not_its_cache_folder(tmp_path, monkeypatch, name, members, said):
    """`gankit fid noimg.zip real/` (and `train --data broken.zip`, where the images cannot be decoded) said "data
    folder '~/.cache/gankit/datasets/archives/noimg-.../noimg' holds no image files": the archive the user gave is
    named, and the cache folder it was extracted to is not."""
    import gankit.metrics
    from conftest import make_image_folder

    path = (make_zip if name.endswith(".zip") else make_tar)(tmp_path / name, members)
    make_image_folder(tmp_path / "real", n=3)
    monkeypatch.setattr(gankit.metrics, "load_inception", lambda *a, **k: pytest.fail("Inception loaded"))
    for load in (lambda: gankit.metrics.fid_folders(path, tmp_path / "real", progress=False),
                 lambda: gankit.metrics.fid_folders(tmp_path / "real", path, progress=False),
                 lambda: load_dataset(path, 16, progress=False)):
        with pytest.raises(DataError) as e:
            load()
        assert said.format(path) in str(e.value) and os.environ["GANKIT_CACHE_DIR"] not in str(e.value)
        assert "\n" not in str(e.value)


def test_an_archive_with_a_cache_that_cannot_be_written_names_the_setting_that_moves_it(tmp_path, monkeypatch):
    """A HOME that cannot be written (a cluster account, a read-only container HOME) failed extraction with
    "'FILE' is a file where a folder is needed: move or delete it, or choose another path": which path, not said."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.delenv("GANKIT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "a-file" / "home"))
    archive = make_zip(tmp_path / "pokemon.zip", GOOD)
    with pytest.raises(DataError) as info:
        load_dataset(archive, 16, progress=False)
    parent = tmp_path / "a-file" / "home" / ".cache" / "gankit" / "datasets" / "archives"
    assert str(info.value) == (f"cannot extract '{archive}': the cache folder '{parent}' is not writable "
                               f"('{tmp_path / 'a-file'}' is a file where a folder is needed): set GANKIT_CACHE_DIR "
                               "(or data.cache_dir) to a writable folder, or unpack it yourself and pass the folder")
