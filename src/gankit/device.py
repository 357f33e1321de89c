"""Where and how numbers are computed: device, autocast precision, memory format."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from gankit import console
from gankit.config import is_device_name
from gankit.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if not is_device_name(name):
        raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_is_available():
            _say_mps_may_be_faster()
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA GPU is available here: use --device cpu or auto")
    if name == "mps" and not mps_is_available():
        instead = "cuda" if torch.cuda.is_available() else "cpu"
        raise ConfigError(f"device 'mps': no Apple GPU (MPS) is available here: use --device {instead} or auto")
    return torch.device(name)


def mps_is_available() -> bool:
    """True on a Mac whose PyTorch runs on its Apple GPU (Metal Performance Shaders)."""
    return torch.backends.mps.is_available()


@functools.lru_cache(maxsize=1)
def _say_mps_may_be_faster() -> None:
    """--device auto keeps to the CPU on a Mac (gankit is not tested on MPS): said once per process."""
    console.info("an Apple GPU (MPS) is available: --device mps may be faster than the CPU that --device auto picked "
                 "(gankit is not tested on MPS)")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "fp32":
        return None
    if name == "fp16":
        if device.type != "cuda":
            instead = "fp32" if device.type == "mps" else "bf16 or fp32"
            raise ConfigError(f"train.precision fp16 needs a CUDA GPU: use {instead} on {device.type.upper()}")
        return torch.float16
    if name == "bf16":
        if device.type == "mps" and not mps_has_bf16():
            raise ConfigError("train.precision bf16 on MPS needs macOS 14 or newer: use fp32 (or --precision auto)")
        if device.type == "cpu" and not cpu_has_bf16():
            console.warn("train.precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so it is emulated "
                         "and several times slower than fp32; --precision auto picks fp32 here")
        return torch.bfloat16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":  # untested there: plain fp32 unless bf16 is asked for
        return None
    return torch.bfloat16 if cpu_has_bf16() else None


def mps_has_bf16() -> bool:
    """True where MPS computes bf16 (macOS 14 or newer)."""
    return torch.backends.mps.is_macos_or_newer(14, 0)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(channels_last: bool | None, device: torch.device, compiled: bool = False) -> torch.memory_format:
    """NHWC unless turned off: faster convolutions with cuDNN, and with oneDNN on CPU (measured on the
    DCGAN family at 32-128 px, bf16 and fp32: +3 to +17 % images/s; see benchmarks/throughput.py).

    Except by default for models torch.compile'd on CUDA: there Inductor's compiled backward of a
    transposed conv on a 1x1 input (G's first layer) asserts on the strides of the weight gradient
    cuDNN returns in NHWC (torch 2.11 on an H200, benchmarks/gpu_check.sh), and NCHW runs."""
    if channels_last is None:
        channels_last = device.type == "cpu" or (device.type == "cuda" and not compiled)
    return torch.channels_last if channels_last else torch.contiguous_format


def set_deterministic(flag: bool) -> None:
    """train.deterministic: the same seed gives bit-identical weights, also across an interrupt and resume.

    Turns on PyTorch's deterministic algorithms (an op without one raises instead of silently
    varying), and on CUDA pins cuDNN to deterministic kernels with autotuning off and gives cuBLAS
    the fixed workspace it needs. Costs some speed, so it is off by default; `flag=False` restores
    PyTorch's defaults except cuDNN's autotuning, which it turns on (a GAN step's shapes never change,
    so cuDNN times its kernels once per shape and keeps the fastest; no effect on a CPU).
    Call it before the models are built.
    """
    torch.use_deterministic_algorithms(flag)
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = not flag
    if flag:
        # cuBLAS reads this when its first handle is created; ":4096:8" is the documented setting.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def deterministic_kept():
    """Inside it, `set_deterministic` may switch PyTorch's process-wide flags as a run asks; as it ends they are put
    back as they were: a training called from Python (a notebook) must not leave the next cell's own model on
    deterministic algorithms (an op without one raises), nor turn off those its user chose."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]
