"""Tests of gankit.data: image folders, labels, the decode cache and the built-in MNIST.

Every image is generated here with Pillow/numpy in a temporary folder; caches go to temporary
folders too, never to the user's home.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FillsUp, image_bytes
import gankit.data.folder as folder
from gankit.data import ImageSet, load_builtin, load_dataset, load_folder
from gankit.errors import ConfigError, DataError

RES = 16
POKEMON = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "pokemon"


# ----------------------------------------------------------------------------- helpers


def save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def solid(color, size=(24, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noisy_png_bytes(seed=0, size=64) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but holds no pixels: what a decompression bomb looks like to open()."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def pixel(ds: ImageSet, name: str, y=None, x=None) -> tuple[int, ...]:
    """RGB of image `name` at (y, x), default the center."""
    i = ds.files.index(name)
    y = RES // 2 if y is None else y
    x = RES // 2 if x is None else x
    return tuple(int(v) for v in ds.images[i, :, y, x])


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


# ----------------------------------------------------------------------------- a folder of every kind

GOOD = {
    "rgb.png", "photo.jpg", "pic.webp", "pic.bmp", "anim.gif", "rgba.png", "la.png", "pal.png",
    "pal_trans.png", "gray.png", "gray16.png", "cmyk.jpg", "bilevel.png", "wide.png",
    "sub/deep/nested.PNG", "link.png", "big_wide.jpg", "rotated.png",
}
BAD = {
    "corrupt.png": "not an image",
    "truncated.png": "truncated",
    "empty.jpg": "empty file",
    "bomb.png": "too large, 900 MP",
    "broken.png": "missing or broken link",
}


def make_zoo(root: Path) -> None:
    save(root / "rgb.png", solid((200, 10, 10), (40, 30)))
    save(root / "photo.jpg", solid((10, 200, 10)), quality=95)
    save(root / "pic.webp", solid((10, 10, 200)), lossless=True)
    save(root / "pic.bmp", solid((50, 60, 70)))
    frames = [solid((255, 0, 0)).convert("P"), solid((0, 0, 255)).convert("P")]
    save(root / "anim.gif", frames[0], save_all=True, append_images=frames[1:])

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, 16:] = (255, 0, 0, 255)  # right half opaque red, left half fully transparent black
    save(root / "rgba.png", Image.fromarray(rgba, "RGBA"))
    save(root / "la.png", solid((100, 128), mode="LA"))  # gray, half transparent

    pal = Image.new("P", (24, 24), 0)
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)  # 0: blue, 1: green
    save(root / "pal.png", pal)
    pal_t = Image.new("P", (24, 24), 1)
    pal_t.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal_t.putpixel((0, 0), 0)  # one opaque corner pixel (an image that shows nothing is skipped)
    save(root / "pal_trans.png", pal_t, transparency=1)  # the others use the transparent index

    save(root / "gray.png", solid(77, mode="L"))
    save(root / "gray16.png", Image.fromarray(np.full((24, 24), 32768, np.uint16)))
    save(root / "cmyk.jpg", solid((0, 255, 255, 0), mode="CMYK"), quality=95)
    save(root / "bilevel.png", solid(1, mode="1"))
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (0, 0, 255)
    wide[:, 20:40] = (0, 255, 0)
    wide[:, 40:] = (255, 0, 0)
    save(root / "wide.png", Image.fromarray(wide))  # center crop keeps only the green third
    big = np.zeros((600, 1200, 3), np.uint8)  # big enough for JPEG draft decoding
    big[:, :400] = (0, 0, 255)
    big[:, 400:800] = (0, 255, 0)
    big[:, 800:] = (255, 0, 0)
    save(root / "big_wide.jpg", Image.fromarray(big), quality=95)
    halves = np.zeros((20, 40, 3), np.uint8)
    halves[:10] = (255, 0, 0)  # stored: red top, blue bottom
    halves[10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save(root / "rotated.png", Image.fromarray(halves), exif=exif)  # displayed: blue left, red right
    save(root / "sub" / "deep" / "nested.PNG", solid((9, 9, 9)))
    os.symlink(root / "rgb.png", root / "link.png")

    (root / "corrupt.png").write_bytes(b"this is not a png at all" * 10)
    full = noisy_png_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "bomb.png").write_bytes(png_header_only(30000, 30000))
    os.symlink(root / "does-not-exist.png", root / "broken.png")

    (root / "notes.txt").write_text("not an image")
    save(root / ".hidden.png", solid((0, 0, 0)))
    save(root / ".git" / "x.png", solid((0, 0, 0)))
    save(root / "__MACOSX" / "._rgb.png", solid((0, 0, 0)))
    os.symlink(root, root / "loop")  # a symlink loop must never hang the walk


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    make_zoo(root)
    cache_dir = tmp_path_factory.mktemp("zoo-cache")
    ds = load_folder(root, RES, cache_dir=cache_dir, progress=False)
    return root, cache_dir, ds


def test_good_images_are_loaded_and_bad_ones_named_in_one_warning(zoo, capsys):
    root, cache_dir, first = zoo
    ds = load_folder(root, RES, cache_dir=cache_dir, progress=False)  # from the cache: warns again
    assert set(ds.files) == GOOD
    assert ds.images.dtype == torch.uint8
    assert tuple(ds.images.shape) == (len(GOOD), 3, RES, RES)
    assert ds.labels is None and ds.class_names == []
    assert ds.name == root.name
    assert dict(ds.skipped) == BAD
    assert torch.equal(ds.images, first.images) and ds.files == first.files and ds.key == first.key

    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"skipped {len(BAD)} of {len(GOOD) + len(BAD)} image files" in line
    for name, reason in BAD.items():
        assert f"{name} ({reason})" in line
    assert "1 non-image file ignored" in line  # notes.txt


@pytest.mark.parametrize("name, expected", [
    ("rgb.png", (200, 10, 10)),
    ("pic.webp", (10, 10, 200)),
    ("pic.bmp", (50, 60, 70)),
    ("anim.gif", (255, 0, 0)),          # first frame, not the blue second one
    ("la.png", (177, 177, 177)),        # half transparent on white: (100 * 128 + 255 * 127) / 255
    ("pal.png", (0, 0, 255)),
    ("pal_trans.png", (255, 255, 255)),  # transparent palette index -> white
    ("gray.png", (77, 77, 77)),
    ("gray16.png", (128, 128, 128)),    # 32768 of 65535, not clipped to white
    ("bilevel.png", (255, 255, 255)),
    ("wide.png", (0, 255, 0)),          # center crop of a wide image
    ("link.png", (200, 10, 10)),        # symlinked file
    ("sub/deep/nested.PNG", (9, 9, 9)),
])
def test_colors_survive_conversion(zoo, name, expected):
    got = pixel(zoo[2], name)
    assert all(abs(g - e) <= 1 for g, e in zip(got, expected)), (name, got, expected)


def test_transparency_becomes_white_and_lossy_formats_keep_their_color(zoo):
    ds = zoo[2]
    assert pixel(ds, "rgba.png", x=0) == (255, 255, 255)   # transparent left edge
    assert pixel(ds, "rgba.png", x=RES - 1) == (255, 0, 0)  # opaque right edge
    i = ds.files.index("rgba.png")
    assert (ds.images[i, :, :, : RES // 4] == 255).all()  # the whole transparent side, not just a corner
    r, g, b = pixel(ds, "cmyk.jpg")
    assert r > 220 and g < 40 and b < 40  # CMYK (0, 255, 255, 0) is red
    r, g, b = pixel(ds, "big_wide.jpg")
    assert r < 20 and g > 235 and b < 20  # center crop of a wide photo keeps its middle third
    assert pixel(ds, "rotated.png", x=1) == (0, 0, 255)  # EXIF orientation is applied
    assert pixel(ds, "rotated.png", x=RES - 2) == (255, 0, 0)
    r, g, b = pixel(ds, "photo.jpg")
    assert abs(r - 10) < 8 and abs(g - 200) < 8 and abs(b - 10) < 8


def test_images_under_eight_pixels_are_skipped(tmp_path, capsys):
    save(tmp_path / "data" / "ok.png", solid((1, 2, 3), (8, 30)))
    save(tmp_path / "data" / "tiny.png", solid((1, 2, 3), (1, 1)))
    save(tmp_path / "data" / "thin.png", solid((1, 2, 3), (30, 7)))
    ds = load_folder(tmp_path / "data", RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["ok.png"]
    assert dict(ds.skipped) == {"tiny.png": "too small, 1x1", "thin.png": "too small, 30x7"}
    assert len(warning_lines(capsys.readouterr().err)) == 1


def test_a_folder_of_only_too_small_images_says_how_large_they_must_be(tmp_path):
    """Ten valid 6x6 images were "none ... could be decoded: check or re-export them"; they are fine, only small."""
    for i in range(10):
        save(tmp_path / "data" / f"t{i}.png", solid((1, 2, 3), (6, 6)))
    with pytest.raises(DataError) as info:
        load_folder(tmp_path / "data", RES, cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert "all 10 images" in message and "smaller than 8 px" in message and "at least 8 px" in message
    assert "upscale" in message and "t0.png, t1.png" in message and "(all: too small, 6x6)" in message
    assert "could be decoded" not in message and "re-export" not in message


def test_jpe_apng_and_images_without_an_extension_are_read(tmp_path, capsys):
    """.jpe JPEGs, .apng files and hash-named downloads without an extension beside .png images were left out without a
    word (a folder of them alone: 'holds no image files'); text files without an extension stay ignored."""
    data = tmp_path / "data"
    save(data / "p.png", solid((10, 20, 30)))
    save(data / "a.jpe", solid((0, 0, 200)), format="JPEG", quality=95)
    save(data / "b.apng", solid((200, 0, 0)), format="PNG")
    save(data / "3f9a0c", solid((0, 200, 0)), format="PNG")
    save(data / "d41d8c", solid((0, 0, 200)), format="JPEG", quality=95)
    (data / "LICENSE").write_text("not an image")
    (data / "empty").write_bytes(b"")
    (data / "notes").mkdir()
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["3f9a0c", "a.jpe", "b.apng", "d41d8c", "p.png"]
    assert pixel(ds, "3f9a0c") == (0, 200, 0) and pixel(ds, "b.apng") == (200, 0, 0)
    assert pixel(ds, "a.jpe")[2] > 190 and pixel(ds, "d41d8c")[2] > 190
    assert not warning_lines(capsys.readouterr().err)
    assert [p.name for p in sorted(folder.image_files(data))] == ds.files  # `gankit fid` reads the same files


def test_tiff_and_jfif_are_read_and_formats_gankit_cannot_read_are_named(tmp_path, capsys):
    """8 .tif among 12 .png were dropped without a word ("12 images"); TIFF and JFIF are now read like the others, and
    image files gankit cannot read (HEIC, PSD, raw, nested archives) are named in one warning line."""
    data = tmp_path / "data"
    for i in range(3):
        save(data / f"p{i}.png", solid((10, 20, 30)))
    save(data / "a.tif", solid((200, 0, 0)))
    save(data / "sub" / "b.TIFF", solid((0, 200, 0)), compression="tiff_lzw")
    save(data / "c.jfif", solid((0, 0, 200)), format="JPEG", quality=95)
    for name in ("x.heic", "y.heic", "z.HEIC", "art.psd", "raw.cr2", "more.zip"):
        (data / name).write_bytes(b"not read")
    (data / "notes.txt").write_text("x")
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a.tif", "c.jfif", "p0.png", "p1.png", "p2.png", "sub/b.TIFF"]
    assert pixel(ds, "a.tif") == (200, 0, 0) and pixel(ds, "sub/b.TIFF") == (0, 200, 0)
    r, g, b = pixel(ds, "c.jfif")
    assert r < 10 and g < 10 and b > 190
    (line,) = warning_lines(capsys.readouterr().err)
    assert "ignored 6 files gankit cannot read (.heic x3, .cr2 x1, .psd x1, .zip x1, e.g. 'art.psd')" in line
    assert "convert them to png or jpg" in line and "notes.txt" not in line

    only = tmp_path / "phone"
    (only).mkdir()
    (only / "a.heic").write_bytes(b"x")
    with pytest.raises(DataError, match="no image files gankit reads \\(.heic x1, e.g. 'a.heic'\\): convert"):
        load_folder(only, RES, cache_dir=tmp_path / "cache", progress=False)


def test_tga_ppm_ico_dib_pcx_qoi_and_jif_are_read_and_other_pillow_formats_are_named(tmp_path, capsys):
    """.tga, .ppm/.pgm/.pbm/.pnm, .ico, .jif/.jfi, .dib, .pcx and .qoi images were only counted as "non-image files",
    never read nor named; they are now read, and image formats gankit leaves out (JPEG 2000, .icns...) are named in the
    'cannot read' warning. A file without an extension that holds a TGA is still ignored (TGA has no signature)."""
    data = tmp_path / "data"
    color = (200, 30, 10)
    for name in ("a.tga", "b.ppm", "c.pnm", "d.ico", "e.dib", "f.pcx", "g.qoi"):
        save(data / name, solid(color))
    save(data / "h.jif", solid(color), format="JPEG", quality=95)
    save(data / "i.JFI", solid(color), format="JPEG", quality=95)
    save(data / "j.pgm", solid(128, mode="L"))
    save(data / "k.pbm", solid(1, mode="1"))
    save(data / "0a1b2c", solid(color), format="TGA")
    for name in ("x.jp2", "y.icns"):
        (data / name).write_bytes(b"not read")
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a.tga", "b.ppm", "c.pnm", "d.ico", "e.dib", "f.pcx", "g.qoi", "h.jif", "i.JFI", "j.pgm", "k.pbm"]
    assert all(pixel(ds, name) == color for name in ds.files[:7])
    assert all(abs(a - b) < 6 for name in ("h.jif", "i.JFI") for a, b in zip(pixel(ds, name), color))
    assert pixel(ds, "j.pgm") == (128, 128, 128) and pixel(ds, "k.pbm") == (255, 255, 255)
    (line,) = warning_lines(capsys.readouterr().err)
    assert "ignored 2 files gankit cannot read (.icns x1, .jp2 x1, e.g. 'x.jp2')" in line
    assert [p.name for p in sorted(folder.image_files(data))] == sorted(ds.files)


def test_tga_s_other_names_and_a_camera_s_mpo_are_read(tmp_path, capsys):
    """.icb/.vda/.vst (TGA files) and .mpo (a multi-picture JPEG: a 3D camera's two views) were named as files gankit
    cannot read, though Pillow reads them; they are read, an .mpo as its first picture (a large one decoded at a
    reduced scale, as a JPEG)."""
    data = tmp_path / "data"
    color, second = (200, 30, 10), (10, 30, 200)
    for name in ("a.icb", "b.vda", "c.VST"):
        save(data / name, solid(color), format="TGA")
    save(data / "d.mpo", solid(color, size=(900, 600)), format="MPO", save_all=True,
         append_images=[solid(second, size=(900, 600))], quality=95)
    with Image.open(data / "d.mpo") as im:
        assert im.format == "MPO" and im.n_frames == 2
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a.icb", "b.vda", "c.VST", "d.mpo"]
    assert all(pixel(ds, name) == color for name in ds.files[:3])
    assert all(abs(a - b) < 6 for a, b in zip(pixel(ds, "d.mpo"), color))
    assert warning_lines(capsys.readouterr().err) == []


def test_every_image_format_pillow_knows_is_read_or_named():
    """Each extension Pillow registers for an image format is one gankit reads or one its 'cannot read' warning names,
    never one counted without a word with text files (documents, data and video formats aside)."""
    not_images = {".pdf", ".h5", ".hdf", ".grib", ".bufr", ".mpeg", ".mpg", ".iim", ".im"}
    left = set(Image.registered_extensions()) - not_images - set(folder.IMAGE_EXTENSIONS)
    assert left <= set(folder.UNREADABLE_EXTENSIONS), sorted(left - set(folder.UNREADABLE_EXTENSIONS))


def test_gankit_run_folders_inside_the_data_folder_are_left_out(tmp_path, capsys):
    """`gankit train --data .` inside the image folder trained on its own samples, plots and evolution.gif on each
    resume (12 -> 17 -> 18 images), without a word. Run folders (config.yaml beside checkpoints/ or metrics.jsonl) are
    now left out, in one info line; a folder that merely holds a config.yaml is still read."""
    data = tmp_path / "data"
    for i in range(3):
        save(data / f"p{i}.png", solid((10, 20, 30)))
    run = data / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data: {}\n")
    save(run / "samples" / "epoch_001.png", solid((0, 0, 0)))
    save(run / "plots" / "loss.png", solid((0, 0, 0)))
    save(run / "evolution.gif", solid((0, 0, 0)))
    (data / "old").mkdir()
    (data / "old" / "config.yaml").write_text("x: 1\n")
    (data / "old" / "metrics.jsonl").write_text("{}\n")
    save(data / "old" / "grid.png", solid((0, 0, 0)))
    save(data / "kept" / "config.yaml" / "odd.png", solid((1, 1, 1)))  # not a run: config.yaml is a folder here
    save(data / "kept" / "checkpoints" / "c.png", solid((1, 1, 1)))
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["kept/checkpoints/c.png", "kept/config.yaml/odd.png", "p0.png", "p1.png", "p2.png"]
    err = capsys.readouterr().err
    assert "left out 2 gankit run folders: old, runs/x" in err and not warning_lines(err)
    with pytest.raises(DataError, match="holds only gankit run folders \\(x\\).*pass the folder of training images"):
        load_folder(data / "runs", RES, cache_dir=tmp_path / "cache", progress=False)


def test_symlinked_folders_are_followed_once(tmp_path):
    """Links to folders were silently not followed: a folder of symlinked class folders was "empty", and a
    `dirlink -> folder of images` was dropped without a word. They are followed now, each real folder once: a link to
    an ancestor, or a second way to a folder already read, is not walked again (the real path is kept)."""
    store = tmp_path / "store"
    for cls in ("cats", "dogs"):
        for i in range(2):
            save(store / cls / f"{i}.png", solid((i, 0, 0)))
    classes = tmp_path / "classes"
    classes.mkdir()
    for cls in ("cats", "dogs"):
        os.symlink(store / cls, classes / cls)
    ds = load_folder(classes, RES, labels="folders", cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["cats/0.png", "cats/1.png", "dogs/0.png", "dogs/1.png"]
    assert ds.class_names == ["cats", "dogs"]

    mixed = tmp_path / "mixed"
    save(mixed / "a.png", solid((1, 1, 1)))
    save(mixed / "real" / "r.png", solid((1, 1, 1)))
    os.symlink(store / "cats", mixed / "dirlink")
    os.symlink(store / "cats", mixed / "again")  # a second link to the same folder
    os.symlink(mixed / "real", mixed / "alias")  # a link to a folder inside: its real path is kept
    os.symlink(mixed, mixed / "real" / "up")  # a link to an ancestor
    os.symlink("..", mixed / "loop")  # up out of the data folder: its siblings are not pulled in
    ds = load_folder(mixed, RES, cache_dir=tmp_path / "cache", progress=False)
    assert len(ds.files) == 4
    assert "a.png" in ds.files and "real/r.png" in ds.files
    assert {f.rsplit("/", 1)[1] for f in ds.files if f.startswith(("dirlink/", "again/"))} == {"0.png", "1.png"}


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    save(tmp_path / "data" / "ramp.png", Image.fromarray(ramp))
    assert Image.open(tmp_path / "data" / "ramp.png").mode.startswith("I")
    ds = load_folder(tmp_path / "data", 16, cache_dir=tmp_path / "cache", progress=False)
    row = ds.images[0, 0, 8].to(torch.int32)
    expected = torch.from_numpy(np.rint(np.linspace(0, 255, 16))).to(torch.int32)
    assert (row - expected).abs().max() <= 2, row


def test_many_bad_files_are_counted_and_only_five_named(tmp_path, capsys):
    data = tmp_path / "data"
    save(data / "ok.png", solid((1, 1, 1)))
    for i in range(7):
        (data / f"bad{i}.jpg").write_bytes(b"\xff\xd8 nope")
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["ok.png"]
    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "skipped 7 of 8 image files" in lines[0]
    assert "and 2 more" in lines[0]
    assert lines[0].count("bad") == 5


def test_decompression_bomb_size_is_a_skip_not_a_warning_or_crash(tmp_path, recwarn):
    data = tmp_path / "data"
    save(data / "ok.png", solid((1, 1, 1)))
    (data / "big.png").write_bytes(png_header_only(10000, 10000))  # above Pillow's warning limit only
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["ok.png"]
    assert dict(ds.skipped)["big.png"].startswith("too large")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


# ----------------------------------------------------------------------------- folders that cannot be used


def test_unusable_folders_raise_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data"):
        load_folder(tmp_path / "missing", RES, cache_dir=tmp_path / "cache")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_folder(tmp_path / "file.png", RES, cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_folder(tmp_path / "empty", RES, cache_dir=tmp_path / "cache")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("a")
    save(tmp_path / "texts" / ".hidden.png", solid((0, 0, 0)))
    with pytest.raises(DataError, match="no image files.*a.txt.*png"):
        load_folder(tmp_path / "texts", RES, cache_dir=tmp_path / "cache")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 image files.*a.png \\(not an image\\)") as info:
        load_folder(tmp_path / "broken", RES, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="resolution"):
        load_folder(tmp_path / "broken", 0, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, fix", [
    ("faces.rar", "unpack it and pass the folder"), ("faces.tar.zst", "unpack it and pass the folder"),
    ("faces.xz", "unpack it and pass the folder"), ("faces.7z", "unpack it and pass the folder"),
    ("sub/face.png", "pass the folder that holds it, '{sub}'"), ("notes.txt", "pass the folder that holds the images")])
def test_a_file_given_as_the_data_folder_is_told_what_to_pass(tmp_path, name, fix):
    """A .rar, .tar.zst or .xz was told to "pass the folder that holds the images" (as a .7z was told to unpack it),
    and a single image was not told which folder holds it."""
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="is a file, not a folder") as info:
        load_folder(path, RES, cache_dir=tmp_path / "cache")
    assert str(info.value).endswith(": " + fix.format(sub=tmp_path / "sub"))


def test_a_folder_of_only_hidden_files_is_not_called_empty(tmp_path):
    """A folder holding only `.hidden/abra.png` and `.x.png` was "empty"; it now says they are hidden, which gankit
    skips, and to move them out."""
    data = tmp_path / "data"
    save(data / ".hidden" / "abra.png", solid((1, 1, 1)))
    save(data / ".x.png", solid((1, 1, 1)))
    with pytest.raises(DataError, match="holds only hidden files or folders \\(.hidden, .x.png\\), which gankit skips: "
                                        "move the images out of them") as info:
        load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert "empty" not in str(info.value)
    (data / "readme.txt").write_text("sprites")  # with another file there, the hidden image is still named
    with pytest.raises(DataError, match="holds no image files \\(1 other file, e.g. 'readme.txt'\\).*; 1 hidden "
                                        "image skipped, e.g. '.x.png' \\(names must not start with '.'\\)$"):
        load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)


def test_folders_that_nas_and_windows_tools_add_are_skipped(tmp_path):
    """A Synology NAS's `@eaDir` (thumbnails of every image, so each picture trained on several times), its `#recycle`
    and a Windows drive's `$RECYCLE.BIN` and `System Volume Information` were read as training images."""
    data = tmp_path / "data"
    for name in ["a.png", "b.png", "@eaDir/a.png/SYNOPHOTO_THUMB_XL.jpg", "#recycle/old.png", "$RECYCLE.BIN/$R1.png",
                 "System Volume Information/x.png", "__MACOSX/._a.png"]:
        save(data / name, solid((1, 2, 3)))
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a.png", "b.png"]


def test_a_file_name_with_terminal_escape_sequences_is_shown_not_sent(tmp_path, capsys):
    """A file name from someone else's archive, `a<ESC>[2J.png`, went to the terminal as it is in the skip warning:
    its escape sequence cleared the screen (or set colours, the window title) instead of being shown."""
    data = tmp_path / "data"
    save(data / "good.png", solid((1, 2, 3)))
    (data / "a\x1b[2J\x9b\r.png").write_bytes(b"junk")
    load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    err = capsys.readouterr().err
    assert "a\\x1b[2J\\x9b\\r.png (not an image)" in err and "\x1b" not in err and "\x9b" not in err


def test_images_under_another_extension_are_named_with_their_format(tmp_path, capsys):
    """Twitter's `a.jpg_large`, `b.png_orig` and wget's second download `c.jpg.1` were left out without a word (a
    folder of nothing else "held no image files ... supported extensions are ..."): they are named now, with their
    format, and the text files beside them are not."""
    data = tmp_path / "data"
    save(data / "good.png", solid((1, 2, 3)))
    (data / "a.jpg_large").write_bytes(image_bytes(fmt="JPEG"))
    (data / "sub" / "b.png_orig").parent.mkdir()
    (data / "sub" / "b.png_orig").write_bytes(image_bytes())
    (data / "c.jpg.1").write_bytes(image_bytes(fmt="JPEG"))
    (data / "notes.png.txt").write_text("about the pictures")
    ds = load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["good.png"]
    [line] = warning_lines(capsys.readouterr().err)
    assert line == ("warning: left out 3 files that hold images under another extension: a.jpg_large (JPEG), c.jpg.1 "
                    "(JPEG), sub/b.png_orig (PNG); rename them to the format's extension (.png, .jpg, ...) for gankit "
                    "to read them")
    (data / "good.png").unlink()
    for name in ["a.jpg_large", "sub/b.png_orig"]:
        (data / name).unlink()
    with pytest.raises(DataError, match=r"^data folder '.*data' holds no file with an image extension but 1 file that "
                                        r"holds an image under another extension: c.jpg.1 \(JPEG\); rename it to the "
                                        r"format's extension \(.png, .jpg, ...\) for gankit to read it$"):
        load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 5120\n"


def test_files_that_are_not_images_say_what_they_hold(tmp_path, capsys):
    """A Git LFS pointer (a clone without git lfs), a saved web page and an iPhone's HEIC under image names were all
    "not an image", with no word of what to do."""
    data = tmp_path / "data"
    save(data / "good.png", solid((1, 2, 3)))
    (data / "pointer.png").write_bytes(LFS_POINTER)
    (data / "page.jpg").write_bytes(b"\n<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    (data / "phone.jpg").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(40))
    (data / "junk.png").write_bytes(b"garbage" * 10)
    load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)
    [line] = warning_lines(capsys.readouterr().err)
    assert ("junk.png (not an image), page.jpg (a web page, not an image: download it again), phone.jpg (a HEIC "
            "image, which gankit cannot read: convert it to jpg), pointer.png (a Git LFS pointer, not the image: run "
            "git lfs pull)") in line


def test_a_folder_of_git_lfs_pointers_says_to_pull_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ["a.png", "b.png"]:
        (data / name).write_bytes(LFS_POINTER)
    with pytest.raises(DataError, match=r"the image files in '.*data' are Git LFS pointers, not images \(a.png, "
                                        r"b.png\): run git lfs pull in the repository they were cloned from"):
        load_folder(data, RES, cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any folder")
def test_unreadable_folder_raises(tmp_path):
    data = tmp_path / "locked"
    save(data / "a.png", solid((0, 0, 0)))
    data.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read data folder"):
            load_folder(data, RES, cache_dir=tmp_path / "cache")
    finally:
        data.chmod(0o755)


# ----------------------------------------------------------------------------- labels


def test_labels_from_class_folders(tmp_path):
    data = tmp_path / "animals"
    for cls, color in [("dogs", (0, 0, 200)), ("cats", (200, 0, 0))]:
        for i in range(2):
            save(data / cls / f"{i}.png", solid(color))
    save(data / "cats" / "kittens" / "k.png", solid((200, 0, 0)))  # class = first sub-folder
    ds = load_folder(data, RES, labels="folders", cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (5,)
    for f, label, image in zip(ds.files, ds.labels.tolist(), ds.images):
        assert ds.class_names[label] == f.split("/")[0]
        assert image[0, 8, 8] > 150 if label == 0 else image[2, 8, 8] > 150

    save(data / "loose.png", solid((0, 0, 0)))
    with pytest.raises(DataError, match="class sub-folder.*loose.png"):
        load_folder(data, RES, labels="folders", cache_dir=tmp_path / "cache", progress=False)


@pytest.fixture()
def csv_folder(tmp_path):
    data = tmp_path / "shapes"
    for name in ["a", "b", "c", "d", "e"]:
        save(data / "img" / f"{name}.png", solid((ord(name), 0, 0)))
    return data


def test_labels_from_csv_drop_images_without_a_label(tmp_path, csv_folder, capsys):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,kind,path\n"
                        "1,round,img/a.png\n"
                        "2,square,img/b.png\n"
                        "3,round,img/e.png\n"
                        "4,,img/c.png\n"            # empty label -> dropped
                        "5,round,img/zzz.png\n")    # no such image; d has no row -> dropped
    ds = load_folder(csv_folder, RES, labels=str(csv_path), label_column="kind",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["img/a.png", "img/b.png", "img/e.png"]
    assert ds.class_names == ["round", "square"]
    assert ds.labels.tolist() == [0, 1, 0]
    assert [int(v) for v in ds.images[:, 0, 8, 8]] == [ord("a"), ord("b"), ord("e")]
    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert "dropped 2 of 5 images" in lines[0]
    assert "img/c.png (empty label)" in lines[0] and "img/d.png (no row)" in lines[0]
    assert lines[0].endswith("; give each one row with a label to train on it")  # (it said what, not how to fix it)
    assert "1 row of 'labels.csv' names no image (column 'path'): img/zzz.png" in lines[1]


def test_images_dropped_for_one_reason_say_it_once(tmp_path, csv_folder, capsys):
    """Three images without a row (a new user's renamed files) were each followed by "(no row)", a 222-character
    line for three Japanese names: a reason every named file shares is said once, after the names."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("kind,path\nround,img/a.png\nsquare,img/b.png\n")
    load_folder(csv_folder, RES, labels=str(csv_path), label_column="kind", cache_dir=tmp_path / "cache",
                progress=False)
    line = warning_lines(capsys.readouterr().err)[0]
    assert "img/c.png, img/d.png, img/e.png (all: no row); give each one row" in line
    assert line.count("no row") == 1


def test_csv_rows_that_match_no_image_are_counted_and_named_in_one_warning(tmp_path, csv_folder, capsys):
    """A row whose file name matches no image (`ghost,fire,,images/ghost.png`: a typo, a deleted image) was ignored
    without a word, while images without a row were named. Such rows are now counted and the first few named, in one
    line; rows that do match an image (by path, name or stem, or one that could not be decoded) are not named."""
    (csv_folder / "img" / "broken.png").write_bytes(b"not a png")
    ghosts = [f"images/ghost{i}.png" for i in range(7)]
    (tmp_path / "types.csv").write_text("name,type1,type2,image_path\n"
                                        "alpha,fire,,img/a.png\nbeta,water,,images/b.png\ngamma,fire,,c\n"
                                        "delta,water,,d.PNG\nepsilon,fire,,e.png\nzeta,fire,,img/broken.png\n"
                                        + "".join(f"ghost{i},fire,,{g}\n" for i, g in enumerate(ghosts)))
    ds = load_folder(csv_folder, RES, labels=str(tmp_path / "types.csv"), label_column="type1",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["img/a.png", "img/b.png", "img/c.png", "img/d.png", "img/e.png"]
    skipped, line = warning_lines(capsys.readouterr().err)
    assert "img/broken.png" in skipped
    assert line == ("warning: 7 rows of 'types.csv' name no image (column 'image_path'): images/ghost0.png, "
                    "images/ghost1.png, images/ghost2.png, images/ghost3.png, images/ghost4.png and 2 more; "
                    "fix the names or remove the rows")


def test_csv_matches_stems_relative_paths_and_other_delimiters(tmp_path, csv_folder):
    (csv_folder / "kinds.csv").write_text("name;kind\nA;x\nb;y\nc;x\nd;y\ne;x\n")  # stems, any case
    ds = load_folder(csv_folder, RES, labels="kinds.csv", label_column="kind",  # relative to the folder
                     cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 5 and ds.class_names == ["x", "y"]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0]
    same = load_folder(csv_folder, RES, labels="kinds.csv", label_column="Kind",  # a column named in another case
                       cache_dir=tmp_path / "cache", progress=False)
    assert same.labels.tolist() == ds.labels.tolist()


def test_csv_names_match_files_whatever_the_accents_composition(tmp_path, capsys):
    """macOS names files decomposed (NFD: e + combining accent) and a CSV holds names as typed (NFC): `flabébé.png`
    had no row, and its row named no image, in two warnings that showed one name twice."""
    import unicodedata

    data = tmp_path / "accents"
    save(data / unicodedata.normalize("NFD", "flabébé.png"), solid((0, 0, 0)))
    save(data / "Mr. Mime.PNG", solid((0, 0, 0)))
    (tmp_path / "labels.csv").write_text(f"name,kind\n{unicodedata.normalize('NFC', 'flabébé')},fairy\nmr. mime,psychic\n",
                                         encoding="utf-8")
    ds = load_folder(data, RES, labels=str(tmp_path / "labels.csv"), label_column="kind",
                     cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 2 and ds.class_names == ["fairy", "psychic"]
    assert not warning_lines(capsys.readouterr().err)


def test_csv_paths_tell_apart_images_of_the_same_name_in_two_folders(tmp_path, capsys):
    """Rows were matched by file stem alone: `a/abra.png,fire` and `b/abra.png,water` gave both pictures `fire` and
    the class `water` vanished, silently. A path's longest ending the CSV names now decides (the CSV's paths may
    start elsewhere, e.g. absolute or from a parent folder); a bare name two rows label differently drops its image,
    with a warning that says how to fix it."""
    data = tmp_path / "dupe"
    for sub, value in (("a", 50), ("b", 200)):
        for name in ("abra", "absol"):
            save(data / sub / f"{name}.png", solid((value, 0, 0)))
    save(data / "abra.png", solid((0, 0, 0)))
    (tmp_path / "labels.csv").write_text("file,label\n"
                                         "a/abra.png,fire\na/absol.png,fire\n"
                                         f"{data}/b/abra.png,water\n"  # absolute
                                         "dupe/b/absol.png,water\n")  # from the parent folder
    ds = load_folder(data, RES, labels=str(tmp_path / "labels.csv"), label_column="label",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a/abra.png", "a/absol.png", "b/abra.png", "b/absol.png"]
    assert [ds.class_names[i] for i in ds.labels] == ["fire", "fire", "water", "water"]
    assert [int(v) for v in ds.images[:, 0, 8, 8]] == [50, 50, 200, 200]
    (line,) = warning_lines(capsys.readouterr().err)
    assert "abra.png (rows give its name different labels: write its path in the CSV)" in line
    # rows that label one image twice, differently, are not told apart by its path (the CSV may hold it already)
    (tmp_path / "labels.csv").write_text("file,label\na/abra.png,fire\na/absol.png,fire\nb/abra.png,water\n"
                                         "b/absol.png,water\nb/absol.png,fire\n")
    ds = load_folder(data, RES, labels=str(tmp_path / "labels.csv"), label_column="label",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["a/abra.png", "a/absol.png", "b/abra.png"]
    (line,) = warning_lines(capsys.readouterr().err)
    assert "abra.png (rows give its name different labels: write its path in the CSV), b/absol.png (its rows give " \
        "different labels: keep one)" in line


def test_csv_problems_raise_data_errors(tmp_path, csv_folder):
    def load(labels, column="kind"):
        return load_folder(csv_folder, RES, labels=str(labels), label_column=column,
                           cache_dir=tmp_path / "cache", progress=False)

    good = tmp_path / "good.csv"
    good.write_text("file,kind,colour\na.png,x,red\n")
    with pytest.raises(DataError, match="'shape' is not in.*available columns: file, kind, colour"):
        load(good, "shape")
    with pytest.raises(DataError, match="need a label column.*file, kind, colour"):
        load(good, None)
    indexed = tmp_path / "indexed.csv"  # pandas' to_csv: an index column without a name (it read ": , file, kind")
    indexed.write_text(",file,kind\n0,a.png,x\n")
    with pytest.raises(DataError, match=r"'shape' is not in 'indexed.csv'; available columns: \(unnamed\), file, kind$"):
        load(indexed, "shape")
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nope.csv")
    nomatch = tmp_path / "nomatch.csv"
    nomatch.write_text("file,kind\nzebra.png,x\nlion.png,y\n")
    with pytest.raises(DataError, match="no file names.*tried columns file"):
        load(nomatch)
    allempty = tmp_path / "allempty.csv"
    allempty.write_text("file,kind\na.png,\nb.png,\n")
    with pytest.raises(DataError, match="no image has a label"):
        load(allempty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x81\xfe\x00garbage\x00")  # (FF FE first would be UTF-16's byte-order mark)
    with pytest.raises(DataError, match="not a UTF-8"):
        load(binary)
    binary.write_bytes(b"file,kind\na.png,x\x00\x00\n")  # binary bytes that decode as UTF-8
    with pytest.raises(DataError, match="not a UTF-8"):
        load(binary)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("file,kind\na.png,x,extra,fields\n")
    with pytest.raises(DataError, match="not a valid CSV: row 2 has 4 fields but the header has 2: quote values "
                                        "that hold a ',', or give the extra columns a name in the header$"):
        load(ragged)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load(tmp_path / "empty.csv")


def test_csv_rows_with_a_trailing_delimiter_are_read(tmp_path, csv_folder):
    """`a.png,x,` under a `file,kind` header (a trailing comma, as some exports and hand edits leave) stopped the run
    with "row 2 has 3 fields but the header has 2"; empty cells past the header's columns are now dropped."""
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("file,kind\na.png,x,\nb.png,y, ,\n")
    ds = load_folder(csv_folder, RES, labels=str(trailing), label_column="kind", cache_dir=tmp_path / "cache",
                     progress=False)
    assert ds.class_names == ["x", "y"] and len(ds) == 2


@pytest.mark.parametrize("column", ["label", None])
def test_a_csv_without_a_header_row_is_told_to_add_one(tmp_path, csv_folder, column):
    """A CSV whose first row is an image's (`a.png,x`) was told "label column 'label' is not in 'nohdr.csv';
    available columns: a.png, x": its missing header row is now named."""
    headless = tmp_path / "nohdr.csv"
    headless.write_text("img/a.png,x\nb.png,y\n")
    with pytest.raises(DataError, match=r"^label file 'nohdr.csv' has no header row: its first row \('img/a.png, x'\) "
                                        r"names an image; add a first row naming the columns, e.g. file,label, and "
                                        r"pass --label-column label$"):
        load_folder(csv_folder, RES, labels=str(headless), label_column=column, cache_dir=tmp_path / "cache",
                    progress=False)
    image_column = tmp_path / "image.csv"  # a header whose column is named like an image's stem is a header
    image_column.write_text("a,kind\na.png,x\n")
    with pytest.raises(DataError, match="label column 'label' is not in 'image.csv'; available columns: a, kind"):
        load_folder(csv_folder, RES, labels=str(image_column), label_column="label", cache_dir=tmp_path / "cache",
                    progress=False)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_label_file_with_its_byte_order_mark_is_read(tmp_path, csv_folder, encoding):
    """Excel's "Unicode Text" export (UTF-16 with a byte-order mark, tab-separated) was refused as "not a UTF-8 text
    CSV"."""
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufefffile\tkind\r\na.png\tfür\r\nb.png\ty\r\n".encode(encoding))
    ds = load_folder(csv_folder, RES, labels=str(labels), label_column="kind", cache_dir=tmp_path / "cache",
                     progress=False)
    assert ds.class_names == ["für", "y"] and len(ds) == 2


def test_labels_that_differ_only_in_case_are_named_in_one_warning(tmp_path, csv_folder, capsys):
    """`Fire` and `fire` silently became two classes; they still are (the CSV may mean it), but a warning names them."""
    (tmp_path / "case.csv").write_text("file,kind\na.png,Fire\nb.png,fire\nc.png,Water\nd.png,WATER\ne.png,grass\n")
    ds = load_folder(csv_folder, RES, labels=str(tmp_path / "case.csv"), label_column="kind",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.class_names == ["Fire", "WATER", "Water", "fire", "grass"]
    (line,) = warning_lines(capsys.readouterr().err)
    assert "labels in column 'kind'" in line and "differ only in case" in line
    assert "'Fire'/'fire'" in line and "'WATER'/'Water'" in line and "grass" not in line


def test_a_label_column_of_file_names_is_named_in_a_warning(tmp_path, csv_folder, capsys):
    """`--label-column name` (the column of file names) made each image a class of its own: 1016 classes of one
    Pokemon each, trained without a word."""
    (csv_folder / "kinds.csv").write_text("name,kind,path\n" + "".join(f"{c},x,img/{c}.png\n" for c in "abcde"))
    ds = load_folder(csv_folder, RES, labels="kinds.csv", label_column="name", cache_dir=tmp_path / "cache",
                     progress=False)
    assert len(ds.class_names) == len(ds) == 5
    (line,) = warning_lines(capsys.readouterr().err)
    assert "column 'name' of 'kinds.csv' names the images themselves: each of the 5 images is a class of its own" in line
    assert line.endswith("pick a label column, one of: kind")
    (csv_folder / "kinds.csv").write_text("name,kind\n" + "".join(f"{c},{c}{c}\n" for c in "abcde"))
    load_folder(csv_folder, RES, labels="kinds.csv", label_column="kind", cache_dir=tmp_path / "cache", progress=False)
    assert not warning_lines(capsys.readouterr().err)  # a class per image, but not named by the images' names


def test_an_excel_sep_line_names_the_delimiter(tmp_path, csv_folder):
    """Excel's `sep=;` first line was read as the header ("available columns: sep=,"); it now names the delimiter."""
    (tmp_path / "excel.csv").write_text("sep=;\r\nfile;kind\r\na.png;x\r\nb.png;y,z\r\n")
    ds = load_folder(csv_folder, RES, labels=str(tmp_path / "excel.csv"), label_column="kind",
                     cache_dir=tmp_path / "cache", progress=False)
    assert ds.files == ["img/a.png", "img/b.png"] and ds.class_names == ["x", "y,z"]
    (tmp_path / "quote.csv").write_text('sep=;\nfile;kind\n"a.png;x\nb.png;y\n')
    with pytest.raises(DataError, match="row 3 opens a quote"):  # rows counted in the file, the sep line included
        load_folder(csv_folder, RES, labels=str(tmp_path / "quote.csv"), label_column="kind",
                    cache_dir=tmp_path / "cache", progress=False)


def test_an_unclosed_quote_in_the_csv_is_named_and_examples_are_short(tmp_path, csv_folder):
    """A quote opened on row 2 and never closed made the rest of the file one value, and the error quoted it whole
    (39,690 characters for the pokemon CSV); now the row is named, and every example a message quotes is short."""
    rows = "".join(f"{name},grass,poison\n" for name in "bcde" * 400)
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('name,kind,other\n"a,grass,poison\n' + rows)
    with pytest.raises(DataError, match="row 2 opens a quote that never closes") as info:
        load_folder(csv_folder, RES, labels=str(unclosed), label_column="kind", cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    long_value = tmp_path / "long.csv"
    long_value.write_text("name,kind\n" + "x" * 5000 + ",a\n")
    with pytest.raises(DataError, match="no file names") as info:
        load_folder(csv_folder, RES, labels=str(long_value), label_column="kind", cache_dir=tmp_path / "cache")
    assert len(str(info.value)) < 400
    long_header = tmp_path / "header.csv"
    long_header.write_text("name," + "y" * 5000 + "\na.png,a\n")
    with pytest.raises(DataError, match="available columns: name, yyy") as info:
        load_folder(csv_folder, RES, labels=str(long_header), label_column="kind", cache_dir=tmp_path / "cache")
    assert len(str(info.value)) < 400


# ----------------------------------------------------------------------------- the cache


def counting_decoder(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = folder._decode_file

    def decode(path, resolution):
        calls.append(path)
        return real(path, resolution)

    monkeypatch.setattr(folder, "_decode_file", decode)
    return calls


def test_second_load_uses_the_cache_and_labels_do_not_re_decode(tmp_path, csv_folder, monkeypatch):
    cache_dir = tmp_path / "cache"
    before = sorted(p.relative_to(csv_folder) for p in csv_folder.rglob("*"))
    calls = counting_decoder(monkeypatch)
    first = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    assert len(calls) == 5
    assert len(list(cache_dir.glob("*.pt"))) == 1

    def refuse(path, resolution):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(folder, "_decode_file", refuse)
    again = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    assert torch.equal(again.images, first.images) and again.key == first.key
    (tmp_path / "l.csv").write_text("f,k\na,x\nb,y\nc,x\nd,y\ne,y\n")
    labelled = load_folder(csv_folder, RES, labels=str(tmp_path / "l.csv"), label_column="k",
                           cache_dir=cache_dir, progress=False)
    assert labelled.labels.tolist() == [0, 1, 0, 1, 1]
    assert labelled.key != first.key  # label settings are part of the key
    # nothing was written inside the data folder
    assert sorted(p.relative_to(csv_folder) for p in csv_folder.rglob("*")) == before


def test_a_large_cache_says_when_it_is_written_and_read_and_a_small_one_does_not(tmp_path, csv_folder, monkeypatch,
                                                                                  capsys):
    """A 1.6 GB dataset cache took 5 s to write and 3.8 s to read without a word."""
    import gankit.data.cache as cache

    load_folder(csv_folder, RES, cache_dir=tmp_path / "small")
    load_folder(csv_folder, RES, cache_dir=tmp_path / "small")
    assert "dataset cache" not in capsys.readouterr().err
    monkeypatch.setattr(cache, "LARGE_BYTES", 1)
    load_folder(csv_folder, RES, cache_dir=tmp_path / "large", progress=False)  # quiet when asked to be
    assert "dataset cache" not in capsys.readouterr().err
    (cached,) = (tmp_path / "large").glob("*.pt")
    cached.unlink()
    load_folder(csv_folder, RES, cache_dir=tmp_path / "large")
    assert f"writing the dataset cache {cached} (" in capsys.readouterr().err
    load_folder(csv_folder, RES, cache_dir=tmp_path / "large")
    assert f"reading the dataset cache {cached} (" in capsys.readouterr().err


def test_most_images_smaller_than_the_resolution_are_said_also_from_the_cache(tmp_path, monkeypatch):
    """16 px images loaded at 64 px were upscaled into blurry ones without a word. The sizes before fitting are kept
    with the decoded images (and in their cache) for one line that says how many, their median size and the fix."""
    from gankit.data import upscale_note

    for i in range(5):
        save(tmp_path / "d" / f"s{i}.png", solid((i * 40, 0, 0), size=(16 + i, 20)))
    for i in range(3):
        save(tmp_path / "d" / f"t{i}.png", solid((0, i * 40, 0), size=(90, 70)))
    (tmp_path / "l.csv").write_text("f,k\ns0,a\ns1,a\nt0,b\n")
    first = load_folder(tmp_path / "d", 64, progress=False)
    assert first.sizes.tolist() == [[16, 20], [17, 20], [18, 20], [19, 20], [20, 20], [90, 70], [90, 70], [90, 70]]
    said = ("5 of 8 images are smaller than 64 px (shorter side; median 18 px) and are upscaled to it, which blurs "
            "them: train at --resolution 18, or use images at least 64 px")
    assert upscale_note(first, 64) == said
    monkeypatch.setattr(folder, "_decode_file", lambda path, resolution: pytest.fail("decoded despite the cache"))
    assert upscale_note(load_folder(tmp_path / "d", 64, progress=False), 64) == said
    labelled = load_folder(tmp_path / "d", 64, labels=str(tmp_path / "l.csv"), label_column="k", progress=False)
    assert labelled.sizes.tolist() == [[16, 20], [17, 20], [90, 70]]  # the labelled images' own
    assert upscale_note(labelled, 64).startswith("2 of 3 images are smaller than 64 px (shorter side; median 16 px)")
    monkeypatch.undo()
    assert upscale_note(load_folder(tmp_path / "d", 17, progress=False), 17) is None  # (1 of 8 smaller)
    assert upscale_note(load_folder(tmp_path / "d", 20, progress=False), 20) is None  # 4 of 8: not most
    assert upscale_note(load_builtin("mnist", 32), 32) is None  # (28 px digits: no sizes kept, none said)


def test_a_cache_written_before_sizes_were_kept_is_still_read(tmp_path, monkeypatch):
    """A cache without the sizes before fitting stays valid (no re-decode): it only says no upscaling note."""
    from gankit.data import upscale_note

    for i in range(3):
        save(tmp_path / "d" / f"s{i}.png", solid((i * 40, 0, 0), size=(16, 16)))
    real = folder._decode_folder
    monkeypatch.setattr(folder, "_decode_folder", lambda *a: {k: v for k, v in real(*a).items() if k != "sizes"})
    assert load_folder(tmp_path / "d", 32, progress=False).sizes is None
    monkeypatch.setattr(folder, "_decode_file", lambda path, resolution: pytest.fail("decoded despite the cache"))
    old = load_folder(tmp_path / "d", 32, progress=False)
    assert old.sizes is None and upscale_note(old, 32) is None


def test_two_folders_alike_but_for_their_pixels_do_not_share_a_cache(tmp_path):
    """The key was the folder's name and each file's name, size and mtime: `fid fA/images fB/images` on 10 red and
    10 blue BMPs (one size) touched to one date gave FID 0, and fB loaded fA's red pixels."""
    for where, colour in (("fA", (255, 0, 0)), ("fB", (0, 0, 255))):
        (tmp_path / where / "images").mkdir(parents=True)
        for i in range(3):
            path = tmp_path / where / "images" / f"img{i}.bmp"
            Image.new("RGB", (16, 16), colour).save(path)
            os.utime(path, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    red = load_folder(tmp_path / "fA" / "images", RES, cache_dir=tmp_path / "cache", progress=False)
    blue = load_folder(tmp_path / "fB" / "images", RES, cache_dir=tmp_path / "cache", progress=False)
    assert red.images[:, 0].float().mean() > 200 and blue.images[:, 2].float().mean() > 200
    assert red.key != blue.key


def test_corrupt_cache_is_rebuilt(tmp_path, csv_folder, monkeypatch, capsys):
    cache_dir = tmp_path / "cache"
    first = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    (cache_file,) = cache_dir.glob("*.pt")
    cache_file.write_bytes(b"\x80\x02garbage, not a torch file")
    calls = counting_decoder(monkeypatch)
    again = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    assert len(calls) == 5
    assert torch.equal(again.images, first.images)
    assert "ignoring unreadable dataset cache" in capsys.readouterr().err
    assert torch.load(cache_file, weights_only=True)["files"] == first.files  # rewritten, readable
    assert not [p for p in cache_dir.iterdir() if p.suffix == ".tmp"]


def test_changing_the_folder_changes_the_key(tmp_path, csv_folder, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    save(csv_folder / "img" / "f.png", solid((5, 5, 5)))
    calls = counting_decoder(monkeypatch)
    second = load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    assert len(second) == 6 and second.key != first.key and calls
    other_res = load_folder(csv_folder, 8, cache_dir=cache_dir, progress=False)
    assert other_res.key != second.key and other_res.images.shape[-1] == 8


def test_a_folders_former_cache_is_removed_when_an_edit_writes_its_new_one(tmp_path, csv_folder):
    """Re-saving one broken image of a folder wrote a new cache and left the former one, as large, for ever: every
    edit of a dataset of thousands of images left another copy of it in ~/.cache. Other folders' caches, and the
    folder's at other resolutions, are kept."""
    cache_dir = tmp_path / "cache"
    other = tmp_path / "other"
    save(other / "a.png", solid((9, 9, 9)))
    load_folder(other, RES, cache_dir=cache_dir, progress=False)
    load_folder(csv_folder, 8, cache_dir=cache_dir, progress=False)
    load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)
    kept = set(cache_dir.glob("*.pt"))
    save(csv_folder / "img" / "f.png", solid((5, 5, 5)))
    assert len(load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)) == 6
    now = set(cache_dir.glob("*.pt"))
    assert len(now) == 3 and len(now & kept) == 2  # the former cache at RES replaced, the others there


def test_unwritable_cache_only_warns(tmp_path, csv_folder, capsys):
    (tmp_path / "a-file").write_text("")
    ds = load_folder(csv_folder, RES, cache_dir=tmp_path / "a-file" / "cache", progress=False)
    assert len(ds) == 5
    assert "the cache is off" in capsys.readouterr().err


@pytest.mark.parametrize("below", ["", "/deeper"])
def test_a_cache_dir_that_is_a_file_is_named_in_the_warning(tmp_path, csv_folder, monkeypatch, capsys, below):
    """GANKIT_CACHE_DIR naming a file warned 'could not write the cache 'FILE/x.pt' (File exists): check the disk and
    the folder': the file in the way is named."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / f"a-file{below}"))
    assert len(load_folder(csv_folder, RES, progress=False)) == 5
    (line,) = warning_lines(capsys.readouterr().err)
    assert f"'{tmp_path / 'a-file'}' is a file where a folder is needed" in line
    assert "check the disk" not in line and "the data will be decoded again next time" in line


def test_an_unwritable_home_turns_the_cache_off_in_one_line_said_once(tmp_path, csv_folder, monkeypatch, capsys):
    """A HOME that cannot be written (a shared cluster account, a container's read-only HOME; here one below a file,
    unwritable even for root) warned 'could not write the cache ...: move or delete it, or choose another path' on
    each load, without saying which setting chooses another: one line names the folder and GANKIT_CACHE_DIR."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.delenv("GANKIT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "a-file" / "home"))
    assert len(load_folder(csv_folder, RES, progress=False)) == 5
    assert len(load_folder(csv_folder, 8, progress=False)) == 5  # the same folder: nothing said again
    (line,) = warning_lines(capsys.readouterr().err)
    folder = tmp_path / "a-file" / "home" / ".cache" / "gankit" / "datasets"
    assert line.startswith(f"warning: the cache is off: '{folder}' is not writable ('{tmp_path / 'a-file'}' is a file")
    assert line.endswith("to cache, set GANKIT_CACHE_DIR (or data.cache_dir) to a writable folder")


def test_a_cache_folder_without_write_permission_turns_the_cache_off(tmp_path, csv_folder, monkeypatch, capsys):
    """A read-only cache folder (os.access says so; root can write anywhere, so it is faked) is said in one line, and
    nothing is tried there."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != cache_dir)
    assert len(load_folder(csv_folder, RES, cache_dir=cache_dir, progress=False)) == 5
    (line,) = warning_lines(capsys.readouterr().err)
    assert f"'{cache_dir}' is not writable (no permission to write there)" in line and "data.cache_dir" in line
    assert not list(cache_dir.iterdir())


def test_a_cache_that_fills_the_disk_only_warns_and_leaves_no_partial_file(tmp_path, csv_folder, monkeypatch, capsys):
    """torch.save turns a write that fills the disk half way into a RuntimeError: it was an internal error, and the
    partial file stayed in the cache folder, filling it."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FillsUp(real_fdopen(*a, **k), room=2000))
    ds = load_folder(csv_folder, RES, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.undo()
    assert len(ds) == 5
    err = capsys.readouterr().err
    assert "could not write the cache" in err and "the disk is full" in err
    assert not list((tmp_path / "cache").iterdir())


def test_the_partial_cache_files_of_killed_writes_are_removed_by_a_later_write(tmp_path, csv_folder, capsys):
    """kill -9 (or the OOM killer) during a cache write left its hidden temporary file, as large as the dataset, in
    the cache folder for good: a later write removes those untouched for an hour, not those being written now."""
    from gankit.data import cache

    (tmp_path / "cache").mkdir()
    old, fresh = tmp_path / "cache" / ".big-64px-0a1b.pt.k9x2mm_q.tmp", tmp_path / "cache" / ".other.pt.zz11yy22.tmp"
    for path in (old, fresh):
        path.write_bytes(b"x" * 1000)
    then = time.time() - cache.ABANDONED_SECONDS - 60
    os.utime(old, (then, then))
    load_folder(csv_folder, RES, cache_dir=tmp_path / "cache", progress=False)
    assert not old.exists() and fresh.exists()
    assert f"removed 1 partial cache file (0 MiB) that writes stopped by a kill left in {tmp_path / 'cache'}" in \
        capsys.readouterr().err


def test_the_partial_cache_file_of_a_killed_write_is_removed_by_a_later_read(tmp_path, csv_folder, capsys):
    """The run after the kill wrote the cache (that kill's file was too recent to remove) and every run after it only
    read it: the partial file, as large as the dataset, stayed for good. A read an hour on removes it too."""
    from gankit.data import cache

    load_folder(csv_folder, RES, cache_dir=tmp_path / "cache", progress=False)
    old = tmp_path / "cache" / ".shapes-16px-0a1b.pt.k9x2mm_q.tmp"
    old.write_bytes(b"x" * 1000)  # what the kill left
    then = time.time() - cache.ABANDONED_SECONDS - 60
    os.utime(old, (then, then))
    capsys.readouterr()
    load_folder(csv_folder, RES, cache_dir=tmp_path / "cache", progress=False)
    assert not old.exists() and "removed 1 partial cache file" in capsys.readouterr().err


def test_cache_dir_comes_from_the_environment(tmp_path, csv_folder, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "env-cache"))
    load_folder(csv_folder, RES, progress=False)
    assert len(list((tmp_path / "env-cache").glob("shapes-16px-*.pt"))) == 1


# ----------------------------------------------------------------------------- built-in MNIST


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist-cache")


def test_builtin_mnist(mnist_cache):
    ds = load_builtin("mnist", 32, cache_dir=mnist_cache)
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (5000, 1, 32, 32)
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.labels.dtype == torch.int64
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert (ds.images[:, :, :2] == 0).all() and (ds.images[:, :, :, -2:] == 0).all()  # 2 px black pad
    assert ds.images.max() == 255 and ds.name == "mnist" and len(ds.files) == 5000

    big = load_dataset("builtin:mnist", 64, cache_dir=mnist_cache)
    assert tuple(big.images.shape) == (5000, 1, 64, 64) and big.images.dtype == torch.uint8
    assert big.key != ds.key and torch.equal(big.labels, ds.labels)
    # the resize keeps the digits: the mean brightness barely changes
    assert abs(big.images.float().mean() - ds.images.float().mean()) < 2
    small = load_dataset(None, 16, cache_dir=mnist_cache)
    assert tuple(small.images.shape) == (5000, 1, 16, 16)


def test_builtin_errors(mnist_cache):
    with pytest.raises(DataError, match="unknown built-in dataset 'cifar'.*mnist"):
        load_dataset("builtin:cifar", 32, cache_dir=mnist_cache)
    with pytest.raises(DataError, match="own labels"):
        load_dataset(None, 32, labels="folders", cache_dir=mnist_cache)


# ----------------------------------------------------------------------------- the real pokemon folder


@pytest.mark.skipif(not (POKEMON / "types.csv").is_file(), reason="shared pokemon dataset not present")
def test_pokemon_with_type_labels(tmp_path, monkeypatch):
    kwargs = dict(labels=str(POKEMON / "types.csv"), label_column="type1", cache_dir=tmp_path, progress=False)
    started = time.perf_counter()
    first = load_dataset(str(POKEMON), 64, **kwargs)
    first_s = time.perf_counter() - started

    def refuse(path, resolution):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(folder, "_decode_file", refuse)  # the second load reads the cache, decoding nothing
    started = time.perf_counter()
    ds = load_dataset(str(POKEMON), 64, **kwargs)
    second_s = time.perf_counter() - started
    print(f"pokemon 64px: first load {first_s:.2f} s, second {second_s:.3f} s")
    assert tuple(ds.images.shape) == (1016, 3, 64, 64) and ds.images.dtype == torch.uint8
    assert len(ds.class_names) == 18 and ds.labels.shape == (1016,)
    assert ds.key == first.key and ds.name == "pokemon" and torch.equal(ds.images, first.images)
    # transparent backgrounds were composited on white: the corners are white
    assert (ds.images[:, :, 0, 0] == 255).float().mean() > 0.95


def test_downscaling_averages_detail_instead_of_aliasing_it(tmp_path):
    """A 1 px black and white checkerboard brought down 8x must come out grey (an antialiasing filter, LANCZOS),
    not black or white pixels picked from it; every other fixture is flat colour, which any filter keeps."""
    (tmp_path / "d").mkdir()
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).convert("RGB").save(tmp_path / "d" / "board.png")
    images = load_folder(tmp_path / "d", 8, cache_dir=tmp_path / "c", progress=False).images.float()
    assert abs(images.mean().item() - 127.5) < 20 and images.std().item() < 20


def test_a_file_rewritten_with_the_same_size_is_decoded_again(tmp_path):
    """The decode cache is keyed by each file's size and modification time: an image replaced by another of the
    same byte size (a BMP of another colour) must not be read back from the cache."""
    d = tmp_path / "d"
    d.mkdir()
    p = d / "a.bmp"
    p.write_bytes(image_bytes((255, 0, 0), (16, 16), "BMP"))
    os.utime(p, ns=(1_700_000_000 * 10**9,) * 2)
    red = load_folder(d, 16, cache_dir=tmp_path / "c", progress=False)
    p.write_bytes(image_bytes((0, 0, 255), (16, 16), "BMP"))
    os.utime(p, ns=(1_700_000_100 * 10**9,) * 2)
    blue = load_folder(d, 16, cache_dir=tmp_path / "c", progress=False)
    assert red.images[0, 0].float().mean() > 200 and blue.images[0, 2].float().mean() > 200
    assert blue.key != red.key


def test_a_large_jpeg_decoded_at_a_reduced_scale_is_close_to_a_full_decode(tmp_path):
    """JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale that still leaves at least twice the resolution (much
    faster for photos), so the resized image must stay close to the full decode's."""
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    (tmp_path / "d").mkdir()
    Image.fromarray(noise).resize((512, 512), Image.Resampling.BICUBIC).save(tmp_path / "d" / "big.jpg", quality=95)
    got = load_folder(tmp_path / "d", 64, cache_dir=tmp_path / "c", progress=False).images[0]
    with Image.open(tmp_path / "d" / "big.jpg") as im:
        full = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(got.permute(1, 2, 0).numpy().astype(np.float64) - full).mean() < 4


def test_a_file_rewritten_in_place_with_the_same_size_is_decoded_again(tmp_path):
    """An image edited in place (same name and size: a BMP of the same dimensions) has a new mtime: not the cache."""
    images = tmp_path / "images"
    images.mkdir()

    def put(name, colour, second):
        Image.new("RGB", (16, 16), colour).save(images / name)
        os.utime(images / name, ns=(second * 10**9, second * 10**9))

    put("a.bmp", (255, 0, 0), 1_700_000_000)
    put("b.bmp", (255, 0, 0), 1_700_000_000)
    red = load_folder(images, RES, cache_dir=tmp_path / "cache", progress=False)
    put("b.bmp", (0, 0, 255), 1_700_000_100)  # the same size, a later mtime
    blue = load_folder(images, RES, cache_dir=tmp_path / "cache", progress=False)
    assert red.images[1, 0].float().mean() > 200 and blue.images[1, 2].float().mean() > 200
    assert blue.key != red.key


def test_a_file_replaced_with_its_old_date_kept_is_decoded_again(tmp_path):
    """`cp -p new.bmp images/b.bmp` (or `touch -r`) keeps the name, size and mtime of the file it replaces: the cache
    gave back the old pixels. Its change time is new."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(images / "b.bmp")
    old = images.joinpath("b.bmp").stat()
    red = load_folder(images, RES, cache_dir=tmp_path / "cache", progress=False)
    Image.new("RGB", (16, 16), (0, 0, 255)).save(images / "b.bmp")
    os.utime(images / "b.bmp", ns=(old.st_atime_ns, old.st_mtime_ns))
    assert images.joinpath("b.bmp").stat().st_size == old.st_size
    blue = load_folder(images, RES, cache_dir=tmp_path / "cache", progress=False)
    assert red.images[0, 0].float().mean() > 200 and blue.images[0, 2].float().mean() > 200


def test_a_cache_file_is_readable_by_the_others_sharing_the_cache(tmp_path, csv_folder):
    load_folder(csv_folder, RES, cache_dir=tmp_path / "cache", progress=False)
    (cache_file,) = (tmp_path / "cache").glob("*.pt")
    assert cache_file.stat().st_mode & 0o777 == 0o644


SHARED_POKEMON = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pokemon" / "images"


@pytest.mark.skipif(not (SHARED_POKEMON / "eternatus.png").is_file(), reason="needs ../shared/datasets/pokemon")
def test_an_embedded_colour_profile_is_converted_to_srgb(tmp_path):
    """An image whose ICC profile is not sRGB (Adobe RGB here, as 2 of the shared pokemon; a phone's Display P3) was
    read as if it were sRGB: its red (200, 50, 50) is sRGB's (232, 46, 46). An sRGB profile, a damaged one and none
    leave the pixels as they are; the alpha of an RGBA image stays (composited on white)."""
    from PIL import ImageCms

    with Image.open(SHARED_POKEMON / "eternatus.png") as im:
        adobe = im.info["icc_profile"]
    assert "Adobe RGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(adobe)))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    root = tmp_path / "d"
    save(root / "adobe.png", solid((200, 50, 50)), icc_profile=adobe)
    save(root / "adobe_rgba.png", solid((200, 50, 50, 255), mode="RGBA"), icc_profile=adobe)
    save(root / "adobe.jpg", solid((200, 50, 50)), icc_profile=adobe, quality=100)
    save(root / "srgb.png", solid((200, 50, 50)), icc_profile=srgb)
    save(root / "damaged.png", solid((200, 50, 50)), icc_profile=b"not a profile")
    save(root / "none.png", solid((200, 50, 50)))
    ds = load_folder(root, RES, cache_dir=tmp_path / "cache")
    for name in ("adobe.png", "adobe_rgba.png", "adobe.jpg"):
        assert all(abs(g - e) <= 2 for g, e in zip(pixel(ds, name), (232, 46, 46))), (name, pixel(ds, name))
    for name in ("srgb.png", "damaged.png", "none.png"):
        assert pixel(ds, name) == (200, 50, 50), name


def test_a_fully_transparent_image_is_skipped_and_named(tmp_path):
    """An image that shows nothing (alpha 0 everywhere, whatever its colour channels hold) became a blank white square
    to learn from; it is skipped and named, as a damaged file is."""
    root = tmp_path / "d"
    save(root / "a.png", solid((255, 0, 0)))
    save(root / "b.png", solid((255, 0, 0)))
    save(root / "blank.png", solid((10, 200, 30, 0), mode="RGBA"))
    save(root / "blank_la.png", solid((100, 0), mode="LA"))
    ds = load_folder(root, RES, cache_dir=tmp_path / "cache")
    assert ds.files == ["a.png", "b.png"]
    assert dict(ds.skipped) == {"blank.png": "fully transparent", "blank_la.png": "fully transparent"}
