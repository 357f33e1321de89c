"""Training throughput: gankit's training iteration against the plain reference DCGAN step, same run.

    python benchmarks/throughput.py                                   # DCGAN-64, batch 64, this machine
    python benchmarks/throughput.py --resolutions 32,64,128 --families dcgan,wgan_gp,acgan --json perf.json
    python benchmarks/throughput.py --set train.channels_last=true    # any gankit config override
    python benchmarks/throughput.py --profile dcgan                   # where the time of one iteration goes
    python benchmarks/throughput.py --profile dcgan --ops             # ... one aten call at a time, with layouts and page faults
    python benchmarks/throughput.py --config configs/fast_small_data.yaml   # a preset's own step
    python benchmarks/throughput.py --gemm-ceiling                    # what the step's GEMM shapes allow

For each resolution it prints real images/s of the reference step (benchmarks/reference_dcgan.py:
fp32 NCHW as written from the DCGAN paper; under bf16 autocast where the hardware computes bf16
natively; and in that precision with its models and batch in channels_last (NHWC); its best setting is
the fastest of them), then for each gankit model family its images/s,
the ratio to the reference (fp32 and best), the FLOPs of one iteration counted with
torch.utils.flop_counter.FlopCounterMode, the achieved FLOP/s and that as a fraction of the peak
GEMM FLOP/s measured in the same run (fp32 and bf16; the faster of a large square matmul and
the same GEMM as a 1x1 convolution). The ceiling in
brackets is the ratio to the reference's best that the same FLOPs would give at 100% of that peak:
no implementation of the same algorithm can beat it. With `--gemm-ceiling`, each row also gives the
fraction of peak the step would reach if each of its products ran at the BLAS's speed for its own
shape and nothing else took time (benchmarks/gemm_ceiling.py), and its slowest shapes.

Timing is robust to a shared machine: after warm-up, every contender of a resolution (each reference
setting, each gankit family) is timed in turn for `--iters` iterations, and this is
repeated for `--rounds` rounds; each contender's figure is its best round. A contender slowed by a
neighbour's burst in one round is not slowed in all of them, and every ratio compares contenders
measured minutes apart at most. The ratio to the reference's best is also given between median
rounds: a contender whose rounds vary more (the reference's bf16 step does, by up to 15%) gains
more from best-of-rounds. Images are synthetic uint8 already on the device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import at_least, number_list, run, writable_file, write_json  # noqa: E402
from gemm_ceiling import gemm_ceiling, seconds_per_call, sync  # noqa: E402
from reference_dcgan import ReferenceDCGAN  # noqa: E402

# Config layers of each family, on top of the defaults (DCGAN paper widths, batch from --batch).
FAMILIES: dict[str, dict] = {
    "dcgan": {},
    "wgan_gp": {"train": {"loss": "wgan_gp", "strategy": "critic", "n_critic": 1}, "model": {"d_norm": "layer"}},
    "acgan": {"model": {"arch": "acgan"}},
}


class PeakMatmul:
    """FLOP/s of a large GEMM: the practical peak of this device. Two kernels of the same 2*n^3 FLOPs are
    probed, a square matmul (the BLAS: MKL or oneDNN on a CPU, cuBLAS on a GPU) and a 1x1 convolution in
    channels_last (oneDNN's or cuDNN's own GEMM), and the faster counts: on some CPUs one library is far
    from the hardware's limit (MKL's fp32 GEMM on AMD runs at ~half of oneDNN's), and a "peak" that a
    convolution can beat would be no ceiling. Measured in short windows interleaved with the training
    steps (`time_round`); the best window counts."""

    def __init__(self, dtype: torch.dtype, device: torch.device, n: int | None = None,
                 kernels: tuple[str, ...] = ("matmul", "conv1x1")):
        n = n or (8192 if device.type == "cuda" else 2048)  # a GPU needs a larger product (2048^3: ~20 us on an H100)
        self.device, self.n = device, n
        self.a = torch.randn(n, n, device=device, dtype=dtype)
        self.b = torch.randn(n, n, device=device, dtype=dtype)
        # the same GEMM as a convolution: n pixels (n/32 x 32) of n channels times an n x n 1x1 kernel
        self.x = torch.randn(1, n, n // 32, 32, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        self.w = torch.randn(n, n, 1, 1, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        self.by_kernel = {kernel: 0.0 for kernel in kernels}
        self.time_round()

    @property
    def flop_s(self) -> float:
        return max(self.by_kernel.values())

    def time_round(self, seconds: float = 0.3) -> None:
        for kernel, op in (("matmul", lambda: self.a @ self.b),
                           ("conv1x1", lambda: torch.nn.functional.conv2d(self.x, self.w))):
            if kernel not in self.by_kernel:
                continue
            op()  # a first call may pick or JIT its kernel
            flop_s = 2 * self.n**3 / seconds_per_call(op, self.device, seconds / 2)
            self.by_kernel[kernel] = max(self.by_kernel[kernel], flop_s)


class _TotalOnly:
    """Stands in for FlopCounterMode's per-module tracker, whose autograd hooks torch.autograd.grad (the
    WGAN-GP gradient penalty) rejects; every FLOP is then counted under "Global", all we report."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


