"""Checkpoints and shared weights, written atomically and read safely.

- Every file is written to a temporary name in the same folder, flushed to disk, then renamed over
  the target (`os.replace` is atomic), so a kill at any moment leaves either the old or the new file.
- Checkpoints are read with `torch.load(weights_only=True)`: a file carrying a pickled payload
  (arbitrary code) is refused, never executed.
- `generator.safetensors` holds only the generator's tensors plus the run's config as metadata:
  the format to share with strangers.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.errors import RunError


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def save_checkpoint(state: dict, path: Path) -> None:
    _atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`; refuse pickled code and explain broken files."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint '{path}' not found")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        if "unsupported global" in str(e).lower():  # the file names a Python callable: code, not tensors
            raise RunError(
                f"refusing to load '{path}': it contains pickled Python objects (possible code), not just tensors; "
                "only load checkpoints written by gankit, or share generator.safetensors instead"
            ) from None
        raise RunError(f"checkpoint '{path}' is unreadable ({type(e).__name__}): it may be truncated or corrupt") from None


def save_generator(state_dict: dict[str, torch.Tensor], config: dict, path: Path) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"gankit_config": json.dumps(config)})
    atomic_write_bytes(path, data)


def load_generator(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise RunError(f"'{path}' is not a readable safetensors file ({type(e).__name__}): re-export it from its run") from None
    if "gankit_config" not in meta:
        raise RunError(f"'{path}' has no gankit config in its metadata: it was not written by gankit")
    return tensors, json.loads(meta["gankit_config"])
