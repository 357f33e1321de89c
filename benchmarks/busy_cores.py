"""Training speed beside other work: gankit's automatic thread count (gankit.threads) against a fixed one per core.

    python benchmarks/busy_cores.py                          # DCGAN-64 on the built-in digits, 90 s per run
    python benchmarks/busy_cores.py --resolution 32 --seconds 60 --busy 1 --rounds 2 --json busy.json
    python benchmarks/busy_cores.py --config configs/pokemon64_wgan_clip.yaml --data ../shared/datasets/pokemon
    python benchmarks/busy_cores.py --neighbour leaves --seconds 150   # how soon freed cores are used again
    python benchmarks/busy_cores.py --neighbour comes --seconds 150    # how soon a busy core is given up

Each round trains four runs in turn with `gankit train` (fresh run folders, `--minutes`), two beside `--busy`
busy loops (`python -c "while True: pass"`, what another program keeping cores busy looks like) and two alone,
each once with the automatic count and once with `--threads` = the cores this process may use. A run's
figure is its images per second of training from metrics.jsonl (the metric lines' img_per_s after the first,
which holds the warm-up, weighted by their batches), so the tuner's probes count against it. The ratios
compare runs of the same round (minutes apart), the automatic count over the fixed one.

With `--neighbour leaves` (or `comes`) it trains one run with the automatic count instead, beside `--busy` loops
that are killed (or started) `--event-at` seconds after the run's start line (default: half of `--seconds`),
and prints how many seconds later the tuner's note said it changed the count (up, or down).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from _args import at_least, positive, run, writable_file, write_json
from gankit.errors import GankitError
from gankit.threads import usable_cores


def busy_loops(n: int) -> list[subprocess.Popen]:
    """`n` busy loops, in their own session: a Ctrl-C reaches this script alone, whose cleanup stops them."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(n)]


def stop(loops: list[subprocess.Popen]) -> None:
    for p in loops:
        p.kill()
        p.wait()


@contextmanager
def busy(n: int):
    loops = busy_loops(n)
    try:
        yield
    finally:
        stop(loops)


def _command(run_dir: Path, resolution: int, seconds: float, threads: int | None, extra) -> tuple[list[str], dict]:
    """`gankit train`'s command line and environment (no OMP_NUM_THREADS: the count is gankit's to choose)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "gankit", "train", *extra, "--run-dir", str(run_dir), "--resolution", str(resolution),
           "--minutes", str(seconds / 60), "--epochs", "1000", "--no-progress",
           "--set", "log.plots=false", "--set", "log.tensorboard=false", "--set", "log.every=10",
           "--set", "log.every_minutes=0.1", "--set", "log.checkpoint_every=0"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    return cmd, env


def _failed(returncode: int, stderr: str) -> Exception:
    """The failed run's last stderr line (its own `error: ...` line), said once; gankit's bad input (its exit status 2:
    a missing --config or --data) ends this script with status 2 too, as the other benchmarks' bad input does."""
    last = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
    message = f"gankit train failed: {last[0].removeprefix('error: ')}"
    return GankitError(message) if returncode == 2 else SystemExit(f"error: {message}")


def train(run_dir: Path, resolution: int, seconds: float, threads: int | None, extra: list[str] = ()) -> tuple[float, list[int]]:
    """img/s of training and the thread counts its metric lines logged; `extra`: more `gankit train` arguments."""
    cmd, env = _command(run_dir, resolution, seconds, threads, extra)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise _failed(proc.returncode, proc.stderr)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return speed(lines, run_dir.name)


def speed(lines: list[dict], name: str) -> tuple[float, list[int]]:
    """img/s of training over a run's metric lines, leaving out the first (the warm-up), and the thread counts
    they logged."""
    steps = [x for x in lines if x.get("kind") == "step" and "img_per_s" in x]
    if len(steps) < 2:
        raise SystemExit(f"error: {name} wrote {len(steps)} metric line(s) with img/s, too few to measure: "
                         "train longer (--seconds)")
    # a line's img/s covers the batches since the previous line (log.every iterations, or 6 s of them: an iteration
    # of a critic burst takes 100 batches): weight each by its D updates, one per batch (two under d_split)
    batches = [b["d_updates"] - a["d_updates"] for a, b in zip(steps, steps[1:])]
    rate = sum(batches) / sum(n / s["img_per_s"] for n, s in zip(batches, steps[1:]))
    return rate, [s.get("threads") for s in steps[1:]]


SWITCH = re.compile(r"training on (\d+) CPU threads? instead of (\d+)")