def count_flops(step) -> int:
    """FLOPs of one call of `step` (forward and backward), counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _TotalOnly()
    with counter:
        step()
    return counter.get_total_flops()


class Contender:
    """Something with a training step: times it, keeps its best seconds per iteration."""

    def __init__(self, name: str, step, device: torch.device, images_per_step, amp: torch.dtype | None,
                 counted_step=None):
        self.name, self.step, self.device, self.images_per_step, self.amp = name, step, device, images_per_step, amp
        self.best = float("inf")
        self.rounds: list[float] = []  # seconds per iteration of each timed round
        step()  # a first call picks kernels and times a tuned layer's weight-gradient methods (not counted)
        self.flops = count_flops(counted_step or step)

    def warm_up(self, n: int) -> None:
        for _ in range(n):
            self.step()
        sync(self.device)

    def time_round(self, iters: int) -> None:
        sync(self.device)
        t = time.perf_counter()
        for _ in range(iters):
            self.step()
        sync(self.device)
        self.rounds.append((time.perf_counter() - t) / iters)
        self.best = min(self.best, self.rounds[-1])

    @property
    def img_s(self) -> float:
        return self.images_per_step() / self.best

    @property
    def median_img_s(self) -> float:
        """img/s of the median round: steadier than the best when one contender's rounds vary more than another's."""
        return self.images_per_step() / statistics.median(self.rounds)


def reference(resolution: int, batch: int, dtype=None, device: torch.device = torch.device("cpu"),
              channels_last: bool = False) -> Contender:
    """The reference step as written (NCHW), or with its models and batch in channels_last, the one-line change a
    user would try next (under bf16 on an AVX512-BF16 CPU it was 4-9% faster at 64 px: it is part of its best)."""
    torch.manual_seed(0)
    ref = ReferenceDCGAN(resolution=resolution, autocast_dtype=dtype, device=device)
    real = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
    if channels_last:
        ref.G.to(memory_format=torch.channels_last)
        ref.D.to(memory_format=torch.channels_last)
        real = real.contiguous(memory_format=torch.channels_last)
    name = f"reference {'bf16' if dtype else 'fp32'}{' NHWC' if channels_last else ''}"
    return Contender(name, lambda: ref.step(real), device, lambda: batch, dtype)


def make_trainer(family: str, resolution: int, batch: int, precision: str, device: str, run_dir: Path,
                 overrides: dict | None = None, config: Path | None = None, n_images: int | None = None):
    """A Trainer on `n_images` (default 8 batches) random uint8 images of 4 classes."""
    from gankit.config import build_config, read_yaml
    from gankit.data import ImageSet
    from gankit.train import Trainer, finalize_config

    layer = {"data": {"resolution": resolution, "flip": True, "path": "bench"},
             "train": {"batch_size": batch, "precision": precision, "device": device},
             "log": {"tensorboard": False, "progress": False}}
    # a preset file first: the benchmark's size, batch and device, then the family and --set, win over it
    cfg = build_config(read_yaml(config) if config else {}, layer, FAMILIES[family], overrides or {})
    images = torch.randint(0, 256, (n_images or batch * 8, 3, resolution, resolution), dtype=torch.uint8)
    labels = torch.arange(len(images)) % 4
    data = ImageSet(images=images, labels=labels, class_names=["a", "b", "c", "d"], files=[], name="bench", key="bench")
    cfg = finalize_config(cfg, data)
    return Trainer(cfg, data, run_dir)


def gankit(trainer, family: str) -> Contender:
    """Real images through D per second: batches consumed per iteration x the (global) batch size."""
    from gankit.models.layers import use_thin_conv

    batch = trainer.cfg.train.batch_size
    state = {"cursor": trainer.cursor, "iters": 0}

    def step():
        trainer.train_iteration()
        state["iters"] += 1

    def images_per_step():
        return batch * (trainer.cursor - state["cursor"]) / max(state["iters"], 1)

    def counted_step():
        """The step with the thin RGB layers as plain convolutions: their 3x3 phase form multiplies zeros
        (gankit.models.layers.thin_conv_transpose2d), which are not work the algorithm needs."""
        nets = (trainer.G_raw, trainer.D_raw)
        for net in nets:
            use_thin_conv(net, False)
        try:
            step()
        finally:
            for net in nets:
                use_thin_conv(net, bool(trainer.cfg.train.thin_conv))

    return Contender(f"gankit {family}", step, trainer.device, images_per_step, trainer.amp_dtype, counted_step)


def profile(trainer, iters: int, rows: int) -> None:
    """torch.profiler table of `iters` iterations (after warm-up), by total self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(2):
        trainer.train_iteration()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    if trainer.device.type != "cuda":  # kineto's start/stop lines and its "gpuGetDeviceCount failed" on a CPU host
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with torch_profile(activities=activities, record_shapes=True) as prof:
        for _ in range(iters):
            trainer.train_iteration()
        sync(trainer.device)
    key = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by=key, row_limit=rows, max_name_column_width=32,
                                                             max_shapes_column_width=90))


