"""Kill -9 soak: start `gankit train` on a tiny model, SIGKILL it at random moments, resume, and check
that the run folder never breaks.

    python scripts/kill_soak.py                 # 100 kills, prints "kills survived / attempted"
    python scripts/kill_soak.py -n 20 --seed 3 --keep /tmp/soak

After every kill the folder must hold only checkpoints that load and verify (`load_checkpoint`
checks each file's sha256), and the newest checkpoint must not be older than before the kill (no
work lost). The next `gankit train` on the folder must resume and exit cleanly or run until it is
killed again. When a run reaches `--max-steps`, the finished folder must have: every checkpoint
loadable, `last.pt` at exactly max_steps iterations, no temporary file of a write left, and a metrics.jsonl whose
every line parses, whose step lines are exactly 1..max_steps once each (log.every is 1), and whose epoch lines are
1..E once each. Then a new run starts, until N kills were attempted.

Kill moments are drawn (seeded): a quarter during start-up (imports, data loading, loading the
checkpoint and rewriting the metrics log of a resume), the rest uniformly over the training that
follows, so they land in checkpoint writes, sample grids, plots and TensorBoard events alike. `last.pt` is
also written inside epochs (`log.checkpoint_minutes`, as often as `log.write_share` allows), so resumes start
mid-epoch as well as at epoch ends.
`tests/test_kill_resume.py` runs a few kills of this.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Soak:
    attempted: int = 0  # SIGKILLs delivered to a live training process
    survived: int = 0  # ... after which the folder was intact and the next start resumed cleanly
    runs_finished: int = 0  # runs driven to max_steps and checked
    kills_in_training: int = 0  # kills after the process said "training"/"resuming" (the rest hit start-up)
    kills_mid_write: int = 0  # kills that left a temporary file behind: a write was cut
    failures: list[str] = field(default_factory=list)


def make_images(root: Path, n: int = 32) -> Path:
    """n small generated images: the ones the tests train on (tests/conftest.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_image_folder

    make_image_folder(root, n=n)
    return root


def train_command(data: Path, run: Path, max_steps: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "gankit", "train", "--data", str(data), "--run", str(run), "--no-progress",
            "--device", "cpu", "--precision", "fp32", "--resolution", "16", "--batch-size", "8",
            "--epochs", str(epochs), "--max-steps", str(max_steps),
            "--set", "model.ngf=8", "--set", "model.ndf=8", "--set", "model.nz=16",
            "--set", "log.every=1", "--set", "log.checkpoint_every=1", "--set", "log.n_samples=16",
            "--set", "log.checkpoint_minutes=0.0001",  # last.pt inside epochs too, as often as write_share allows
            "--set", "eval.every=0"]


def checkpoint_problems(run: Path) -> tuple[list[str], int]:
    """(problems, iteration of the newest good checkpoint or -1): every *.pt must load and verify."""
    from gankit.checkpoint import load_checkpoint, load_latest_checkpoint
    from gankit.errors import RunError

    problems = []
    for path in sorted((run / "checkpoints").glob("*.pt")):
        try:
            load_checkpoint(path)
        except RunError as e:
            problems.append(str(e))
    found = load_latest_checkpoint(run / "checkpoints") if (run / "checkpoints").is_dir() else None
    return problems, (found[0]["iteration"] if found else -1)


def final_problems(run: Path, max_steps: int) -> list[str]:
    """What is wrong with a finished run folder (empty when nothing)."""
    problems, iteration = checkpoint_problems(run)
    if iteration != max_steps:
        problems.append(f"last checkpoint at iteration {iteration}, expected {max_steps}")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"metrics.jsonl line {n} is torn: {line[:60]!r}")
    steps = [r["step"] for r in records if r.get("kind") == "step"]
    if steps != list(range(1, max_steps + 1)):
        dup = sorted({s for s in steps if steps.count(s) > 1})
        problems.append(f"step lines are not 1..{max_steps} once each ({len(steps)} lines, duplicated: {dup[:5]})")
    epochs = [r["epoch"] for r in records if r.get("kind") == "epoch"]
    if epochs != list(range(1, len(epochs) + 1)):
        problems.append(f"epoch lines are not 1..N once each: {epochs}")
    left = _temporaries(run)
    if left:
        problems.append(f"temporary files left: {[str(p.relative_to(run)) for p in left]}")
    return problems


def _temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*") if p.is_file() and p.name.endswith((".tmp", ".link"))]


STARTED = ("training ", "resuming ")  # the line gankit prints once the run folder is loaded and training begins


