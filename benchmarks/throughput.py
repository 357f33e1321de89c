"""Training throughput: gankit's training iteration against the plain reference DCGAN step, same run.

    python benchmarks/throughput.py                                   # DCGAN-64, batch 64, this machine
    python benchmarks/throughput.py --resolutions 32,64,128 --families dcgan,wgan_gp,acgan --json perf.json

For each resolution it prints real images/s of the reference step (benchmarks/reference_dcgan.py:
fp32 NCHW as written from the DCGAN paper, and under bf16 autocast where the hardware computes bf16
natively; its best setting is the faster of the two), then for each gankit model family its images/s,
the ratio to the reference (fp32 and best), the FLOPs of one iteration counted with
torch.utils.flop_counter.FlopCounterMode, the achieved FLOP/s and that as a fraction of the peak
matmul FLOP/s measured in the same run (a large square matmul, fp32 and bf16). Everything is timed
after warm-up iterations, on synthetic uint8 images already on the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_dcgan import ReferenceDCGAN  # noqa: E402

# Config layers of each family, on top of the defaults (DCGAN paper widths, batch from --batch).
FAMILIES: dict[str, dict] = {
    "dcgan": {},
    "wgan_gp": {"train": {"loss": "wgan_gp", "strategy": "critic", "n_critic": 1}, "model": {"d_norm": "layer"}},
    "acgan": {"model": {"arch": "acgan"}},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(step, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return time.perf_counter() - t


def peak_matmul(dtype: torch.dtype, device: torch.device, n: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul: the practical peak this device reaches."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def count_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def bench_reference(resolution: int, batch: int, iters: int, warmup: int, dtype=None) -> float:
    torch.manual_seed(0)
    ref = ReferenceDCGAN(resolution=resolution, autocast_dtype=dtype)
    real = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    return batch * iters / _time(lambda: ref.step(real), iters, warmup, torch.device("cpu"))


def make_trainer(family: str, resolution: int, batch: int, precision: str, device: str, run_dir: Path):
    from gankit.config import build_config
    from gankit.data import ImageSet
    from gankit.train import Trainer, finalize_config

    layer = {"data": {"resolution": resolution, "flip": True, "path": "bench"},
             "train": {"batch_size": batch, "precision": precision, "device": device},
             "log": {"tensorboard": False, "progress": False}}
    cfg = build_config(layer, FAMILIES[family])
    images = torch.randint(0, 256, (batch * 8, 3, resolution, resolution), dtype=torch.uint8)
    labels = torch.arange(len(images)) % 4
    data = ImageSet(images=images, labels=labels, class_names=["a", "b", "c", "d"], files=[], name="bench", key="bench")
    cfg = finalize_config(cfg, data)
    return Trainer(cfg, data, run_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", default="64")
    ap.add_argument("--families", default="dcgan", help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", default="auto", help="gankit precision: auto | fp32 | bf16")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the reference always runs on the CPU here)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from gankit.device import cpu_has_bf16, resolve_device, resolve_precision

    device = resolve_device(args.device)
    amp = resolve_precision(args.precision, device)
    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
                     "torch": torch.__version__, "batch": args.batch, "precision": str(amp or "fp32"), "rows": []}
    peak32 = peak_matmul(torch.float32, device)
    peak16 = peak_matmul(torch.bfloat16, device, seconds=1.0)
    results.update(peak_fp32_flops=peak32, peak_bf16_flops=peak16)
    print(f"peak matmul: fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s"
          f"{'' if cpu_has_bf16() or device.type == 'cuda' else ' (bf16 emulated on this CPU)'}")
    peak = peak16 if amp == torch.bfloat16 else peak32
    with tempfile.TemporaryDirectory() as tmp:
        for res in map(int, args.resolutions.split(",")):
            ref32 = bench_reference(res, args.batch, args.iters, args.warmup)
            ref_best, ref_best_name = ref32, "fp32"
            if cpu_has_bf16():
                ref16 = bench_reference(res, args.batch, args.iters, args.warmup, torch.bfloat16)
                if ref16 > ref_best:
                    ref_best, ref_best_name = ref16, "bf16"
            print(f"\n{res}px  reference DCGAN step: {ref32:8.1f} img/s fp32, best {ref_best:8.1f} img/s ({ref_best_name})")
            for fam in args.families.split(","):
                trainer = make_trainer(fam, res, args.batch, args.precision, str(device), Path(tmp) / f"{fam}{res}")
                flops = count_flops(trainer.train_iteration)
                for _ in range(args.warmup):
                    trainer.train_iteration()
                start = trainer.cursor
                seconds = _time(trainer.train_iteration, args.iters, 0, device)
                ips = args.batch * (trainer.cursor - start) / seconds  # real images through D per second
                achieved = flops * args.iters / seconds
                row = {"resolution": res, "family": fam, "img_s": ips, "reference_fp32_img_s": ref32,
                       "reference_best_img_s": ref_best, "reference_best_setting": ref_best_name,
                       "ratio_fp32": ips / ref32, "ratio_best": ips / ref_best, "flops_per_iter": flops,
                       "flop_s": achieved, "fraction_of_peak": achieved / peak}
                results["rows"].append(row)
                print(f"  gankit {fam:8s} {ips:8.1f} img/s  x{ips / ref32:.2f} vs fp32 ref, x{ips / ref_best:.2f} vs best"
                      f"  {flops / 1e9:6.1f} GFLOP/iter  {achieved / 1e9:6.1f} GFLOP/s = {100 * achieved / peak:4.1f}% of peak")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