def _merged(a: dict, b: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in a.items()}
    for k, v in b.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", type=number_list(int, 16), default=[64],
                    help="comma list of sizes; powers of two 16-1024 with the reference, any 16-1024 without")
    ap.add_argument("--families", default="dcgan", help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--batch", type=at_least(1), default=64, help="batch size (default: 64)")
    ap.add_argument("--iters", type=at_least(1), default=3, help="iterations per timed round")
    ap.add_argument("--rounds", type=at_least(1), default=5, help="timed rounds; each contender's best round counts")
    ap.add_argument("--warmup", type=at_least(0), default=3, help="untimed iterations before the rounds (default: 3)")
    ap.add_argument("--precision", default="auto", help="gankit precision: auto | fp32 | bf16")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (gankit and the reference both run there)")
    ap.add_argument("--config", type=Path, help="a gankit config file (e.g. configs/fast_small_data.yaml) under "
                                                "the families and --set")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="gankit config override KEY=VALUE (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                    help="also time each family with these overrides, as FAMILY/NAME (repeatable), "
                         "e.g. cl:train.channels_last=true")
    ap.add_argument("--threads", type=at_least(1), help="torch.set_num_threads (default: PyTorch's choice)")
    ap.add_argument("--no-reference", action="store_true", help="time gankit only")
    ap.add_argument("--profile", metavar="FAMILY", help="print a torch.profiler table for FAMILY instead of timing")
    ap.add_argument("--ops", action="store_true", help="with --profile on a CPU: time each aten call on its own, with "
                                                       "its inputs' layouts and page faults (benchmarks/op_trace.py)")
    ap.add_argument("--gemm-ceiling", action="store_true",
                    help="also time each step's GEMMs at their own shapes (benchmarks/gemm_ceiling.py)")
    ap.add_argument("--json", type=writable_file, help="also write the results here (not with --profile)")
    args = ap.parse_args()
    for fam in args.families.split(",") + ([args.profile] if args.profile else []):
        if fam not in FAMILIES:
            ap.error(f"unknown family {fam!r}: use {', '.join(FAMILIES)}")
    for res in args.resolutions:
        if res > 1024 or (not args.no_reference and res & (res - 1)):
            ap.error(f"--resolutions {res}: use 16-1024" + ("" if args.no_reference else ", a power of two (the "
                     "reference DCGAN halves the map down to 4x4; --no-reference times gankit alone at any size)"))
    if args.ops and (not args.profile or args.device != "cpu"):
        ap.error("--ops goes with --profile FAMILY on the CPU (a CUDA call returns before its kernel has run)")
    if args.profile and args.json:
        ap.error("--json goes without --profile: the profile prints a table, not JSON (redirect its output instead)")
    for v in args.variant:
        if ":" not in v or not v.partition(":")[0]:
            ap.error(f"--variant {v!r}: write NAME:KEY=VALUE[,KEY=VALUE], e.g. nchw:train.channels_last=false")

    from gankit.config import parse_sets
    from gankit.device import cpu_has_bf16, resolve_device, resolve_precision

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = parse_sets(args.sets)
    device = resolve_device(args.device)
    amp = resolve_precision(args.precision, device)
    native_bf16 = cpu_has_bf16() or device.type == "cuda"
    tmp = tempfile.TemporaryDirectory()
    if args.profile:
        for res in args.resolutions:
            trainer = make_trainer(args.profile, res, args.batch, args.precision, str(device), Path(tmp.name) / "p",
                                   overrides, args.config)
            print(f"{args.profile} {res}px, batch {args.batch}, {amp or 'fp32'}, {torch.get_num_threads()} threads")
            if args.ops:
                from op_trace import trace

                print(trace(trainer.train_iteration, args.iters, 40))
            else:
                profile(trainer, args.iters, 25)
        return

    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
                     "torch": torch.__version__, "batch": args.batch, "precision": str(amp or "fp32"),
                     "config": str(args.config) if args.config else None, "overrides": args.sets,
                     "iters": args.iters, "rounds": args.rounds, "rows": []}
    for res in args.resolutions:
        contenders = [] if args.no_reference else [reference(res, args.batch, device=device)]
        if contenders:  # its best: bf16 where the hardware computes it natively, in either memory format
            half = torch.bfloat16 if native_bf16 else None
            if half is not None:
                contenders.append(reference(res, args.batch, half, device))
            contenders.append(reference(res, args.batch, half, device, channels_last=True))
        refs = list(contenders)
        variants = {"": overrides}
        for v in args.variant:
            name, _, sets = v.partition(":")
            variants["/" + name] = _merged(overrides, parse_sets(sets.split(",") if sets else []))
        for fam in args.families.split(","):
            for suffix, layer in variants.items():
                trainer = make_trainer(fam, res, args.batch, args.precision, str(device),
                                       Path(tmp.name) / f"{fam}{res}{suffix.replace('/', '_')}", layer, args.config)
                contenders.append(gankit(trainer, fam + suffix))
        # the peak is measured in the same rounds as this resolution's steps: the same neighbours' load
        peaks = {None: PeakMatmul(torch.float32, device)}
        if native_bf16 or any(c.amp == torch.bfloat16 for c in contenders):
            # where bf16 is emulated (a CPU without AVX512-BF16/AMX) the BLAS's bf16 matmul runs at well under
            # 1 GFLOP/s, minutes per probe: only oneDNN's 1x1 convolution is probed, and only for a bf16 contender
            peaks[torch.bfloat16] = PeakMatmul(torch.bfloat16, device, kernels=("matmul", "conv1x1") if native_bf16
                                               else ("conv1x1",))
        for c in contenders:
            c.warm_up(args.warmup)
        for _ in range(args.rounds):
            for p in peaks.values():
                p.time_round()
            for c in contenders:
                c.time_round(args.iters)
        ceilings = {c.name: gemm_ceiling(c.step, c.device) for c in contenders} if args.gemm_ceiling else {}
        report(res, contenders, refs, peaks, native_bf16, args.batch, results, ceilings)
    tmp.cleanup()
    if args.json:
        write_json(args.json, results, indent=2)
        print(f"\nwrote {args.json}")