class Launch:
    """One `gankit train` process, its stderr in a file, and when it said it started training."""

    def __init__(self, cmd: list[str], env: dict, err_path: Path):
        self.err_path = err_path
        with open(err_path, "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.t0 = time.perf_counter()

    def started(self) -> bool:
        return any(w in self.err_path.read_text() for w in STARTED)

    def wait_until(self, deadline: float, until_started: bool = False) -> bool:
        """Wait until `deadline` (perf_counter), or until training started; True when the process ended."""
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                return True
            if until_started and self.started():
                return False
            time.sleep(0.02)
        return self.proc.poll() is not None


def soak(workdir: Path, kills: int = 100, seed: int = 0, max_steps: int = 24, epochs: int = 12,
         start_share: float = 0.25, log=print) -> Soak:
    """SIGKILL `kills` training processes at random moments; see the module docstring for the checks.

    A share `start_share` of the kills lands in start-up (imports, data loading, loading the checkpoint
    and rewriting the metrics log on resume), the rest while training, uniformly over the time the
    remaining iterations took in an uninterrupted run plus 20% of the whole training (the closing
    writes: last samples, plots, GIF), so that some resumes also run to the end. Both durations are re-measured as the soak goes,
    so a busy machine does not push every kill into start-up.
    """
    rng = random.Random(seed)
    result = Soak()
    data = make_images(workdir / "images")
    env = {**os.environ, "GANKIT_CACHE_DIR": str(workdir / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    err_path = workdir / "stderr.txt"

    # One uninterrupted run: how long start-up and training take here, and a folder that must already pass.
    probe = Launch(train_command(data, workdir / "probe", max_steps, epochs), env, err_path)
    probe.wait_until(float("inf"), until_started=True)
    startup = time.perf_counter() - probe.t0
    probe.proc.wait()
    training = time.perf_counter() - probe.t0 - startup
    if probe.proc.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{err_path.read_text()}")
    problems = final_problems(workdir / "probe", max_steps)
    if problems:
        raise SystemExit(f"the uninterrupted run is already broken: {problems}")
    log(f"an uninterrupted run: {startup:.1f}s start-up, {training:.1f}s training; killing at random moments")

    round_no = 0
    run = workdir / f"run{round_no}"
    best_before = -1
    pending = False  # a kill whose resume is being watched: it survived when the next process runs cleanly
    while result.attempted < kills:
        p = Launch(train_command(data, run, max_steps, epochs), env, err_path)
        if best_before >= max_steps:  # trained to the end: this start only finishes up, and is not killed
            ended = p.wait_until(float("inf"))
        elif rng.random() < start_share:
            ended = p.wait_until(p.t0 + rng.uniform(0.1, startup))
        else:
            ended = p.wait_until(float("inf"), until_started=True)
            if not ended:
                startup = 0.8 * startup + 0.2 * (time.perf_counter() - p.t0)
                left = training * (max_steps - max(best_before, 0)) / max_steps
                ended = p.wait_until(time.perf_counter() + rng.uniform(0, left + 0.2 * training))
        if ended:  # finished (or failed) before the kill
            if p.proc.returncode != 0:
                result.failures.append(f"{run.name} exited {p.proc.returncode}: {err_path.read_text().strip()[-300:]}")
            elif pending:
                result.survived += 1
            pending = False
            problems = final_problems(run, max_steps)
            if problems:
                result.failures.append(f"finished run {run.name}: {'; '.join(problems)}")
            result.runs_finished += 1
            round_no += 1
            run, best_before = workdir / f"run{round_no}", -1
            continue
        os.kill(p.proc.pid, signal.SIGKILL)
        p.proc.wait()
        if pending:  # the previous kill's resume ran until this kill: it survived
            result.survived += 1
        result.attempted += 1
        result.kills_in_training += p.started()
        result.kills_mid_write += bool(_temporaries(run))
        problems, best = checkpoint_problems(run)
        if best < best_before:
            problems.append(f"newest good checkpoint went back from iteration {best_before} to {best}")
        best_before = max(best, best_before)
        if problems:
            result.failures.append(f"kill {result.attempted}: {'; '.join(problems)}")
        pending = not problems
        if result.attempted % 10 == 0:
            log(f"{result.attempted} kills, {result.survived} survived so far, {result.runs_finished} runs finished")

    # Finish the last run without a kill: it must resume and end complete.
    p = Launch(train_command(data, run, max_steps, epochs), env, err_path)
    p.proc.wait()
    if p.proc.returncode != 0:
        result.failures.append(f"final resume of {run.name} exited {p.proc.returncode}: {err_path.read_text().strip()[-300:]}")
    else:
        result.survived += pending
        problems = final_problems(run, max_steps)
        if problems:
            result.failures.append(f"finished run {run.name}: {'; '.join(problems)}")
        result.runs_finished += 1
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=24)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gankit-soak-"))
    t0 = time.perf_counter()
    try:
        r = soak(workdir, args.kills, args.seed, args.max_steps)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for f in r.failures:
        print(f"FAIL {f}")
    print(f"kills survived / attempted: {r.survived} / {r.attempted}  ({r.runs_finished} runs finished and checked, "
          f"{r.kills_in_training} kills after training began, {r.kills_mid_write} cut a write, {time.perf_counter() - t0:.0f}s)")
    sys.exit(1 if r.failures or r.survived != r.attempted else 0)


if __name__ == "__main__":
    main()
