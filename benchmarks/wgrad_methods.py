"""oneDNN's convolution weight gradient against gankit's im2col GEMM, layer by layer (CPU).

For each convolution of gankit's generator and discriminator at one resolution and batch, times the two ways
`gankit.models.layers._CpuConv` can compute its weight gradient: oneDNN's (`convolution_backward` asked for the
weight alone) and `conv2d_weight_grad` (the im2col matrix in chunks, one GEMM per chunk). Prints each one's
milliseconds and GFLOP/s and the ratio; `train.gemm_wgrad` takes the GEMM on maps of at most 8 px and, on larger
ones, whichever of the two its first step times as the faster (`_gemm_wgrad_wins`), which is this table's choice
up to timing noise.

    python benchmarks/wgrad_methods.py --resolution 300 --batch 16
    python benchmarks/wgrad_methods.py --resolution 128 --threads 1 --precision bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import at_least, run  # noqa: E402
from throughput import FAMILIES  # noqa: E402


def seconds(f, repeats: int) -> float:
    """Best of `repeats` calls of f, after one untimed call."""
    f()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def layer_shapes(family: str, resolution: int, batch: int) -> list[tuple[str, torch.nn.Module, tuple, tuple]]:
    """(name, layer, input shape, output shape) of every strided or transposed convolution of G and D."""
    from gankit.config import build_config
    from gankit.models import build_discriminator, build_generator
    from gankit.models.layers import ConvTranspose2d, Conv2d

    conditional = FAMILIES[family].get("model", {}).get("arch") == "acgan"
    cfg = build_config({"data": {"resolution": resolution}}, FAMILIES[family],
                       {"model": {"channels": 3, "num_classes": 4 if conditional else 0}})
    shapes = []
    labels = torch.zeros(batch, dtype=torch.long) if cfg.model.num_classes else None
    for net_name, net, inputs in (("G", build_generator(cfg), (torch.randn(batch, cfg.model.nz), labels)),
                                  ("D", build_discriminator(cfg), (torch.randn(batch, 3, resolution, resolution),))):
        hooks = [m.register_forward_hook(lambda m, i, o, name=f"{net_name}.{n}": shapes.append(
                     (name, m, tuple(i[0].shape), tuple(o.shape))))
                 for n, m in net.named_modules() if isinstance(m, (Conv2d, ConvTranspose2d))]
        with torch.no_grad():
            net.eval()(*inputs)
        for h in hooks:
            h.remove()
    # the 1x1 -> 4x4 first layer and the whole-map heads are matrix products already
    return [s for s in shapes if s[2][2] > 1 and s[3][2] > 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=at_least(16), default=64, help="image size in pixels (default: 64)")
    ap.add_argument("--batch", type=at_least(1), default=64, help="batch size (default: 64)")
    ap.add_argument("--family", default="dcgan", choices=list(FAMILIES), help="gankit model family (default: dcgan)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="(default: fp32)")
    ap.add_argument("--threads", type=at_least(1), help="torch.set_num_threads (default: PyTorch's choice)")
    ap.add_argument("--repeats", type=at_least(1), default=3, help="timed calls of each method; the best counts")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from gankit.models.layers import conv2d_weight_grad

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    cl = torch.channels_last
    print(f"{args.family} {args.resolution}px, batch {args.batch}, {args.precision}, {torch.get_num_threads()} threads")
    print(f"{'layer':<18} {'input':>20} {'output':>20} {'GFLOP':>6} {'oneDNN ms':>10} {'GEMM ms':>8} "
          f"{'oneDNN GF/s':>11} {'GEMM GF/s':>9}  oneDNN/GEMM")
    total = {"onednn": 0.0, "gemm": 0.0, "best": 0.0}
    for name, m, in_shape, out_shape in layer_shapes(args.family, args.resolution, args.batch):
        transposed = m.transposed
        x = torch.randn(in_shape).to(dtype=dtype, memory_format=cl)
        grad_out = torch.randn(out_shape).to(dtype=dtype, memory_format=cl)
        weight = m.weight.detach().to(dtype=dtype, memory_format=cl)
        inp, out = (grad_out, x) if transposed else (x, grad_out)
        flop = 2 * out.numel() * inp.shape[1] * weight.shape[2] * weight.shape[3]
        with torch.no_grad():
            onednn = seconds(lambda: torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, m.stride, m.padding, (1, 1), transposed, (0, 0), 1,
                (False, True, False)), args.repeats)
            gemm = seconds(lambda: conv2d_weight_grad(inp, out, weight.shape[2:], m.stride, m.padding), args.repeats)
        total["onednn"] += onednn
        total["gemm"] += gemm
        total["best"] += min(onednn, gemm)
        print(f"{name:<18} {str(in_shape):>20} {str(out_shape):>20} {flop / 1e9:6.2f} {1e3 * onednn:10.1f} "
              f"{1e3 * gemm:8.1f} {flop / onednn / 1e9:11.0f} {flop / gemm / 1e9:9.0f}  x{onednn / gemm:.2f}",
              flush=True)
    print(f"all layers: oneDNN {1e3 * total['onednn']:.0f} ms, GEMM {1e3 * total['gemm']:.0f} ms, "
          f"the faster of each {1e3 * total['best']:.0f} ms")


if __name__ == "__main__":
    run(main)
