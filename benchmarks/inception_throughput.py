"""Inception feature throughput (the cost of FID/KID): images/s in NCHW, in channels_last with the network's graph as
packaged, and in channels_last as gankit runs it (its `.contiguous()` calls taken out: same features, no layout
round trips).

    python benchmarks/inception_throughput.py                     # CPU, batch 50, 64 px inputs
    python benchmarks/inception_throughput.py --threads 1            # per-core cost, steadier on a busy machine
    python benchmarks/inception_throughput.py --device cuda --batches 10

Times `gankit.metrics.extract_features` on synthetic uint8 images after one warm-up batch; the
images are resized to 299 inside, so the input size barely matters. Prints one line per variant
and, with --json, writes the numbers. Besides images per wall-clock second it reports images
per CPU-second of this process, which stays meaningful on a machine shared with other jobs.

On a CPU it then times gankit's variant again in two fresh processes, PyTorch's allocator with
4 KB pages and with 2 MB transparent huge pages (THP_MEM_ALLOC_ENABLE=0 / 1, which gankit sets
when it is imported; the allocator reads it once per process), and prints their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import gankit  # noqa: F401 - before torch's first allocation: gankit's default THP_MEM_ALLOC_ENABLE
import torch

from _args import at_least, run, writable_file, write_json
from gankit.metrics import InceptionFeatures, extract_features, load_inception, packaged_network, weights_path

VARIANTS = ("contiguous", "channels_last_as_packaged", "channels_last")


def as_packaged(device: str) -> InceptionFeatures:
    """The channels_last extractor with the network's graph as packaged (`.contiguous()` calls included)."""
    return InceptionFeatures(packaged_network(str(weights_path()), device, True), device, channels_last=True)


def measure(device: str, variant: str, batch: int, batches: int, size: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) after one warm-up batch."""
    extractor = (as_packaged(device) if variant == "channels_last_as_packaged"
                 else load_inception(device, channels_last=variant == "channels_last"))
    images = torch.randint(0, 256, (batch * batches, 3, size, size), dtype=torch.uint8)
    extract_features(images[:batch], extractor, batch_size=batch)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    extract_features(images, extractor, batch_size=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    n = images.shape[0]
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


def pages_ab(args) -> dict:
    """gankit's variant in two fresh processes, 4 KB pages then 2 MB pages: {"4k": ..., "2m": ..., ratios}."""
    out = {}
    for pages, flag in (("4k", "0"), ("2m", "1")):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--variants", "channels_last", "--no-pages-ab", "--device", args.device,
                   "--batch", str(args.batch), "--batches", str(args.batches), "--size", str(args.size),
                   "--json", f"{tmp}/r.json"] + (["--threads", str(args.threads)] if args.threads else [])
            subprocess.run(cmd, check=True, env={**os.environ, "THP_MEM_ALLOC_ENABLE": flag}, stdout=subprocess.DEVNULL)
            with open(f"{tmp}/r.json") as f:
                out[pages] = json.load(f)["channels_last"]
    for unit in ("images_per_s", "images_per_cpu_s"):
        out[f"ratio_{unit}"] = out["2m"][unit] / out["4k"][unit]
    print(f"channels_last in fresh processes: 4 KB pages {out['4k']['images_per_s']:.2f} images/s, 2 MB pages "
          f"{out['2m']['images_per_s']:.2f}: x{out['ratio_images_per_s']:.2f} "
          f"(per CPU-second x{out['ratio_images_per_cpu_s']:.2f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--batch", type=at_least(1), default=50, help="images per Inception batch (default: 50)")
    ap.add_argument("--batches", type=at_least(1), default=2, help="timed batches per memory format")
    ap.add_argument("--size", type=at_least(1), default=64, help="input image size before the resize to 299")
    ap.add_argument("--threads", type=at_least(1), help="torch CPU threads [default: torch's, one per core]")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--no-pages-ab", action="store_true", help="skip the 4 KB / 2 MB pages comparison (CPU)")
    ap.add_argument("--json", type=writable_file, help="write the results here")
    args = ap.parse_args()
    variants = args.variants.split(",")
    if not set(variants) <= set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    from gankit.device import resolve_device

    args.device = str(resolve_device(args.device))  # one line for an unknown device or CUDA without a GPU
    if args.threads:
        torch.set_num_threads(args.threads)
    pages = os.environ.get("THP_MEM_ALLOC_ENABLE")
    results = {"device": args.device, "threads": torch.get_num_threads(), "batch": args.batch,
               "thp_mem_alloc_enable": pages}
    for name in variants:
        rate, per_cpu_s = measure(args.device, name, args.batch, args.batches, args.size)
        results[name] = {"images_per_s": rate, "images_per_cpu_s": per_cpu_s}
        print(f"{args.device} ({torch.get_num_threads()} threads), batch {args.batch}, {name}: {rate:.2f} images/s "
              f"({per_cpu_s:.2f} per CPU-second of this process; THP_MEM_ALLOC_ENABLE={pages})")
    for name in ("channels_last_as_packaged", "channels_last"):
        if name in results and "contiguous" in results:
            ratio = results[name]["images_per_cpu_s"] / results["contiguous"]["images_per_cpu_s"]
            print(f"{name} against contiguous, per CPU-second: {ratio:.2f}x")
    if args.device == "cpu" and not args.no_pages_ab:
        results["pages"] = pages_ab(args)
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run(main)