def report(res: int, contenders: list, refs: list, peaks: dict, native_bf16: bool, batch: int, results: dict,
           ceilings: dict | None = None) -> None:
    """Print one resolution's rows (as soon as it is measured) and add them to `results`."""
    bf16 = peaks.get(torch.bfloat16)
    results.setdefault("peaks", []).append({"resolution": res, "fp32_flop_s": peaks[None].flop_s,
                                            "bf16_flop_s": bf16 and bf16.flop_s, "bf16_native": native_bf16,
                                            "fp32_by_kernel": peaks[None].by_kernel,
                                            "bf16_by_kernel": bf16 and bf16.by_kernel})
    kernels = "; ".join(f"{name} " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks[dt].by_kernel.items())
                        for name, dt in (("fp32", None), ("bf16", torch.bfloat16)) if dt in peaks)
    bf16_peak = ("not measured: this CPU has no native bf16 and nothing ran in bf16" if bf16 is None else
                 f"{bf16.flop_s / 1e9:.0f} GFLOP/s{'' if native_bf16 else ' (emulated)'}")
    print(f"\n{res}px, batch {batch}; peak GEMM in the same rounds: fp32 {peaks[None].flop_s / 1e9:.0f} GFLOP/s, "
          f"bf16 {bf16_peak} ({kernels})", flush=True)
    best_ref = max(refs, key=lambda c: c.img_s) if refs else None
    for c in contenders:
        peak = peaks[c.amp].flop_s
        row = {"resolution": res, "name": c.name, "img_s": c.img_s, "flops_per_iter": c.flops,
               "flop_s": c.flops / c.best, "fraction_of_peak": c.flops / c.best / peak,
               "precision": str(c.amp or "fp32").replace("torch.", "")}
        line = f"  {c.name:24s} {c.img_s:8.1f} img/s"
        if refs and c not in refs:
            # the most this iteration's FLOPs allow: every FLOP at the matmul peak
            at_peak = peak / (c.flops / c.images_per_step())
            row.update(ratio_fp32=c.img_s / refs[0].img_s, ratio_best=c.img_s / best_ref.img_s,
                       ratio_best_median=c.median_img_s / max(r.median_img_s for r in refs),
                       reference_best=best_ref.name, ratio_best_at_peak=at_peak / best_ref.img_s)
            line += (f"  x{row['ratio_fp32']:.2f} vs reference fp32, x{row['ratio_best']:.2f} vs its best"
                     f" (median rounds x{row['ratio_best_median']:.2f}; x{row['ratio_best_at_peak']:.2f} at 100% of peak)")
        else:
            line += " " * 91
        results["rows"].append(row)
        print(line + f"  {c.flops / 1e9:6.1f} GFLOP/iter {row['flop_s'] / 1e9:6.1f} GFLOP/s"
                     f" = {100 * row['fraction_of_peak']:3.0f}% of {row['precision']} peak", flush=True)
        if ceilings:
            report_ceiling(ceilings[c.name], c, peak, row)


