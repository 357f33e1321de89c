"""Image grids from generator output: the per-epoch sample grid and the "same noise, one row per label" figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, PngImagePlugin

from gankit.report._io import atomic_path
from gankit.report.fonts import pil_font

if TYPE_CHECKING:  # torch is imported where a tensor is handled: `gankit compare` reads PADDING and REDUCED_KEY alone,
    import torch  # and importing torch took ~3 s of its start

PADDING = 2
MAX_GRID_ASPECT = 3  # widest full-rectangle layout save_grid prefers to a near-square one with empty cells
# Longest side of the per-epoch grids training writes: a larger one is reduced by a whole factor (64 images at 1000 px:
# 8018 px -> 4009), not its samples' count or noise. `gankit sample --grid` writes the size asked for.
TRAINING_GRID_SIDE = 4096
REDUCED_KEY = "gankit:reduced"  # a reduced grid's PNG text entry: the factor (`gankit compare` sizes grids by their cells)


def save_grid(images: torch.Tensor, path, nrow: int | None = None, max_side: int | None = None,
              captions: list[tuple[str, int]] | None = None) -> Path:
    """Save generator output `images` (N, C, H, W in [-1, 1]) as one PNG grid, atomically.

    `nrow` is the number of images per row (default: `grid_columns`, a full rectangle when one is not too
    elongated). Values outside [-1, 1] are clipped; tensors on any device, with or without grad, are accepted.
    `max_side`: a grid whose longer side is larger is reduced by a whole factor to fit it (`_save_png`).
    `captions`: (text, columns) pairs from the left, written in a band above the columns they span (`_caption_band`).
    Returns the path.
    """
    images = _as_batch(images)
    if nrow is None:
        nrow = grid_columns(images.shape[0])
    grid = _to_pil(_tiled(_to_unit(images), nrow))
    if captions:
        grid = _caption_band(grid, captions, images.shape[-1])
    return _save_png(grid, path, max_side)


def _tiled(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """`images` in `nrow` columns, PADDING px of black around each. torchvision is imported here, not with this module:
    `gankit compare` reads PADDING and REDUCED_KEY alone, and importing torchvision took 2.5 s of its 18 (15 runs)."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=nrow, padding=PADDING, pad_value=0.0)


def grid_columns(n: int, max_aspect: float = MAX_GRID_ASPECT) -> int:
    """Images per row for a grid of `n`: the columns x rows with no empty cell closest to square, when it is at most
    `max_aspect` times wider than tall (3 -> 3 x 1, 10 -> 5 x 2, 64 -> 8 x 8); else the near-square layout whose last
    row is short (7 -> 3 x 3). A near-square layout of 3 or 10 images left black cells (2 x 2, 4 x 3)."""
    best = None
    for rows in range(1, math.isqrt(n) + 1):
        if n % rows == 0 and (n // rows) / rows <= max_aspect:
            best = n // rows  # more rows: closer to square
    return best or math.ceil(math.sqrt(n))


def label_grid(images_by_label: torch.Tensor, labels: list[str], path, max_side: int | None = None) -> Path:
    """Save a grid with one row per label and the label's name at its left, atomically.

    `images_by_label` is (L, K, C, H, W) in [-1, 1]: row `i` holds K samples generated for `labels[i]`,
    typically with the same K noise vectors in every row so each column shows one noise across labels.
    `max_side`: as `save_grid`'s.
    """
    if images_by_label.dim() != 5:
        raise ValueError(f"images_by_label should be (labels, samples, C, H, W), got shape {tuple(images_by_label.shape)}")
    n_labels, k = images_by_label.shape[:2]
    labels = [str(label) for label in labels]
    if len(labels) != n_labels:
        raise ValueError(f"got {len(labels)} label names for {n_labels} rows of images")
    flat = _to_unit(_as_batch(images_by_label.reshape(-1, *images_by_label.shape[2:])))
    grid = _to_pil(_tiled(flat, k))
    h = images_by_label.shape[3]

    drawn = [pil_font(label, _text_size(h)) for label in labels]  # (font, text): DejaVu Sans or a fallback, stand-ins for the rest
    text_w = max((font.getbbox(text)[2] for font, text in drawn), default=0)
    margin = text_w + 2 * 6
    out = Image.new("RGB", (grid.width + margin, grid.height), (0, 0, 0))
    out.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(out)
    for i, (font, text) in enumerate(drawn):
        row_center = PADDING + i * (h + PADDING) + h / 2
        draw.text((margin - 6, row_center), text, fill=(255, 255, 255), font=font, anchor="rm")
    return _save_png(out, path, max_side)


def _text_size(cell: int) -> int:
    """Pixel size of the text written beside or above grid cells `cell` pixels wide."""
    return max(10, min(24, cell // 3))


def _caption_band(grid: Image.Image, captions: list[tuple[str, int]], cell: int) -> Image.Image:
    """`grid` (cells `cell` pixels wide) under a black band of captions: (text, columns) pairs from the left, each
    text centred over the columns it spans (sanity.png: "target" over the first, "generated" over the rest). A text
    that would overlap the one before it moves right; the band widens for one that would then end past the grid."""
    drawn = [pil_font(text, _text_size(cell)) for text, _ in captions]
    placed, column, end = [], 0, 0
    for (font, text), (_, span) in zip(drawn, captions):
        width = font.getlength(text)
        center = PADDING + column * (cell + PADDING) + (span * (cell + PADDING) - PADDING) / 2
        left = max(center - width / 2, end + (6 if placed else PADDING))
        placed.append((left, font, text))
        column, end = column + span, left + width
    top, bottom = min(f.getbbox(t)[1] for _, f, t in placed), max(f.getbbox(t)[3] for _, f, t in placed)
    band = bottom - top + 2 * 4
    out = Image.new("RGB", (max(grid.width, math.ceil(end) + PADDING), grid.height + band), (0, 0, 0))
    out.paste(grid, (0, band))
    draw = ImageDraw.Draw(out)
    for left, font, text in placed:
        draw.text((left, 4 - top), text, fill=(255, 255, 255), font=font)
    return out


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3, 4) or images.shape[0] == 0:
        raise ValueError(f"images should be (N, C, H, W) with C in 1, 3, 4 and N > 0, got shape {tuple(images.shape)}")
    return images


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped, float32 on the CPU."""
    return images.detach().float().cpu().clamp(-1, 1).add(1).div(2)


def _to_pil(grid: torch.Tensor) -> Image.Image:
    import torch

    array = grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _save_png(im: Image.Image, path, max_side: int | None = None) -> Path:
    """Write `im` as a PNG, atomically; one whose longer side is over `max_side` reduced by the smallest whole factor
    that fits it (each pixel the mean of a factor x factor box), the factor kept in its REDUCED_KEY text entry."""
    info = None
    if max_side is not None and max(im.size) > max_side:
        factor = math.ceil(max(im.size) / max_side)
        im = im.reduce(factor)
        info = PngImagePlugin.PngInfo()
        info.add_text(REDUCED_KEY, str(factor))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", pnginfo=info)
    return Path(path)
