"""Training throughput: gankit's DCGAN step against the plain reference step, in the same run.

    python benchmarks/throughput.py                      # DCGAN-64, batch 64, CPU
    python benchmarks/throughput.py --resolution 32 --iters 30 --json out.json

Prints real images/s of the reference step (fp32, NCHW, as written from the DCGAN paper in
benchmarks/reference_dcgan.py) and of gankit's training iteration for each precision, and the ratio.
Both use the same architecture, batch size and device, and are timed after warm-up iterations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_dcgan import ReferenceDCGAN  # noqa: E402


def _time(step, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - t


def bench_reference(resolution: int, batch: int, iters: int, warmup: int, dtype=None) -> float:
    torch.manual_seed(0)
    ref = ReferenceDCGAN(resolution=resolution, autocast_dtype=dtype)
    real = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    return batch * iters / _time(lambda: ref.step(real), iters, warmup)


def bench_gankit(resolution: int, batch: int, iters: int, warmup: int, precision: str, tmp: Path) -> float:
    from gankit.config import build_config
    from gankit.data import ImageSet
    from gankit.train import Trainer

    cfg = build_config({"data": {"resolution": resolution, "flip": True},
                        "model": {"channels": 3},
                        "train": {"batch_size": batch, "precision": precision, "device": "cpu"},
                        "log": {"tensorboard": False, "progress": False}})
    images = torch.randint(0, 256, (batch * 8, 3, resolution, resolution), dtype=torch.uint8)
    data = ImageSet(images=images, labels=None, class_names=[], files=[], name="bench", key="bench")
    trainer = Trainer(cfg, data, tmp / f"run_{precision}")
    return batch * iters / _time(trainer.train_iteration, iters, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,auto", help="gankit precisions to time (fp32, bf16, auto)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    import tempfile

    from gankit.device import cpu_has_bf16

    torch.set_num_threads(torch.get_num_threads())
    results = {"resolution": args.resolution, "batch": args.batch, "threads": torch.get_num_threads(),
               "cpu_bf16": cpu_has_bf16(), "torch": torch.__version__}
    ref = bench_reference(args.resolution, args.batch, args.iters, args.warmup)
    results["reference_fp32_img_s"] = ref
    print(f"reference DCGAN-{args.resolution} fp32:      {ref:8.1f} img/s")
    with tempfile.TemporaryDirectory() as tmp:
        for prec in args.precisions.split(","):
            ips = bench_gankit(args.resolution, args.batch, args.iters, args.warmup, prec, Path(tmp))
            results[f"gankit_{prec}_img_s"] = ips
            results[f"ratio_{prec}"] = ips / ref
            print(f"gankit    DCGAN-{args.resolution} {prec:5s}:     {ips:8.1f} img/s   ratio {ips / ref:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