def report_ceiling(ceiling, c, peak: float, row: dict, rows: int = 5) -> None:
    """The step's GEMMs timed at their own shapes: the fraction of peak they reach together, and the slowest."""
    ranked = ceiling.slowest(len(ceiling.gemms))
    # the step's own FLOPs over the products' time: the phase-form RGB layers run more products (zeros) than they count
    row.update(gemm_ceiling=c.flops / ceiling.total_seconds / peak, gemm_flops=ceiling.flops, gemm_seconds=ceiling.total_seconds,
               gemms=[{"op": g.op, "m": g.m, "k": g.k, "n": g.n, "count": g.count, "seconds": s} for g, s in ranked])
    print(f"    its GEMMs as plain matmuls at their shapes: {ceiling.flops / 1e9:.1f} GFLOP in {1e3 * ceiling.total_seconds:.1f} ms"
          f" (the step: {1e3 * c.best:.1f} ms), {100 * row['gemm_ceiling']:.0f}% of peak; slowest:")
    for g, s in ranked[:rows]:
        print(f"      {g.op:26s} {g.m:7d} x {g.k:5d} x {g.n:5d}{f' x{g.count}' if g.count > 1 else '':5s}"
              f" {1e3 * s:7.2f} ms  {g.flops / s / 1e9:6.0f} GFLOP/s = {100 * g.flops / s / peak:3.0f}% of peak")


if __name__ == "__main__":
    run(main)
