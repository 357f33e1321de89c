"""What a run spends at its epoch ends (the sample grid, last.pt + generator.safetensors, numbered checkpoints, plots)
when epochs are short: a small dataset on a fast device, such as 1016 Pokemon at batch 64 on a GPU (16 steps an epoch).

    python benchmarks/epoch_ends.py --device cuda                      # DCGAN-64, 1016 random images, 30 epochs
    python benchmarks/epoch_ends.py --resolution 32 --set model.ngf=8 --set model.ndf=8 --epochs 250  # CPU: a small model
    python benchmarks/epoch_ends.py --device cuda --eval-every 10      # also FID/KID every 10 epochs (the CUDA default)

In one process, on one synthetic dataset: the bare training iterations (`Trainer.train_iteration` in a loop: the
reference), then `Trainer.fit` for the same number of steps twice: as gankit did until 2026-12-06 (the grid and the
checkpoints at every epoch end, `log.write_share=0`, the plots held to 3% of the run) and with the default write share
(each writing skipped at an epoch end sooner than 1 / share times its last duration after it). With --eval-every, both
also evaluate FID/KID (--n-fake images, the set's own as the real side), the first at every `eval.every` epochs
(`eval.share=0`), the second within the default `eval.share`. Each fit's wall time over the bare iterations' time is its
overhead; also the writings and evaluations each one did and their last durations on this host.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _args import at_least, run, writable_file, write_json
from throughput import FAMILIES, Contender, _merged, make_trainer

PLOT_SHARE_BEFORE = 0.03  # the plots' own share before the write share held every epoch-end writing to one
ROUNDS = 3  # timed rounds of the bare iterations before the runs, and as many after; the best counts


def _timed_fit(trainer) -> tuple[int, float]:
    start = time.perf_counter()
    out = trainer.fit()
    return out["iterations"], time.perf_counter() - start


def faster_or_slower(speedup: float) -> str:
    """'x1.42 faster' for a speed-up of 1.42, 'x1.05 slower' for one of 0.95 (1 / 1.05)."""
    return f"x{speedup:.2f} faster" if speedup >= 1 else f"x{1 / speedup:.2f} slower"


def fit_row(name: str, trainer, steps: int, wall: float, bare_s_per_step: float) -> dict:
    from gankit.runlog import read_metrics

    run_dir = trainer.run_dir
    row = {"name": name, "write_share": trainer.cfg.log.write_share, "steps": steps, "seconds": wall,
           "evaluations": sum(line.get("kind") == "eval" for line in read_metrics(run_dir / "metrics.jsonl")),
           "overhead": wall / (steps * bare_s_per_step) - 1,
           "grids": len(list((run_dir / "samples").glob("epoch_*.png"))),
           "numbered_checkpoints": len(list((run_dir / "checkpoints").glob("epoch_*.pt"))),
           "last_durations_ms": {k: round(p.cost * 1e3, 1) for k, p in trainer._paced.items()}}
    print(f"{name:<22} {wall:8.2f} s  overhead {row['overhead']:+7.1%}  grids {row['grids']:4d}  numbered checkpoints "
          f"{row['numbered_checkpoints']:3d}  evaluations {row['evaluations']:3d}  last durations (ms) " +
          ", ".join(f"{k} {v:g}" for k, v in row["last_durations_ms"].items()))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="dcgan", choices=list(FAMILIES), help="gankit model family (default: dcgan)")
    ap.add_argument("--resolution", type=at_least(16), default=64, help="image size in pixels (default: 64)")
    ap.add_argument("--images", type=at_least(1), default=1016, help="dataset size (1016: the Pokemon set)")
    ap.add_argument("--batch", type=at_least(1), default=64, help="batch size (default: 64)")
    ap.add_argument("--epochs", type=at_least(1), default=30, help="epochs of each fit (default: 30)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--precision", default="auto", help="auto | fp32 | bf16")
    ap.add_argument("--eval-every", type=at_least(0), default=0, help="FID/KID every N epochs (0: none)")
    ap.add_argument("--n-fake", type=at_least(2), default=1000, help="generated images per evaluation")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="gankit config override KEY=VALUE (repeatable)")
    ap.add_argument("--threads", type=at_least(1), help="torch.set_num_threads (default: PyTorch's choice)")
    ap.add_argument("--json", type=writable_file, help="also write the results here")
    args = ap.parse_args()
    if args.images < args.batch:
        ap.error(f"--images {args.images} is fewer than one batch of {args.batch}")

    from gankit.config import parse_sets
    from gankit.device import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = parse_sets(args.sets)
    tmp_dir = tempfile.TemporaryDirectory()  # the runs' checkpoints (76 MB each at DCGAN-64) go with it
    tmp = Path(tmp_dir.name)

    def trainer(name: str, share: float | None, epochs: int = args.epochs):
        # the thread count fixed: gankit.threads' probes would be in the runs' time and not in the bare iterations'
        layer = {"train": {"epochs": epochs, "threads": torch.get_num_threads()}, "log": {"progress": False, "tensorboard": True,
                                                             **({} if share is None else {"write_share": share})},
                 "eval": {"every": args.eval_every, "n_fake": args.n_fake, "n_real": args.images,
                          **({} if share is None else {"share": share})}}
        return make_trainer(args.family, args.resolution, args.batch, args.precision, str(device), tmp / name,
                            _merged(layer, overrides), n_images=args.images)  # --set wins over the benchmark's own

    trainer("warm", 0, epochs=2).fit()  # imports, the first PNG, plot, checkpoint (and Inception): paid before timing
    probe = trainer("bare", None)
    steps = probe.batches.steps_per_epoch * args.epochs
    bare = Contender("bare iterations", probe.train_iteration, device, lambda: args.batch, None)
    bare.warm_up(3)
    for _ in range(ROUNDS):
        bare.time_round(max(1, steps // ROUNDS))
    before = trainer("every", 0)
    before._paced["plots"].share = PLOT_SHARE_BEFORE
    fits = [("every epoch (before)", before), (f"share {probe.cfg.log.write_share:g} (default)", trainer("default", None))]
    timed = [(name, t, *_timed_fit(t)) for name, t in fits]
    for _ in range(ROUNDS):  # a busy spell during the first rounds does not count
        bare.time_round(max(1, steps // ROUNDS))
    print(f"{args.family} {args.resolution}px on {device}, batch {args.batch}, {args.images} images: "
          f"{probe.batches.steps_per_epoch} steps an epoch, {args.epochs} epochs; bare iterations "
          f"{bare.best * 1e3:.2f} ms a step, {bare.best * probe.batches.steps_per_epoch:.3f} s an epoch (best of "
          f"{len(bare.rounds)} rounds, "
          "before and after the runs)")
    rows = [fit_row(name, t, steps_done, wall, bare.best) for name, t, steps_done, wall in timed]
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    print(f"the default shares' run: {faster_or_slower(ratio)} than writing the grid and checkpoints at every epoch end"
          + (" and evaluating every --eval-every epochs" if args.eval_every else ""))
    if args.json:
        write_json(args.json, {"family": args.family, "resolution": args.resolution, "device": str(device),
                               "eval_every": args.eval_every, "n_fake": args.n_fake, "images": args.images, "batch": args.batch, "epochs": args.epochs,
                               "threads": torch.get_num_threads(), "overrides": args.sets,
                               "bare_s_per_step": bare.best, "runs": rows, "speedup": ratio}, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run(main)
