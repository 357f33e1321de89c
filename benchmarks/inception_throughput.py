"""Inception feature throughput (the cost of FID/KID): images/s with and without channels_last.

    python benchmarks/inception_throughput.py                     # CPU, batch 50, 64 px inputs
    python benchmarks/inception_throughput.py --threads 1            # per-core cost, steadier on a busy machine
    python benchmarks/inception_throughput.py --device cuda --batches 10

Times `gankit.metrics.extract_features` on synthetic uint8 images after one warm-up batch; the
images are resized to 299 inside, so the input size barely matters. Prints one line per memory
format and, with --json, writes the numbers. Besides images per wall-clock second it reports images
per CPU-second of this process, which stays meaningful on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gankit.metrics import extract_features, load_inception


def measure(device: str, channels_last: bool, batch: int, batches: int, size: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) after one warm-up batch."""
    extractor = load_inception(device, channels_last=channels_last)
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
    for channels_last in (False, True):
        rate, per_cpu_s = measure(args.device, channels_last, args.batch, args.batches, args.size)
        name = "channels_last" if channels_last else "contiguous"
        results[name] = {"images_per_s": rate, "images_per_cpu_s": per_cpu_s}
        print(f"{args.device} ({torch.get_num_threads()} threads), batch {args.batch}, {name}: {rate:.2f} images/s "
              f"({per_cpu_s:.2f} per CPU-second of this process)")
    ratio = results["channels_last"]["images_per_s"] / results["contiguous"]["images_per_s"]
    print(f"channels_last speed-up (wall clock): {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
