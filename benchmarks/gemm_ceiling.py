"""How fast a training step's matrix products can be at their own shapes: a ceiling below the peak.

The peak GEMM FLOP/s of `throughput.py` is measured on one large square product. A GAN step is made
of small, thin ones (D's first layer reads 3 channels, G's last writes 3, the 4x4 maps have few
pixels), and no kernel runs those at the square product's speed. This module records every
convolution (forward, input and weight gradient) and matrix product of one step as the GEMM it
amounts to, M x K times K x N with the same FLOPs, times each distinct shape as a plain `torch.mm`
on this device (the faster of the two orientations; for the gradient of a strided convolution's
input, the faster of col2im's one product and the s x s phase products of a direct kernel), and adds up:

    ceiling = step FLOPs / (sum of the GEMM times at their shapes)

as a fraction of the peak. That is what the step would reach if every product ran as fast as the
BLAS runs its shape and everything else (im2col copies, normalisation, activations, optimiser) were
free. It is an estimate, not a proof: a convolution kernel that never forms the GEMM can beat the BLAS on
a thin shape (MKL's fp32 GEMM on AMD CPUs is one such case). What it shows is which products the BLAS itself
runs far below its peak: those thin shapes cap any im2col implementation's fraction of peak.

    python benchmarks/throughput.py --gemm-ceiling            # per row, with the slowest shapes
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


@dataclass(frozen=True)
class Gemm:
    """One product of the step: `count` times [m, k] @ [k, n] in `dtype`; `op` says where it comes from.

    `alt`, when set, is (m, k, n, r): r products [m, k] @ [k, n] that together compute what one product here
    does, with the same FLOPs; the faster of the two forms is timed."""

    op: str
    m: int
    k: int
    n: int
    dtype: torch.dtype
    count: int = 1
    alt: tuple[int, int, int, int] | None = None

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


def _conv_gemms(x_shape, w_shape, out_shape, stride, transposed: bool, groups: int, dtype, parts) -> list[Gemm]:
    """The GEMMs of a convolution's forward / input gradient / weight gradient (`parts` names which), one per group.

    A convolution x [N, C, H, W] * w [O, C, kh, kw] -> [N, O, Ho, Wo] is, per group, im2col(x) [N Ho Wo, C kh kw]
    @ w^T; its input gradient grad_out [N Ho Wo, O] @ w [O, C kh kw] (then col2im) and its weight gradient
    grad_out^T [O, N Ho Wo] @ im2col(x). A transposed convolution is the input gradient of the convolution
    from its output to its input, so its three products are those of that convolution, reordered.
    The input gradient has a second form when the kernel is a multiple of the stride s: s x s products
    [N Ho Wo, O kh kw / s^2] @ [O kh kw / s^2, C], one per phase of the input map (what direct kernels do).
    """
    if transposed:  # out = conv_transpose(x, w): x plays the convolution's grad_out, out its input
        n, c_out_conv, h, w_ = x_shape  # the convolution's output: [N, C, H, W] with C = w_shape[0]
        c_in_conv = out_shape[1]
        pixels, per_pixel = n * h * w_, (c_in_conv // groups) * w_shape[2] * w_shape[3]
        dims = {"forward": (pixels, c_out_conv // groups, per_pixel),   # like the conv's input gradient
                "input grad": (pixels, per_pixel, c_out_conv // groups),  # like the conv's forward
                "weight grad": (c_out_conv // groups, pixels, per_pixel)}
    else:
        n, c, _, _ = x_shape
        o, ho, wo = out_shape[1], out_shape[2], out_shape[3]
        pixels, per_pixel = n * ho * wo, (c // groups) * w_shape[2] * w_shape[3]
        dims = {"forward": (pixels, per_pixel, o // groups),
                "input grad": (pixels, o // groups, per_pixel),
                "weight grad": (o // groups, pixels, per_pixel)}
    kind = "conv_transpose" if transposed else "conv"
    col2im_part = "forward" if transposed else "input grad"  # the convolution's input gradient
    sh, sw = stride
    kh, kw = w_shape[2], w_shape[3]
    alt = None
    if kh % sh == 0 and kw % sw == 0:  # that product phase by phase
        m, k, n = dims[col2im_part]  # [N Ho Wo, O] @ [O, C kh kw]
        alt = (m, k * kh * kw // (sh * sw), n // (kh * kw), sh * sw)
    return [Gemm(f"{kind} {part}", *dims[part], dtype, groups, alt if part == col2im_part else None) for part in parts]


class GemmRecorder(TorchDispatchMode):
    """Records the GEMMs of every convolution and matrix product dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.gemms: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is aten.convolution.default:
            x, w, _, stride, _, _, transposed, _, groups = args
            self.gemms += _conv_gemms(x.shape, w.shape, out.shape, stride, transposed, groups, x.dtype, ["forward"])
        elif func is aten.convolution_backward.default:
            grad_out, x, w = args[:3]
            stride, transposed, groups, mask = args[4], args[7], args[9], args[10]
            parts = [p for p, on in zip(("input grad", "weight grad"), mask[:2]) if on]
            self.gemms += _conv_gemms(x.shape, w.shape, grad_out.shape, stride, transposed, groups, grad_out.dtype, parts)
        elif func in (aten.mm.default, aten.addmm.default):
            a, b = args[-2:]
            self.gemms.append(Gemm("matmul", a.shape[0], a.shape[1], b.shape[1], a.dtype))
        elif func in (aten.bmm.default, aten.baddbmm.default):
            a, b = args[-2:]
            self.gemms.append(Gemm("batched matmul", a.shape[1], a.shape[2], b.shape[2], a.dtype, a.shape[0]))
        return out


