"""Where one training iteration's time goes, one aten call at a time (CPU).

torch.profiler's table (`throughput.py --profile`) names operators and shapes; this one also says each input's
memory layout (`cl` channels-last, `c` contiguous, `S(...)` the strides of anything else) and how many page
faults the call took (a fresh output faulted in page by page: the cost the kept im2col buffers of
`gankit.models.layers` remove). Each aten call is timed on its own through a `TorchDispatchMode`, so the
table adds the mode's overhead (~10 us per call) and nothing is overlapped; CPU only (a CUDA call returns
before its kernel runs).

    python benchmarks/throughput.py --profile dcgan --ops --threads 1
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def layout(t: torch.Tensor) -> str:
    """`cl` channels-last (and not also contiguous), `c` contiguous, else `S` and the strides."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return "cl"
    return "c" if t.is_contiguous() else f"S{tuple(t.stride())}"


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class OpTimer(TorchDispatchMode):
    """Times every aten call made under it: rows[(op, inputs)] = [calls, seconds, page faults]."""

    def __init__(self):
        super().__init__()
        self.rows: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, 0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        f0, t0 = _faults(), time.perf_counter()
        out = func(*args, **(kwargs or {}))
        seconds, faults = time.perf_counter() - t0, _faults() - f0
        inputs = " ".join(f"{tuple(a.shape)}{layout(a)}" for a in args if isinstance(a, torch.Tensor))
        row = self.rows[(str(func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else func), inputs)]
        row[0] += 1
        row[1] += seconds
        row[2] += faults
        return out


def trace(step, iters: int, rows: int) -> str:
    """The table of `iters` calls of `step` (after two warm-up calls), by time per iteration."""
    for _ in range(2):
        step()
    timer = OpTimer()
    t0 = time.perf_counter()
    with timer:
        for _ in range(iters):
            step()
    total = (time.perf_counter() - t0) / iters
    ranked = sorted(timer.rows.items(), key=lambda kv: -kv[1][1])
    traced = sum(r[1] for r in timer.rows.values()) / iters
    lines = [f"{total * 1e3:.1f} ms per iteration under the tracer, {traced * 1e3:.1f} ms of it inside aten calls; "
             f"{sum(r[2] for r in timer.rows.values()) // iters} page faults per iteration",
             f"{'ms/iter':>8} {'calls':>5} {'faults':>7}  operator and inputs (layout: cl channels-last, c contiguous)"]
    for (op, inputs), (calls, seconds, faults) in ranked[:rows]:
        lines.append(f"{seconds / iters * 1e3:8.1f} {calls / iters:5.3g} {faults // iters:7d}  {op} {inputs}")
    return "\n".join(lines)
