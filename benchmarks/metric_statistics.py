"""FID/KID statistics from features: gankit's `fid_kid` against torchmetrics' FrechetInceptionDistance and
KernelInceptionDistance on the same features, same run.

    python benchmarks/metric_statistics.py                          # the usual sample counts, this machine
    python benchmarks/metric_statistics.py --counts 10000:1000 --threads 1 --json stats.json

For each `n_real:n_fake` pair it makes synthetic 2048-d features (non-negative and correlated, like Inception's
pool features), then times torchmetrics (its KID subsets drawn under the seed gankit uses), gankit's `fid_kid`
from the features (what `gankit fid` does), and `fid_kid` again with the real side's `RealStatistics` kept from a
first call (what every evaluation of a training run after its first one does, and every mark of
`quality_per_budget.py`). Prints seconds, the speed-ups over torchmetrics, and how far each number is from
torchmetrics' (relative). Needs torchmetrics (`pip install -e ".[test]"`). Images never enter: Inception's own
cost is `inception_throughput.py`'s.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import at_least, run, writable_file, write_json  # noqa: E402

DIM = 2048


def counts_list(text: str) -> list[tuple[int, int]]:
    """An argparse type: a comma list of n_real:n_fake pairs, each >= 2."""
    pairs = []
    for item in text.split(","):
        try:
            n_real, n_fake = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected n_real:n_fake pairs such as 10000:1000,80:24, got {text!r}")
        if min(n_real, n_fake) < 2:
            raise argparse.ArgumentTypeError(f"each count must be >= 2, got {item}")
        pairs.append((n_real, n_fake))
    return pairs


def features(n: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """[n, 2048] float64: non-negative, correlated through 64 shared factors, like Inception's pool features."""
    factors = torch.randn(n, 64, generator=generator, dtype=torch.float64)
    mix = torch.randn(64, DIM, generator=generator, dtype=torch.float64)
    return (factors @ mix + 0.3 * torch.randn(n, DIM, generator=generator, dtype=torch.float64) + shift).relu()


def torchmetrics_fid_kid(real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict:
    """torchmetrics' FID and KID of two feature sets [N, D] (KID's subsets as gankit's: drawn under `seed`, as many
    and as large), through a pass-through `feature` module. tests/test_metrics.py checks gankit's against it."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from gankit.metrics import KID_SUBSET_SIZE, KID_SUBSETS

    class Precomputed(torch.nn.Module):
        num_features = real.shape[1]

        def forward(self, x):
            return x

    fid = FrechetInceptionDistance(feature=Precomputed())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features"
        kid = KernelInceptionDistance(feature=Precomputed(), subsets=KID_SUBSETS,
                                      subset_size=min(KID_SUBSET_SIZE, len(real), len(fake)))
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def timed(f):
    start = time.perf_counter()
    out = f()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=counts_list, default=counts_list("10000:1000,1016:1000,80:24,3000:3000"),
                    help="comma list of n_real:n_fake (gankit's evaluation default is 10000:1000)")
    ap.add_argument("--threads", type=at_least(1), help="torch.set_num_threads (default: PyTorch's choice)")
    ap.add_argument("--json", type=writable_file, help="write the results here")
    args = ap.parse_args()
    if importlib.util.find_spec("torchmetrics") is None:
        ap.error("needs torchmetrics, the reference it times against: pip install torchmetrics")
    if args.threads:
        torch.set_num_threads(args.threads)
    from gankit.metrics import RealStatistics, fid_kid

    print(f"{DIM}-d features, {torch.get_num_threads()} threads; seconds, and each number's distance from "
          "torchmetrics' (relative)")
    rows = []
    for n_real, n_fake in args.counts:
        g = torch.Generator().manual_seed(0)
        real, fake, fake2 = features(n_real, 0.0, g), features(n_fake, 0.1, g), features(n_fake, 0.1, g)
        theirs, t_theirs = timed(lambda: torchmetrics_fid_kid(real, fake, seed=0))
        ours, t_ours = timed(lambda: fid_kid(real, fake))
        kept = RealStatistics(real)
        fid_kid(kept, fake2)  # the run's first evaluation
        again, t_again = timed(lambda: fid_kid(kept, fake))
        assert again == ours
        distance = {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in theirs}
        rows.append({"n_real": n_real, "n_fake": n_fake, "torchmetrics_s": t_theirs, "gankit_s": t_ours,
                     "gankit_kept_real_s": t_again, "relative_distance": distance, "torchmetrics": theirs,
                     "gankit": {k: ours[k] for k in theirs}})
        print(f"{n_real:>6} real, {n_fake:>5} fake: torchmetrics {t_theirs:6.2f} s, gankit {t_ours:6.2f} s "
              f"(x{t_theirs / t_ours:.1f}), with the real side kept {t_again:6.2f} s (x{t_theirs / t_again:.1f}); "
              f"FID {distance['fid']:.0e}, KID {distance['kid_mean']:.0e} (std {distance['kid_std']:.0e})",
              flush=True)
    if args.json:
        write_json(args.json, {"threads": torch.get_num_threads(), "torch": torch.__version__,
                               "rows": rows}, indent=2)


if __name__ == "__main__":
    run(main)
