"""Quality per hour: gankit's best preset against the reference DCGAN, same data, same wall-clock budget.

    python benchmarks/quality_per_budget.py --minutes 30 --threads 1           # pokemon at 64 px, 30 min each
    python benchmarks/quality_per_budget.py --minutes 1 --n-fake 200           # a quick smoke run
    python benchmarks/quality_per_budget.py --config configs/other.yaml --json q.json

Both contestants train on the same images (decoded once by gankit.data) for `--minutes` of training
time each: gankit runs `Trainer.train_iteration` of the preset (configs/fast_small_data.yaml), the
reference runs `benchmarks/reference_dcgan.py`'s textbook step in its best setting (bf16 autocast
where the CPU computes bf16 natively, else fp32) on random batches of 64. On a shared machine the
two alternate in slices of `--slice` seconds until each has spent its budget, so both see the same
neighbours. Only training steps count towards the budget (no logs, samples or checkpoints).

Then both are measured with one protocol: `--n-fake` images from the generator in eval mode
(gankit: its EMA generator when the preset has one), Inception features (gankit.metrics), FID and
KID against the features of every real image. It prints both, and gankit's FID as a fraction of
the reference's (the goal on pokemon: at most 0.5). On a shared 2-core machine pass --threads 1:
two OpenMP threads stall behind the neighbours' load and make both contestants several times slower.
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

ROOT = Path(__file__).resolve().parents[1]


class Contestant:
    """A training step, the training seconds spent on it so far, and a way to draw images in [-1, 1]."""

    def __init__(self, name: str, step, generate, images_seen):
        self.name, self.step, self.generate, self.images_seen = name, step, generate, images_seen
        self.seconds, self.steps = 0.0, 0

    def train_for(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.step()
            self.steps += 1
        self.seconds += time.perf_counter() - t0


def gankit_contestant(cfg_path: Path, data, resolution: int, device: str, run_dir: Path, overrides: dict):
    from gankit.config import build_config, read_yaml
    from gankit.train import Trainer, finalize_config

    layers = [read_yaml(cfg_path),
              {"data": {"path": "bench", "resolution": resolution}, "train": {"device": device},
               "log": {"tensorboard": False, "progress": False, "plots": False}, "eval": {"every": 0}},
              overrides]
    cfg = finalize_config(build_config(*layers), data)
    trainer = Trainer(cfg, data, run_dir)
    return Contestant(f"gankit ({cfg_path.name})", trainer.train_iteration, trainer.generate,
                      lambda: trainer.cursor * cfg.train.batch_size), cfg


def reference_contestant(data, resolution: int, seed: int, batch: int = 64):
    from gankit.device import cpu_has_bf16

    torch.manual_seed(seed)
    dtype = torch.bfloat16 if cpu_has_bf16() else None
    ref = ReferenceDCGAN(resolution=resolution, nc=int(data.images.shape[1]), autocast_dtype=dtype)
    images = data.images
    g = torch.Generator().manual_seed(seed)
    state = {"perm": torch.randperm(len(images), generator=g), "i": 0}

    def step():
        if state["i"] + batch > len(images):  # a new epoch: a new permutation (drop the last partial batch)
            state["perm"], state["i"] = torch.randperm(len(images), generator=g), 0
        idx = state["perm"][state["i"]:state["i"] + batch]
        state["i"] += batch
        ref.step(images[idx].float().div(127.5).sub(1))

    @torch.no_grad()
    def generate(n: int) -> torch.Tensor:
        ref.G.eval()
        with ref._autocast():
            out = ref.G(torch.randn(n, ref.nz, 1, 1)).float()
        ref.G.train()
        return out

    c = Contestant(f"reference DCGAN ({'bf16' if dtype else 'fp32'})", step, generate, lambda: c.steps * batch)
    return c


def fid_of(contestant: Contestant, real_feats: torch.Tensor, extractor, n_fake: int, seed: int) -> dict:
    from gankit.evaluate import to_uint8
    from gankit.metrics import extract_features, fid_kid

    torch.manual_seed(seed)
    images = torch.cat([to_uint8(contestant.generate(min(50, n_fake - i))).cpu() for i in range(0, n_fake, 50)])
    return fid_kid(real_feats, extract_features(images, extractor))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "pokemon"))
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "fast_small_data.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra gankit override KEY=VALUE")
    ap.add_argument("--minutes", type=float, default=30.0, help="training minutes for each contestant")
    ap.add_argument("--slice", type=float, default=60.0, help="seconds each contestant trains before the other's turn")
    ap.add_argument("--n-fake", type=int, default=1000, help="generated images for FID/KID")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from gankit.config import parse_sets
    from gankit.data import load_dataset
    from gankit.metrics import load_inception, real_features

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data, args.resolution, progress=False)
    print(f"{len(data.images)} images from {args.data} at {args.resolution} px; {args.minutes:g} training minutes "
          f"each, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        gk, cfg = gankit_contestant(args.config, data, args.resolution, args.device, Path(tmp) / "run",
                                    parse_sets(args.sets))
        contestants = [gk, reference_contestant(data, args.resolution, args.seed)]
        budget = args.minutes * 60
        while any(c.seconds < budget for c in contestants):
            for c in contestants:
                if c.seconds < budget:
                    c.train_for(min(args.slice, budget - c.seconds))
            done = ", ".join(f"{c.name}: {c.steps} steps in {c.seconds / 60:.1f} min" for c in contestants)
            print(f"  {done}", flush=True)

        extractor = load_inception(args.device)
        real = real_features(data.key, data.images, extractor)
        results = {"data": args.data, "resolution": args.resolution, "minutes": args.minutes, "n_fake": args.n_fake,
                   "n_real": len(data.images), "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "gankit_config": str(args.config), "gankit_overrides": args.sets, "contestants": []}
        for c in contestants:
            r = fid_of(c, real, extractor, args.n_fake, args.seed)
            images = c.images_seen()
            results["contestants"].append({"name": c.name, "steps": c.steps, "seconds": c.seconds,
                                           "real_images_seen": images, **r})
            print(f"{c.name:40s} {c.steps:6d} steps ({images / c.seconds:6.1f} img/s)  FID {r['fid']:7.2f}  "
                  f"KID {r['kid_mean']:.4f} ± {r['kid_std']:.4f}")
    g, ref = results["contestants"]
    results["fid_ratio"] = g["fid"] / ref["fid"]
    results["kid_ratio"] = g["kid_mean"] / ref["kid_mean"] if ref["kid_mean"] > 0 else None
    print(f"gankit FID / reference FID = {results['fid_ratio']:.2f} (goal <= 0.5)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
