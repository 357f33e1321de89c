"""Training speed beside other work: gankit's automatic thread count (gankit.threads) against a fixed one per core.

    python benchmarks/busy_cores.py                          # DCGAN-64 on the built-in digits, 90 s per run
    python benchmarks/busy_cores.py --resolution 32 --seconds 60 --busy 1 --rounds 2 --json busy.json
    python benchmarks/busy_cores.py --config configs/pokemon64_wgan_clip.yaml --data ../shared/datasets/pokemon

Each round trains four runs in turn with `gankit train` (fresh run folders, `--minutes`), two beside `--busy`
busy loops (`python -c "while True: pass"`, what another program keeping cores busy looks like) and two alone,
each once with the automatic count and once with `--threads` = the cores this process may use. A run's
figure is its images per second of training from metrics.jsonl (the metric lines' img_per_s after the first,
which holds the warm-up, weighted by their images), so the tuner's probes count against it. The ratios
compare runs of the same round (minutes apart), the automatic count over the fixed one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from _args import at_least, positive, run, writable_file
from gankit.threads import usable_cores


@contextmanager
def busy(n: int):
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in loops:
            p.kill()
            p.wait()


def train(run_dir: Path, resolution: int, seconds: float, threads: int | None, extra: list[str] = ()) -> tuple[float, list[int]]:
    """img/s of training and the thread counts its metric lines logged; `extra`: more `gankit train` arguments."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "gankit", "train", *extra, "--run-dir", str(run_dir), "--resolution", str(resolution),
           "--minutes", str(seconds / 60), "--epochs", "1000", "--no-progress",
           "--set", "log.plots=false", "--set", "log.tensorboard=false", "--set", "log.every=10",
           "--set", "log.checkpoint_every=0"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise SystemExit(f"error: gankit train failed: {last[0]}")
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x.get("kind") == "step" and "img_per_s" in x][1:]
    # each line's img/s covers log.every iterations of one batch each: weight the lines alike
    rate = len(steps) / sum(1 / s["img_per_s"] for s in steps)
    return rate, [s.get("threads") for s in steps]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=at_least(16), default=64)
    ap.add_argument("--seconds", type=positive, default=90.0, help="training time of each run")
    ap.add_argument("--busy", type=at_least(0), default=1, help="busy loops beside the busy runs")
    ap.add_argument("--rounds", type=at_least(1), default=1)
    ap.add_argument("--data", help="image folder (default: the built-in digits)")
    ap.add_argument("--config", help="a gankit recipe, e.g. configs/pokemon64_wgan_clip.yaml (default: DCGAN)")
    ap.add_argument("--json", type=writable_file, help="also write the results here")
    args = ap.parse_args()
    extra = [*(["--data", args.data] if args.data else []), *(["--config", args.config] if args.config else [])]
    n = usable_cores()
    print(f"{n} cores; {args.config or 'DCGAN'} at {args.resolution} px on {args.data or 'the built-in digits'}, "
          f"{args.seconds:.0f} s per run, {args.busy} busy loop(s) beside the busy runs")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, loops in (("busy", args.busy), ("alone", 0)):
                with busy(loops):
                    got = {name: train(Path(tmp) / f"{r}_{label}_{name}", args.resolution, args.seconds, threads, extra)
                           for name, threads in (("auto", None), ("fixed", n))}
                (auto, counts), (fixed, _) = got["auto"], got["fixed"]
                results.append({"round": r + 1, "busy_loops": loops, "auto_img_s": auto, "fixed_img_s": fixed,
                                "fixed_threads": n, "auto_threads_logged": counts})
                print(f"round {r + 1}, {label:5s}: automatic {auto:7.1f} img/s (threads logged: first {counts[0]}, "
                      f"last {counts[-1]}), {n} threads fixed {fixed:7.1f} img/s: x{auto / fixed:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cores": n, "resolution": args.resolution, "seconds": args.seconds,
                                         "data": args.data, "config": args.config,
                                         "runs": results}, indent=1))


if __name__ == "__main__":
    run(main)
