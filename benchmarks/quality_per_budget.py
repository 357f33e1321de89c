"""Quality per hour: gankit's best preset against the reference DCGAN, same data, same wall-clock budget.

    python benchmarks/quality_per_budget.py --minutes 30 --parallel --fid-at 10,20 --json q.json   # pokemon, 64 px
    python benchmarks/quality_per_budget.py --minutes 1 --n-fake 200                               # a quick smoke run
    python benchmarks/quality_per_budget.py --only gankit --set model.ngf=32 --minutes 5 --fakes-out g.pt  # one side

Both contestants train on the same images (decoded once by gankit.data) for `--minutes` of training
time each: gankit runs `Trainer.train_iteration` of the preset (configs/fast_small_data.yaml), the
reference runs `benchmarks/reference_dcgan.py`'s textbook step in its best setting (bf16 autocast
on a GPU or where the CPU computes bf16 natively, else fp32) on random batches of 64, both on `--device`.
Only training steps count towards the budget (no logs, samples or checkpoints).

Two ways to share the machine fairly:
- default: one process alternates the two in slices of `--slice` seconds until each has spent its
  budget, so both see the same neighbours (the wall time is twice the budget);
- `--parallel`: two processes train at once, each on one thread pinned to its own core (the wall
  time is the budget; on a 2-core machine each contestant gets exactly half of it).

At each `--fid-at` minute mark and at the end, `--n-fake` images are drawn from the generator in
eval mode (gankit: its EMA generator when the preset has one, with standing BatchNorm statistics).
Then one protocol measures them all: Inception features (gankit.metrics), FID and KID against the
features of every real image. It
prints both contestants at every mark and gankit's FID as a fraction of the reference's (the goal
on pokemon: at most 0.5), and with `--grids DIR` writes each contestant's last 64 images as a grid.

FID is biased upwards by an amount that shrinks like 1/n with the n generated images, and more for a
worse model. `--fid-n 1000,2000,4000` draws the largest count at the last mark and adds FID at each
count and FID_inf, the 1/n-extrapolated value (`gankit.metrics.fid_by_count`), for both contestants;
the headline FID/KID stay those of the first `--n-fake` images, comparable with runs without it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import at_least, number_list, positive, run, writable_file, writable_folder, write_json  # noqa: E402
from reference_dcgan import ReferenceDCGAN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("gankit", "reference")


class Contestant:
    """A training step, the training seconds spent on it so far, and a way to draw images in [-1, 1]."""

    def __init__(self, name: str, label: str, step, generate, images_seen):
        self.name, self.label, self.step, self.generate, self.images_seen = name, label, step, generate, images_seen
        self.seconds, self.steps = 0.0, 0
        self.marks: list[dict] = []  # one entry per minute mark: steps, seconds, uint8 fakes

    def train_for(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.step()
            self.steps += 1
        self.seconds += time.perf_counter() - t0

    def snapshot(self, minute: float, n_fake: int, seed: int) -> None:
        from gankit.evaluate import to_uint8

        torch.manual_seed(seed)
        fakes = torch.cat([to_uint8(self.generate(min(50, n_fake - i))).cpu() for i in range(0, n_fake, 50)])
        self.marks.append({"minute": minute, "steps": self.steps, "seconds": self.seconds,
                           "real_images_seen": self.images_seen(), "fakes": fakes})


def gankit_config(cfg_path: Path, data, resolution: int, device: str, overrides: dict, minutes: float, seed: int = 0):
    """The gankit contestant's config: the preset file, the benchmark's layer, then --set (its errors: ConfigError)."""
    from gankit.config import build_config, read_yaml
    from gankit.train import finalize_config

    # The budget is train.minutes (epochs never end the run first), so a schedule over the run's
    # progress (train.lr_decay) sees the same run a `gankit train` with that budget would.
    layers = [read_yaml(cfg_path),
              {"data": {"path": "bench", "resolution": resolution},
               "train": {"device": device, "minutes": minutes, "epochs": 10**6},
               "log": {"tensorboard": False, "progress": False, "plots": False}, "eval": {"every": 0}},
              {"train": {"seed": seed}},  # --seed seeds both contestants; a --set train.seed=N still wins
              overrides]
    return finalize_config(build_config(*layers), data)


def gankit_contestant(cfg_path: Path, data, resolution: int, device: str, run_dir: Path, overrides: dict,
                      minutes: float, seed: int = 0):
    from gankit.train import Trainer

    cfg = gankit_config(cfg_path, data, resolution, device, overrides, minutes, seed)
    trainer = Trainer(cfg, data, run_dir)

    def step():
        t0 = time.perf_counter()
        trainer.train_iteration()
        trainer.elapsed += time.perf_counter() - t0  # the clock `gankit train` keeps (here training steps only)

    return Contestant("gankit", f"gankit ({cfg_path.name})", step, trainer.generate,
                      lambda: trainer.cursor * cfg.train.batch_size)


def reference_contestant(data, resolution: int, seed: int, batch: int = 64, device: str = "cpu"):
    from gankit.device import cpu_has_bf16

    device = torch.device(device)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device.type == "cuda" or cpu_has_bf16() else None  # where bf16 is native
    ref = ReferenceDCGAN(resolution=resolution, nc=int(data.images.shape[1]), autocast_dtype=dtype, device=device)
    images = data.images.to(device)
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
            out = ref.G(torch.randn(n, ref.nz, 1, 1, device=device)).float()
        ref.G.train()
        return out

    c = Contestant("reference", f"reference DCGAN ({'bf16' if dtype else 'fp32'})", step, generate,
                   lambda: c.steps * batch)
    return c


def make_contestant(name: str, args, data, run_dir: Path) -> Contestant:
    from gankit.config import parse_sets

    if name == "gankit":
        return gankit_contestant(args.config, data, args.resolution, args.device, run_dir, parse_sets(args.sets),
                                 args.minutes, args.seed)
    return reference_contestant(data, args.resolution, args.seed, device=args.device)


def train_all(contestants: list[Contestant], marks: list[float], slice_s: float, n_fake: int, seed: int,
              n_last: int) -> None:
    """Train each contestant to each minute mark in turn (slices of slice_s seconds), snapshotting at every mark
    (n_fake images, n_last at the last one)."""
    for mark in marks:
        while any(c.seconds < mark * 60 for c in contestants):
            for c in contestants:
                if c.seconds < mark * 60:
                    c.train_for(min(slice_s, mark * 60 - c.seconds))
            done = ", ".join(f"{c.name}: {c.steps} steps in {c.seconds / 60:.1f} min" for c in contestants)
            print(f"  {done}", flush=True)
        for c in contestants:
            c.snapshot(mark, n_last if mark == marks[-1] else n_fake, seed)


def train_parallel(args, marks: list[float], tmp: Path) -> list[dict]:
    """One process per contestant, one thread each, pinned to its own core where the machine has two; each in its
    own session: a Ctrl-C reaches this process alone, which stops them (as a SIGTERM does) rather than leave them
    training for their budget."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    procs = []
    try:
        for i, name in enumerate(NAMES):
            out = tmp / f"{name}.pt"
            cmd = [sys.executable, __file__, "--only", name, "--fakes-out", str(out), "--threads", "1",
                   "--data", args.data, "--resolution", str(args.resolution), "--config", str(args.config),
                   "--minutes", str(args.minutes), *(["--fid-at", ",".join(f"{m!r}" for m in marks[:-1])] if marks[:-1] else []),
                   "--n-fake", str(args.n_fake), "--device", args.device, "--seed", str(args.seed),
                   "--slice", str(args.slice), *(["--fid-n", ",".join(map(str, args.fid_n))] if args.fid_n else [])
                   ] + [a for s in args.sets for a in ("--set", s)]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            pin = {cores[i]} if len(cores) >= len(NAMES) else None
            procs.append((out, subprocess.Popen(cmd, env=env, start_new_session=True,
                                                preexec_fn=(lambda p=pin: os.sched_setaffinity(0, p)) if pin else None)))
        failed = [name for name, (_, p) in zip(NAMES, procs) if p.wait() != 0]
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if failed:
        sys.exit(f"error: the {' and '.join(failed)} process failed (its output is above)")
    return [torch.load(out) for out, _ in procs]