def switch_after(lines: list[tuple[float, str]], event: float, up: bool) -> float | None:
    """Seconds from `event` to the first note (of timed stderr `lines`) that moved the count up (or down) after it."""
    for t, line in lines:
        m = SWITCH.search(line)
        if t >= event and m and (int(m[1]) > int(m[2])) == up:
            return t - event
    return None


def neighbour(run_dir: Path, resolution: int, seconds: float, loops: int, event_at: float, leaves: bool,
              extra: list[str] = ()) -> tuple[float | None, list[tuple[float, str]]]:
    """One run with the automatic count, beside `loops` busy loops that leave (or come) `event_at` s after its start
    line: the seconds from then to the count's change (None: none came), and its stderr lines, timed from the event."""
    cmd, env = _command(run_dir, resolution, seconds, None, extra)
    running = busy_loops(loops) if leaves else []
    lines: list[tuple[float, str]] = []
    started = threading.Event()
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def read() -> None:
            for line in proc.stderr:
                lines.append((time.monotonic(), line.rstrip()))
                if " on cpu" in line:
                    started.set()
            started.set()  # (the run ended before its start line: it failed)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started.wait()
        event = time.monotonic() + event_at
        while proc.poll() is None and time.monotonic() < event:
            time.sleep(0.05)
        if leaves:
            stop(running)
        running = [] if leaves else busy_loops(loops)  # (the ones `finally` stops)
        event = time.monotonic()
        proc.wait()
        reader.join()
    finally:
        stop(running + ([proc] if proc is not None and proc.poll() is None else []))  # (interrupted: the run too)
    if proc.returncode:
        raise _failed(proc.returncode, "\n".join(line for _, line in lines))
    return switch_after(lines, event, up=leaves), [(t - event, line) for t, line in lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=at_least(16), default=64, help="image size in pixels (default: 64)")
    ap.add_argument("--seconds", type=positive, default=90.0, help="training time of each run")
    ap.add_argument("--busy", type=at_least(0), default=1, help="busy loops beside the busy runs")
    ap.add_argument("--rounds", type=at_least(1), default=1, help="rounds of the four runs (default: 1)")
    ap.add_argument("--data", help="image folder (default: the built-in digits)")
    ap.add_argument("--config", help="a gankit recipe, e.g. configs/pokemon64_wgan_clip.yaml (default: DCGAN)")
    ap.add_argument("--json", type=writable_file, help="also write the results here")
    ap.add_argument("--neighbour", choices=("leaves", "comes"),
                    help="one run with the automatic count: the busy loops leave (or come) mid-run")
    ap.add_argument("--event-at", type=positive, help="--neighbour: seconds after the start line (default: --seconds / 2)")
    args = ap.parse_args()
    if args.event_at and not args.neighbour:
        ap.error("--event-at goes with --neighbour")
    extra = [*(["--data", args.data] if args.data else []), *(["--config", args.config] if args.config else [])]
    n = usable_cores()
    if args.neighbour:
        if args.busy < 1:
            ap.error("--neighbour needs --busy 1 or more")
        event_at = args.event_at or args.seconds / 2
        if event_at >= args.seconds:
            ap.error(f"--event-at {event_at:g} must be under --seconds {args.seconds:g}")
        with tempfile.TemporaryDirectory() as tmp:
            after, lines = neighbour(Path(tmp) / "run", args.resolution, args.seconds, args.busy, event_at,
                                     args.neighbour == "leaves", extra)
        for t, line in lines:
            if SWITCH.search(line):
                print(f"{t:+7.1f} s  {line}")
        what = "more threads" if args.neighbour == "leaves" else "fewer threads"
        print(f"{n} cores; {args.busy} busy loop(s) {'left' if args.neighbour == 'leaves' else 'came'} {event_at:.0f} s "
              f"after the start line: " + (f"{what} {after:.1f} s later" if after is not None else f"no move to {what}"))
        if args.json:
            write_json(args.json, {"cores": n, "resolution": args.resolution, "seconds": args.seconds,
                                   "data": args.data, "config": args.config, "neighbour": args.neighbour,
                                   "busy_loops": args.busy, "event_at": event_at, "switch_after": after,
                                   "stderr": [[round(t, 2), line] for t, line in lines]}, indent=1)
        return
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
        write_json(args.json, {"cores": n, "resolution": args.resolution, "seconds": args.seconds,
                               "data": args.data, "config": args.config,
                               "runs": results}, indent=1)


if __name__ == "__main__":
    run(main)