def record_gemms(step) -> list[Gemm]:
    """The GEMMs of one call of `step`, identical shapes merged (their counts added)."""
    with GemmRecorder() as rec:
        step()
    merged: dict[tuple, int] = {}
    for g in rec.gemms:
        key = (g.op, g.m, g.k, g.n, g.dtype, g.alt)
        merged[key] = merged.get(key, 0) + g.count
    return [Gemm(op, m, k, n, dtype, count, alt) for (op, m, k, n, dtype, alt), count in merged.items()]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously; a CPU has nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(op, device: torch.device, window: float) -> float:
    """Seconds of one call of `op`, averaged over at least two calls and `window` seconds."""
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - t0 < window:
        op()
        reps += 1
    sync(device)
    return (time.perf_counter() - t0) / reps


def time_gemm(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, seconds: float = 0.05,
              repeats: int = 3) -> float:
    """Seconds of one [m, k] @ [k, n] on `device`: the faster orientation (A B, or (B^T A^T)^T), best of `repeats`."""
    best = math.inf
    for a_shape, b_shape in (((m, k), (k, n)), ((n, k), (k, m))):
        a = torch.randn(a_shape, device=device, dtype=dtype)
        b = torch.randn(b_shape, device=device, dtype=dtype)
        a @ b  # a first call may pick or JIT its kernel
        best = min([best] + [seconds_per_call(lambda: a @ b, device, seconds) for _ in range(repeats)])
    return best


@dataclass
class Ceiling:
    """The step's GEMMs, each with its time at its shape; `fraction(peak)` is the ceiling."""

    gemms: list[Gemm]
    seconds: list[float]  # per Gemm, all its `count` calls

    @property
    def flops(self) -> int:
        return sum(g.flops for g in self.gemms)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)

    def fraction(self, peak_flop_s: float) -> float:
        return self.flops / self.total_seconds / peak_flop_s

    def slowest(self, rows: int) -> list[tuple[Gemm, float]]:
        return sorted(zip(self.gemms, self.seconds), key=lambda gs: -gs[1])[:rows]


_TIMED: dict[tuple, float] = {}  # shapes already timed in this process: steps of one run share most of theirs


def gemm_ceiling(step, device: torch.device) -> Ceiling:
    """Record the GEMMs of one call of `step` and time each at its shape on `device`."""
    def timed(m: int, k: int, n: int, dtype: torch.dtype) -> float:
        key = (min(m, n), k, max(m, n), dtype, str(device))  # both orientations are timed: M x N is N x M
        if key not in _TIMED:
            _TIMED[key] = time_gemm(m, k, n, dtype, device)
        return _TIMED[key]

    gemms = record_gemms(step)
    seconds = []
    for g in gemms:
        t = timed(g.m, g.k, g.n, g.dtype)
        if g.alt:
            m, k, n, phases = g.alt
            t = min(t, timed(m, k, n, g.dtype) * phases)
        seconds.append(t * g.count)
    return Ceiling(gemms, seconds)