def save_grids(results: list[dict], out_dir: Path) -> None:
    from gankit.report.grids import save_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        fakes = r["marks"][-1]["fakes"][:64]
        path = save_grid(fakes.float().div(127.5).sub(1), out_dir / f"{r['name']}.png")
        print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "pokemon"),
                    help="image folder (default: %(default)s)")
    ap.add_argument("--resolution", type=at_least(16), default=64,
                    help="image size in pixels; a power of two with the reference (default: 64)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "fast_small_data.yaml",
                    help="gankit's preset (default: %(default)s)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra gankit override KEY=VALUE")
    ap.add_argument("--minutes", type=positive, default=30.0, help="training minutes for each contestant")
    ap.add_argument("--fid-at", type=number_list(float, 0), default=[], help="earlier minute marks to measure too, e.g. 10,20")
    ap.add_argument("--slice", type=positive, default=60.0, help="seconds each contestant trains before the other's turn")
    ap.add_argument("--parallel", action="store_true", help="train both at once, one core each")
    ap.add_argument("--only", choices=NAMES, help="train this contestant alone (with --fakes-out: no FID)")
    ap.add_argument("--fakes-out", type=writable_file,
                    help="with --only: save the generated images here instead of measuring")
    ap.add_argument("--n-fake", type=at_least(2), default=1000, help="generated images for FID/KID at each mark")
    ap.add_argument("--fid-n", type=number_list(int, 2), default=[],
                    help="at the last mark also FID at these image counts and FID_inf, e.g. 1000,2000,4000 "
                    "(Inception costs ~0.1 s per image on a 2-core CPU)")
    ap.add_argument("--grids", type=writable_folder, help="write each contestant's last 64 images as DIR/NAME.png")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto: both contestants train there")
    ap.add_argument("--threads", type=at_least(1), help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0, help="seeds both contestants (weights, batches, noise) and the drawn fakes")
    ap.add_argument("--json", type=writable_file, help="also write the results here")
    args = ap.parse_args()
    if args.resolution > 1024:
        ap.error(f"argument --resolution: must be <= 1024, got {args.resolution}")
    if args.resolution & (args.resolution - 1) and args.only != "gankit":
        ap.error(f"argument --resolution: the reference DCGAN needs a power of two (it halves the map down to 4x4), "
                 f"got {args.resolution}; --only gankit trains gankit alone at any size")
    if args.fakes_out and not args.only:
        ap.error("--fakes-out goes with --only NAME: it saves one contestant's images and measures no FID")
    marks = sorted({m for m in args.fid_at if 0 < m < args.minutes})
    marks.append(args.minutes)
    counts = sorted(set(args.fid_n))
    if len(counts) == 1:
        ap.error("--fid-n needs at least two image counts of 2 or more, e.g. 1000,2000,4000")
    n_last = max([args.n_fake, *counts])

    from gankit.config import parse_sets
    from gankit.data import load_dataset
    from gankit.device import resolve_device
    from gankit.metrics import RealStatistics, extract_features, fid_by_count, fid_kid, load_inception, real_features

    args.device = str(resolve_device(args.device))  # one line for an unknown device or CUDA without a GPU
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data, args.resolution, progress=False)
    if args.parallel and not args.only:  # --config and --set checked now, as the one-process path does, not by the
        # gankit child after the reference child has trained its whole budget
        gankit_config(args.config, data, args.resolution, args.device, parse_sets(args.sets), args.minutes, args.seed)
    names = [args.only] if args.only else list(NAMES)
    mode = "in parallel, one core each" if args.parallel else f"{torch.get_num_threads()} threads"
    print(f"{len(data.images)} images from {args.data} at {args.resolution} px; {args.minutes:g} training minutes "
          f"each ({', '.join(names)}), {mode}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.parallel and not args.only:
            results = train_parallel(args, marks, Path(tmp))
        else:
            contestants = [make_contestant(n, args, data, Path(tmp) / "run") for n in names]
            train_all(contestants, marks, args.slice, args.n_fake, args.seed, n_last)
            results = [{"name": c.name, "label": c.label, "marks": c.marks} for c in contestants]
        if args.fakes_out:
            torch.save(results[0], args.fakes_out)
            return
    if args.grids:
        save_grids(results, args.grids)

    extractor = load_inception(args.device)
    real = RealStatistics(real_features(data.key, data.images, extractor))  # its statistics once for every mark
    summary = {"data": args.data, "resolution": args.resolution, "minutes": args.minutes, "n_fake": args.n_fake,
               "n_real": len(data.images), "parallel": args.parallel, "torch": torch.__version__,
               "threads": 1 if args.parallel else torch.get_num_threads(),
               "gankit_config": str(args.config), "gankit_overrides": args.sets, "contestants": []}
    for r in results:
        entry = {"name": r["name"], "label": r["label"], "marks": []}
        for m in r["marks"]:
            feats = extract_features(m["fakes"], extractor)
            fk = fid_kid(real, feats[:args.n_fake])
            if counts and len(feats) >= counts[-1]:
                fk |= fid_by_count(real, feats, counts)
            entry["marks"].append({k: v for k, v in m.items() if k != "fakes"} | fk)
            by_n = "".join(f"  FID@{n} {v:.2f}" for n, v in fk.get("fid_by_n", {}).items())
            by_n += f"  FID_inf {fk['fid_inf']:.2f}" if "fid_inf" in fk else ""
            print(f"{r['label']:40s} {m['minute']:5g} min {m['steps']:6d} steps "
                  f"({m['real_images_seen'] / m['seconds']:6.1f} img/s)  FID {fk['fid']:7.2f}  "
                  f"KID {fk['kid_mean']:.4f} ± {fk['kid_std']:.4f}{by_n}", flush=True)
        summary["contestants"].append(entry)
    if len(results) == 2:
        g, ref = (e["marks"][-1] for e in summary["contestants"])
        summary["fid_ratio"] = g["fid"] / ref["fid"]
        summary["kid_ratio"] = g["kid_mean"] / ref["kid_mean"] if ref["kid_mean"] > 0 else None
        print(f"gankit FID / reference FID = {summary['fid_ratio']:.2f} (goal <= 0.5)")
        if "fid_inf" in g and "fid_inf" in ref:
            summary["fid_inf_ratio"] = g["fid_inf"] / ref["fid_inf"]
            print(f"gankit FID_inf / reference FID_inf = {summary['fid_inf_ratio']:.2f}")
    if args.json:
        write_json(args.json, summary, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run(main)
