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
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gankit.metrics import InceptionFeatures, extract_features, load_inception, packaged_network, weights_path


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--batches", type=int, default=2, help="timed batches per memory format")
    ap.add_argument("--size", type=int, default=64, help="input image size before the resize to 299")
    ap.add_argument("--threads", type=int, help="torch CPU threads [default: torch's, one per core]")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"device": args.device, "threads": torch.get_num_threads(), "batch": args.batch}
    for name in ("contiguous", "channels_last_as_packaged", "channels_last"):
        rate, per_cpu_s = measure(args.device, name, args.batch, args.batches, args.size)
        results[name] = {"images_per_s": rate, "images_per_cpu_s": per_cpu_s}
        print(f"{args.device} ({torch.get_num_threads()} threads), batch {args.batch}, {name}: {rate:.2f} images/s "
              f"({per_cpu_s:.2f} per CPU-second of this process)")
    for name in ("channels_last_as_packaged", "channels_last"):
        ratio = results[name]["images_per_cpu_s"] / results["contiguous"]["images_per_cpu_s"]
        print(f"{name} against contiguous, per CPU-second: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
