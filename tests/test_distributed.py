"""torchrun + DDP on CPU (gloo): two real processes launched the way users launch them.

One module-scoped pair of launches (6 iterations, then a resume to 10) feeds the tests. Each launch is two
torchrun "machines" (`--nnodes 2`, one process each) in two folders, so that the relative run folder of
one is not on the other's "disk": the resume must come from process 0's copy alone. The models have no
BatchNorm, so 2 processes x 4 images must compute what 1 process x 8 images computes, with DiffAugment
(p 0.5) and instance noise on: their per-sample draws are made for the global batch and sharded like the noise.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import gankit
from conftest import make_image_folder, tiny_layers
from gankit import distributed
from gankit.checkpoint import load_checkpoint
from gankit.errors import ConfigError
from gankit.train import run_training

NO_BATCHNORM = {"g_norm": "none", "d_norm": "none"}
# per-sample random draws in D's view of every batch (augmentation parameters and masks, noise)
TRICKS = {"augment": "color,translation,cutout", "augment_p": 0.5, "instance_noise": 0.1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True, scope="module")
def _torchrun_temp(tmp_path_factory):
    """torchrun makes a torchelastic_* folder for its logs in the temp folder and leaves it there: launched ones keep
    theirs among pytest's temp folders, which pytest cleans, instead of adding a few to /tmp on every run. (Module
    scope: the module's fixtures that launch runs are set up before any function-scoped one.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(tmp_path_factory.mktemp("torchrun_temp")))
        yield


def _torchrun_env() -> dict[str, str]:
    """The environment for a torchrun launch of this source tree's gankit, one thread per process."""
    src = str(Path(gankit.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _layers(images: Path, cache: Path, **train) -> list[dict]:
    layers = tiny_layers(images, epochs=5, **TRICKS, **train)
    layers[0]["model"].update(NO_BATCHNORM)
    layers[0]["data"]["cache_dir"] = str(cache)
    layers[0]["log"].update(plots=False, tensorboard=False)
    return layers


def torchrun(args: list[str], cwd: Path, nproc: int = 2, rc: int = 0) -> subprocess.CompletedProcess:
    """`torchrun --nnodes 1 --nproc_per_node N --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT -m gankit train ...`"""
    env = {**_torchrun_env(), "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
           "-m", "gankit", "train", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def torchrun_nodes(args: list[str], folders: list[Path]) -> list[subprocess.CompletedProcess]:
    """`torchrun --nnodes N --nproc_per_node 1 --node-rank i --master-addr ... -m gankit train ...` run at once in
    each of N folders (machine i runs in folders[i]): several machines, each with its own disk for relative paths."""
    env = _torchrun_env()
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(folders)),
                               "--nproc_per_node", "1", "--node-rank", str(i), "--master-addr", "127.0.0.1",
                               "--master-port", str(port), "-m", "gankit", "train", *args],
                              cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, folder in enumerate(folders)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_bad_data_under_torchrun_is_process_0s_one_line_error(tmp_path):
    """Rank 0 reads the config and checks the dataset (`from_main`) while the others wait: when it fails, they stop
    quietly instead of each reporting its lost connection to rank 0 as an internal error (torchrun then exits 1,
    as for any failure)."""
    missing = tmp_path / "missing"
    proc = torchrun(["--data", str(missing), "--run-dir", "run"], tmp_path, rc=1)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: data folder '{missing}' does not exist"), proc.stderr
    assert "internal error" not in proc.stderr and "exitcode  : 1" not in proc.stderr  # no rank failed as a bug



def test_rank_0_failing_alone_mid_run_is_its_one_line_error(tmp_path):
    """Rank 0 alone writes the run folder; when that fails (here `samples` is a file), the other rank's broken
    collective is not reported as a bug: whichever of the two ends first, one `error:` line, rank 0's."""
    images = tmp_path / "images"
    make_image_folder(images)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_layers(images, tmp_path / "cache")[0]))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "samples").write_text("not a folder")
    proc = torchrun(["--config", str(config), "--run-dir", "run"], tmp_path, rc=1)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    expected = "'run/samples' is a file where a folder is needed"  # as the user wrote --run-dir: relative
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "internal error" not in proc.stderr

def _launched(procs: list[subprocess.CompletedProcess], rc: int = 0) -> subprocess.CompletedProcess:
    """Process 0's launch, once every machine's launch ended with `rc`."""
    assert [p.returncode for p in procs] == [rc] * len(procs), "\n".join(p.stdout[-2000:] + p.stderr[-3000:] for p in procs)
    return procs[0]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """A run on 2 machines (one process each, each in its own folder) stopped after 6 iterations (mid-epoch 2),
    then resumed by a second launch to 10."""
    root = tmp_path_factory.mktemp("ddp")
    images, cache, work, other = root / "images", root / "cache", root / "work", root / "other"
    make_image_folder(images)  # 32 images: 4 global batches of 8 per epoch
    work.mkdir()
    other.mkdir()
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(_layers(images, cache)[0]))
    first = _launched(torchrun_nodes(["--config", str(config), "--max-steps", "6", "--run-dir", "run"], [work, other]))
    after_first = {
        "files": sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()),
        "metrics": (work / "run" / "metrics.jsonl").read_text(),
        "ckpt": load_checkpoint(work / "run" / "checkpoints" / "last.pt"),
        "stdout": first.stdout,
        "stderr": first.stderr,
    }
    # the resume also has a time budget (one that never ends it): the ranks then share one clock every step
    _launched(torchrun_nodes(["--config", str(config), "--max-steps", "10", "--minutes", "60", "--run-dir", "run"],
                             [work, other]))
    return {"root": root, "images": images, "cache": cache, "work": work, "other": other, "config": config,
            "first": after_first}


def _steps(metrics_text: str) -> list[int]:
    return [r["step"] for r in map(json.loads, metrics_text.splitlines()) if r["kind"] == "step"]


@pytest.mark.slow
def test_two_processes_write_one_run_folder_once(ddp_runs):
    first = ddp_runs["first"]
    files = first["files"]
    assert {"run/config.yaml", "run/metrics.jsonl", "run/checkpoints/last.pt", "run/checkpoints/epoch_0001.pt",
            "run/generator.safetensors", "run/samples/epoch_0001.png"} <= set(files)
    assert all(f.startswith("run/") for f in files), files  # one run folder, nothing else written
    # only rank 0 logs: every logged step appears once, and the global batch counts the images
    assert _steps(first["metrics"]) == [2, 4, 6]
    rows = [json.loads(x) for x in first["metrics"].splitlines()]
    assert all(r["d_updates"] == r["step"] for r in rows if r["kind"] == "step")
    assert first["ckpt"]["iteration"] == 6 and first["ckpt"]["cursor"] == 6
    assert not any(k.startswith("module.") for k in first["ckpt"]["G"])  # checkpoints as without DDP
    assert first["stdout"].count("done:") == 1
    assert first["stderr"].count("images at 16px") == 1  # the start line: one process speaks, not each of them
    assert not list(ddp_runs["other"].iterdir())  # the other machine's disk got nothing, not even an empty folder


@pytest.mark.slow
def test_a_resume_whose_process_0_is_on_a_machine_without_the_run_is_refused(ddp_runs):
    """Machines that share no disk: process 0 must run where the run folder is, or it would start the run again."""
    args = ["--config", str(ddp_runs["config"]), "--max-steps", "12", "--run-dir", "run"]
    procs = torchrun_nodes(args, [ddp_runs["other"], ddp_runs["work"]])
    first = _launched(procs, rc=1)
    # process 1, the first (and only) of its machine, says why it stops, on that machine's terminal
    assert [line for line in procs[1].stderr.splitlines() if "error:" in line] == \
        ["error: process 0 stopped: its error, on its machine's terminal, says why"]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: another machine holds run 'run' at iteration 10, process 0's at none: start process 0 on "
                      "the machine that holds the run (torchrun --node-rank 0 there, with --master-addr naming it), "
                      "or keep run folders on a disk all machines share"], first.stderr[-3000:]
    assert not list(ddp_runs["other"].iterdir())
    assert load_checkpoint(ddp_runs["work"] / "run" / "checkpoints" / "last.pt")["iteration"] == 10


@pytest.mark.slow
def test_resumed_two_process_run_equals_one_process_with_the_global_batch(ddp_runs):
    work = ddp_runs["work"]
    assert _steps((work / "run" / "metrics.jsonl").read_text()) == [2, 4, 6, 8, 10]
    ddp = load_checkpoint(work / "run" / "checkpoints" / "last.pt")
    single_run = run_training(_layers(ddp_runs["images"], ddp_runs["cache"], max_steps=10),
                              ddp_runs["root"] / "single")
    single = load_checkpoint(single_run / "checkpoints" / "last.pt")
    assert ddp["iteration"] == single["iteration"] == 10

    def logged(run: Path) -> list[dict]:
        return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"]

    for a, b in zip(logged(work / "run"), logged(single_run), strict=True):  # the global batch's means, not sums
        for key in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), (a["step"], key, a[key], b[key])
    assert not [k for k in single["G"] if "running_mean" in k], "model.g_norm=none must build G without BatchNorm"
    for net in ("G", "D"):
        assert ddp[net].keys() == single[net].keys()
        for k in single[net]:
            torch.testing.assert_close(ddp[net][k], single[net][k], rtol=0, atol=1e-5, msg=f"{net} {k}")
    # and the 4 resumed steps moved the weights far more than the tolerance (Adam: ~lr 1.5e-4 per step)
    first = ddp_runs["first"]["ckpt"]
    assert max((first["G"][k] - ddp["G"][k]).abs().max().item() for k in first["G"]) > 2e-4


@pytest.mark.slow
def test_each_machine_reads_its_own_copy_of_the_images_and_the_copies_must_match(tmp_path):
    """`--data images` (relative) names each machine's own copy, decoded into its own cache: the same images train;
    copies that differ by one image are refused in one line before training, not trained on as a mix."""
    machines = [tmp_path / "m0", tmp_path / "m1"]
    for m in machines:
        make_image_folder(m / "images")
    layers = _layers(Path("images"), Path("cache"), max_steps=2)
    layers[0]["data"]["path"] = "images"  # relative: each machine's own folder
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(layers[0]))
    _launched(torchrun_nodes(["--config", str(tmp_path / "c.yaml"), "--data", "images", "--run-dir", "run"], machines))
    assert load_checkpoint(machines[0] / "run" / "checkpoints" / "last.pt")["iteration"] == 2
    assert (machines[1] / "cache").is_dir() and not (machines[1] / "run").exists()

    Image.open(machines[1] / "images" / "img_000.png").transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(
        machines[1] / "images" / "img_000.png")
    procs = torchrun_nodes(["--config", str(tmp_path / "c.yaml"), "--data", "images", "--run-dir", "run2"], machines)
    errors = [line for line in _launched(procs, rc=1).stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: the processes' images differ (32 images at 16px from 'images' in process 0): every "
                      "machine needs the same copy of the dataset"], procs[0].stderr[-3000:]
    assert [line for line in procs[1].stderr.splitlines() if "error:" in line] == errors  # on the other machine too
    assert not (machines[0] / "run2" / "checkpoints").exists()


def _sigkill_mid_run(agents: list[subprocess.Popen], metrics: Path, rank: int) -> bool:
    """SIGKILL the process of `rank` (a child of one of torchrun's `agents`) once the run's `metrics` show 5 epoch
    ends (last.pt is written); False when the run ended (or 120 s went by) first."""
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(a.poll() is None for a in agents):
        time.sleep(0.05)
        if metrics.is_file() and metrics.read_text().count('"kind": "epoch"') >= 5:  # epochs ended: last.pt is written
            for agent in agents:
                for pid in subprocess.run(["ps", "-o", "pid=", "--ppid", str(agent.pid)], capture_output=True,
                                          text=True).stdout.split():
                    with contextlib.suppress(OSError):
                        if f"\0RANK={rank}\0".encode() in b"\0" + Path(f"/proc/{pid}/environ").read_bytes():
                            os.kill(int(pid), signal.SIGKILL)
                            return True
    return False


def _stderr_at_the_end(agents: list[subprocess.Popen]) -> str:
    """What torchrun's `agents` (each started in a session of its own) and their processes wrote on stderr, once they
    ended; a run that hangs is killed, torchrun and its processes."""
    try:
        outs = [a.communicate(timeout=150) for a in agents]
    finally:
        for a in agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(a.pid, signal.SIGKILL)
    return "".join(e for _, e in outs)


def _long_run_config(tmp_path: Path) -> list[dict]:
    """The layers of a 200-iteration run (50 epochs of 4, a step line every 4), also written to tmp_path/c.yaml for
    torchrun's `gankit train --config`: long enough to kill a process of it mid-run."""
    images, cache = tmp_path / "images", tmp_path / "cache"
    make_image_folder(images)
    layers = _layers(images, cache)
    layers[0]["train"]["epochs"] = 50  # 200 iterations
    layers[0]["log"]["every"] = 4
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(layers[0]))
    return layers


@pytest.mark.slow
def test_a_process_killed_mid_run_is_restarted_by_torchrun_and_nothing_is_lost(tmp_path):
    """Two torchrun "machines" (`--nnodes 2`, c10d rendezvous, `--max-restarts 1`, one process each, one folder):
    process 1 is SIGKILLed once the run has checkpoints. Its machine's torchrun restarts it and the other's restarts
    its own process for the new rendezvous (keeping its restart count, so the counts of the two machines differ);
    the new processes meet on keys of their own in the store (the dead ones' would refuse the connection), resume
    from last.pt, and the run ends with the weights of one uninterrupted process on the global batch."""
    layers = _long_run_config(tmp_path)
    env, port = _torchrun_env(), _free_port()
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "1",
                                "-m", "gankit", "train", "--config", str(tmp_path / "c.yaml"), "--run-dir", "run"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # (a group of its own, to kill with its processes)
              for _ in range(2)]
    killed = _sigkill_mid_run(agents, tmp_path / "run" / "metrics.jsonl", rank=1)
    err = _stderr_at_the_end(agents)
    assert killed, "the run ended before process 1 could be killed: make it longer"
    assert [a.returncode for a in agents] == [0, 0], err[-3000:]
    assert "torchrun now restarts the processes (--max-restarts), which resume from the last checkpoint" in err
    assert "resuming from iteration" in err and "internal error" not in err, err[-3000:]
    ddp = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    single = load_checkpoint(run_training(layers, tmp_path / "single") / "checkpoints" / "last.pt")
    assert ddp["iteration"] == single["iteration"] == 200
    for net in ("G", "D"):
        for k in single[net]:
            torch.testing.assert_close(ddp[net][k], single[net][k], rtol=0, atol=1e-5, msg=f"{net} {k}")


@pytest.mark.slow
def test_process_0_killed_mid_run_is_said_in_one_line_by_the_process_left(tmp_path):
    """`kill -9` of process 0, the one that speaks: the process left loses its peer and says so in one line, with how
    to resume, before torchrun's SIGTERM stops it. It said nothing (only the first process of a machine spoke) and
    died of that SIGTERM: torchrun's summary alone told that process 0 had been killed."""
    _long_run_config(tmp_path)
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-port",
                              str(_free_port()), "-m", "gankit", "train", "--config", str(tmp_path / "c.yaml"),
                              "--run-dir", "run"], cwd=tmp_path, env=_torchrun_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed = _sigkill_mid_run([agent], tmp_path / "run" / "metrics.jsonl", rank=0)
    err = _stderr_at_the_end([agent])
    assert killed, "the run ended before process 0 could be killed: make it longer"
    assert agent.returncode == 1
    assert [line for line in err.splitlines() if "error:" in line] == [
        "error: another process of this torchrun launch stopped (killed, or by an error it printed above or, on another "
        "machine, there; torchrun's summary is below); the same command resumes from the last checkpoint"], err[-3000:]


def test_one_process_of_each_machine_says_that_a_process_was_lost(monkeypatch):
    """The processes leaving the group on an error claim the line in the store: the first of each machine says it
    (a process that stops on an error of its own claims it before its peers lose it); the others, which lose a
    peer, ignore torchrun's SIGTERM until they have stopped."""
    store, before = torch.distributed.HashStore(), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(distributed, "_says_the_loss", None)
    assert distributed.says_the_loss()  # no claim (the store out of reach): the first process of the machine says it
    said = []
    try:
        for machine, lost in (("0", False), ("0", True), ("1", True)):
            monkeypatch.setenv("GROUP_RANK", machine)
            distributed._claim_the_line(store, lost)
            said.append((distributed.says_the_loss(), signal.getsignal(signal.SIGTERM) == signal.SIG_IGN))
            signal.signal(signal.SIGTERM, before)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert said == [(True, False), (False, True), (True, True)]


def test_ctrl_c_to_torchrun_stops_every_process_within_its_grace_period_and_saves(tmp_path):
    """torchrun forwards a Ctrl-C (or a scheduler's SIGTERM) to its processes once and SIGKILLs them
    --shutdown-timeout seconds later. The processes agree on the iteration to stop after within seconds, whatever
    log.every is (here larger than the run), then save it: the run resumes from there, not from an epoch end.
    Metric lines by time (log.every_minutes, here tiny) come where the processes last agreed on their clocks, so
    all of them write each line at the same iteration (or they would hang in its all-reduce)."""
    import time

    images, cache = tmp_path / "images", tmp_path / "cache"
    make_image_folder(images)
    layers = _layers(images, cache)
    layers[0]["train"]["epochs"] = 5000  # 20,000 iterations: the run would go on for minutes
    layers[0]["log"].update(every=100_000, checkpoint_every=100_000, every_minutes=1e-9)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(layers[0]))
    env = _torchrun_env()
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--shutdown-timeout", "20", "--master-port", str(_free_port()), "-m", "gankit", "train",
                              "--config", str(tmp_path / "c.yaml"), "--run-dir", "run"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = tmp_path / "run" / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and agent.poll() is None and not (
            metrics.is_file() and metrics.read_text().count('"kind": "epoch"') >= 3):
        time.sleep(0.05)
    assert agent.poll() is None, "the run ended before the Ctrl-C"
    agent.send_signal(signal.SIGINT)
    out, err = agent.communicate(timeout=120)
    assert "stopping within seconds, after the same iteration in every process" in err, err[-3000:]
    assert "forcefully exiting" not in err, err[-3000:]  # torchrun did not have to SIGKILL them
    said = [line for line in err.splitlines() if line.startswith("interrupted at iteration")]
    assert len(said) == 1 and "the same torchrun command (with --run-dir run)" in said[0], err[-3000:]
    iteration = int(said[0].split()[3].rstrip(";"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == iteration >= 12
    steps = _steps(metrics.read_text())
    assert steps == sorted(set(steps)) and 2 in steps, steps  # the first agreement (at iteration 1): a line at 2


def test_processes_that_cannot_reach_each_other_get_one_line(monkeypatch):
    """Process 1 of 2 whose process 0 never listens at MASTER_ADDR:MASTER_PORT: a GankitError (one line), not an
    internal error with a traceback."""
    from gankit.errors import GankitError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))  # nothing listens there
    monkeypatch.setattr(distributed, "_TIMEOUT", datetime.timedelta(seconds=2))
    with pytest.raises(GankitError, match="torchrun's processes could not connect .*: check that every machine reaches"):
        with distributed.process_group(torch.device("cpu")):
            pass
    assert not torch.distributed.is_initialized()


def test_torchrun_on_mps_is_refused_in_one_line(monkeypatch):
    """gloo, the backend for devices other than CUDA, does not run on Apple GPUs: refused before any connection."""
    from gankit.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="torchrun with --device mps is not supported .*under torchrun with --device cpu"):
        with distributed.process_group(torch.device("mps")):
            pass
    assert not torch.distributed.is_initialized()


def _as_rank(monkeypatch, r: int, n: int = 2) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: n)
    monkeypatch.setattr(distributed, "rank", lambda: r)


def test_per_sample_draws_follow_the_global_batch(monkeypatch):
    """What rank r draws for its half of the batch is the global batch's draw for those samples: DiffAugment
    (each op, and the p < 1 masks), instance noise and the gradient penalty's mixing weights."""
    from gankit.data.augment import DiffAugment
    from gankit.losses import gradient_penalty
    from gankit.tricks import add_instance_noise

    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = torch.rand(8, 3, 16, 16) * 2 - 1
    augment = DiffAugment("color,translation,cutout", p=0.5)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))

    def draws(a, b):
        return [augment(a), add_instance_noise(a, 0.3), gradient_penalty(lambda v: critic(v).view(-1), a, b)]

    torch.manual_seed(5)
    whole = draws(x, y)
    halves = []
    for r in (0, 1):
        _as_rank(monkeypatch, r)
        torch.manual_seed(5)
        halves.append(draws(x[r * 4:(r + 1) * 4], y[r * 4:(r + 1) * 4]))
    for i in (0, 1):
        torch.testing.assert_close(torch.cat([h[i] for h in halves]), whole[i], rtol=0, atol=1e-6)
    assert (whole[0] - x).abs().mean() > 0.1 and (whole[1] - x).abs().mean() > 0.1  # the draws did change the images
    # the penalty is a mean over samples: the ranks' average (what DDP's gradient average sees) is the whole's
    torch.testing.assert_close((halves[0][2] + halves[1][2]) / 2, whole[2], rtol=1e-5, atol=1e-6)


def test_each_start_of_the_processes_meets_on_a_token_of_its_own():
    """`distributed._launch_token` on a store that holds an earlier start's keys (as torchrun's does after a
    restart): whether process 0 comes first (and finds the earlier start's questions) or last, every process of a
    start gets the same token, a new one each start."""
    import threading
    import time
    from datetime import timedelta

    store = torch.distributed.HashStore()
    store.set_timeout(timedelta(seconds=20))

    def start(size: int, zero_first: bool) -> list[str | None]:
        got: list[str | None] = [None] * size

        def process(r: int) -> None:
            if (r == 0) != zero_first:
                time.sleep(0.2)
            got[r] = distributed._launch_token(store, r, size)

        threads = [threading.Thread(target=process, args=(r,), daemon=True) for r in range(size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        return got

    tokens = []
    for zero_first in (False, True, True, False):
        got = start(3, zero_first)
        assert None not in got and len(set(got)) == 1, got
        tokens.append(got[0])
    assert len(set(tokens)) == 4


def test_process_0_evaluates_with_the_threads_of_its_machines_waiting_processes(monkeypatch):
    """torchrun gives each of N processes on a machine one thread; process 0 evaluates FID/KID alone while the others
    wait in a collective, so on a CPU it takes N threads for that (at most the cores it may run on), then gives them
    back. Measured: 2 processes on 2 cores, evaluations 1.7-2x faster (RESULTS.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = torch.device("cpu")
        with distributed.machine_threads(cpu) as n:
            assert n == 1 and torch.get_num_threads() == 1  # one process: nothing to borrow
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        with distributed.machine_threads(cpu) as n:
            assert n == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with distributed.machine_threads(torch.device("cuda")) as n:  # Inception runs on the GPU
            assert n == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # pinned to one core
        with distributed.machine_threads(cpu) as n:
            assert n == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_what_a_message_says_to_type_works_under_torchrun(tmp_path, monkeypatch, capsys):
    """After `-m gankit train`, torchrun takes `--run` for an abbreviation of its own `--run-path` and stops
    ("ambiguous option"): under torchrun the fixes gankit's messages suggest name `--run-dir`."""
    from gankit.checkpoint import load_latest_checkpoint
    from gankit.errors import RunError
    from gankit.train import resolve_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {ngf: [1, 2]}\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"x")

    def said(world_size: str) -> list[str]:
        monkeypatch.setenv("WORLD_SIZE", world_size)
        out = []
        for attempt in (lambda: resolve_config([], run), lambda: load_latest_checkpoint(run / "checkpoints")):
            with pytest.raises(RunError) as e:
                attempt()
            out.append(str(e.value))
        capsys.readouterr()  # the warning about last.pt
        return out + [distributed.resume_command(run)]

    alone, under_torchrun = said("1"), said("2")
    assert [m.count("--run ") for m in alone] == [1, 1, 1] and not any("--run-dir" in m for m in alone)
    assert [m.count("--run-dir ") for m in under_torchrun] == [1, 1, 1]
    assert not any("--run " in m for m in under_torchrun)
    assert "torchrun" in under_torchrun[2]


def test_global_batch_must_split_evenly():
    assert distributed.local_batch(64, 4) == 16
    with pytest.raises(ConfigError, match=r"batch_size 10 .* not divisible by the 4 processes.*--batch-size 8 or 12"):
        distributed.local_batch(10, 4)
    # the process counts that split it too; and one size is named once ("--batch-size 2 or 2")
    with pytest.raises(ConfigError, match=r"--batch-size 14 or 16, or --nproc_per_node 1, 3, 5 or 15$"):
        distributed.local_batch(15, 2)
    with pytest.raises(ConfigError, match=r"--batch-size 2, or --nproc_per_node 1$"):
        distributed.local_batch(1, 2)


def test_a_resume_on_a_process_count_that_does_not_split_its_batch_names_only_process_counts(image_folder, tmp_path,
                                                                                           monkeypatch):
    """A resumed run keeps its batch size: "use --batch-size 6 or 9", followed, was refused as another config
    ("train.batch_size: 8 -> 9 ... drop those overrides")."""
    layers = tiny_layers(image_folder, max_steps=1)  # a batch of 8
    run_training(layers, tmp_path / "run")
    monkeypatch.setattr(distributed, "world_size", lambda: 3)  # torchrun --nproc_per_node 3 (the check precedes DDP)
    with pytest.raises(ConfigError) as e:
        run_training(layers, tmp_path / "run")
    assert str(e.value) == ("train.batch_size 8 (the global batch) is not divisible by the 3 processes (WORLD_SIZE): "
                            "the resumed run keeps its batch size: use --nproc_per_node 1, 2, 4 or 8")


@pytest.fixture
def one_process_group():
    """A real (single-process) gloo group, so wrap() takes its DDP path in-process."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_ddp_wrapper_is_transparent(one_process_group):
    from gankit.models.dcgan import Generator

    g = Generator(16, nz=8, ngf=8)
    wrapped = distributed.wrap(g, torch.device("cpu"))
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    assert distributed.unwrap(wrapped) is g
    assert wrapped.state_dict().keys() == g.state_dict().keys()  # no "module." prefix
    assert wrapped.nz == 8  # the module's attributes read through
    wrapped.load_state_dict(g.state_dict())
    with pytest.raises(ConfigError, match="sync_batchnorm needs CUDA"):
        distributed.wrap(Generator(16, nz=8, ngf=8), torch.device("cpu"), sync_batchnorm=True)


def _grayscale_output_layer() -> torch.nn.ConvTranspose2d:
    """G's last layer for a grayscale image, channels_last, its weight then put back in NCHW strides (the same
    bytes: one output channel): this CPU's kernel returns that weight's gradient in NHWC strides, cuDNN
    does the converse for an NHWC weight. Either way the strides differ from the parameter's in the size-1
    dimension only."""
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(4, 1, 4, 2, 1).to(memory_format=torch.channels_last)
    layer.weight.data = layer.weight.data.clone(memory_format=torch.contiguous_format)
    return layer


def test_ddp_takes_a_size_one_channel_gradient_in_its_parameters_strides(one_process_group):
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    reference = _grayscale_output_layer()
    reference(x).square().sum().backward()
    assert reference.weight.grad.stride() != reference.weight.stride()  # the case to handle does happen here

    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # DDP's warning is once per process otherwise
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer = _grayscale_output_layer()
            wrapped = distributed.wrap(layer, torch.device("cpu"))  # kept: DDP's hooks die with the wrapper
            wrapped(x).square().sum().backward()
            assert not [w for w in caught if "Grad strides" in str(w.message)]
            torch.testing.assert_close(layer.weight.grad, reference.weight.grad)
            # and plain DDP on the same model does warn (the check above can fail)
            plain = torch.nn.parallel.DistributedDataParallel(_grayscale_output_layer(), gradient_as_bucket_view=True)
            plain(x).square().sum().backward()
    finally:
        torch.set_warn_always(warn_always)
    assert [w for w in caught if "Grad strides" in str(w.message)]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_with_sync_batchnorm(tmp_path):
    make_image_folder(tmp_path / "images")
    layers = tiny_layers(tmp_path / "images", max_steps=4, device="cuda", precision="bf16", sync_batchnorm=True)
    layers[0]["data"]["cache_dir"] = str(tmp_path / "cache")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(layers[0]))
    torchrun(["--config", str(tmp_path / "c.yaml"), "--run-dir", "run"], tmp_path)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 4


def test_a_process_is_torchruns_rank_before_its_group_starts_and_after_it_ends(monkeypatch):
    """`gankit train`'s "done:" line comes after the group is torn down: only process 0 may say it."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_initialized()
    assert distributed.rank() == 1 and not distributed.is_main()
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")  # (not torchrun's: one process is process 0)
    assert distributed.rank() == 0 and distributed.is_main()


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """On the second of several machines, process RANK 3 is the 2nd of its machine: cuda:1, not cuda:3."""
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")


def test_sync_batchnorm_makes_every_batchnorm_a_synchronised_one(one_process_group, monkeypatch):
    """train.sync_batchnorm on GPUs: DDP (which needs the GPU) is left out, the conversion is what is checked."""
    from gankit.models.dcgan import Generator

    monkeypatch.setattr(distributed, "DDP", lambda module, **kwargs: module)
    gpu = torch.device("cuda", 0)
    synced = {type(m) for m in distributed.wrap(Generator(16, nz=8, ngf=8), gpu, sync_batchnorm=True).modules()}
    plain = {type(m) for m in distributed.wrap(Generator(16, nz=8, ngf=8), gpu).modules()}
    assert torch.nn.SyncBatchNorm in synced and torch.nn.BatchNorm2d not in synced
    assert torch.nn.BatchNorm2d in plain and torch.nn.SyncBatchNorm not in plain


def test_the_sync_batchnorm_setting_reaches_both_networks_wrappers(image_folder, tmp_path, monkeypatch, capsys):
    """train.sync_batchnorm is handed to the wrapping of G and of D (one process here: it says it has no effect)."""
    from gankit.train import run_training

    asked, wrap = [], distributed.wrap
    monkeypatch.setattr(distributed, "wrap", lambda module, device, sync_batchnorm=False:
                        asked.append(sync_batchnorm) or wrap(module, device, sync_batchnorm))
    run_training(tiny_layers(image_folder, max_steps=1, sync_batchnorm=True), tmp_path / "run")
    assert asked == [True, True]
    assert "train.sync_batchnorm has no effect in a single process" in capsys.readouterr().err


def test_resume_command_under_torchrun_quotes_the_run_folder(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.resume_command(Path("my run")) == "the same torchrun command (with --run-dir 'my run')"


def test_ddp_forwards_do_not_synchronise_buffers(one_process_group):
    """Process 0 runs G alone for samples and FID while the others wait: a forward that broadcast BatchNorm's
    buffers would be a collective they never join."""
    from gankit.models.dcgan import Generator

    wrapped = distributed.wrap(Generator(16, nz=8, ngf=8), torch.device("cpu"))
    assert wrapped.broadcast_buffers is False


def _two_processes(rank: int, port: int) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(seconds=30))  # a hang fails the test


def _agree(rank: int, port: int, out: str) -> None:
    """Process `rank` of 2 in a real gloo group: what the collectives give it."""
    _two_processes(rank, port)
    try:
        cpu = torch.device("cpu")
        got = {"mean": distributed.mean_over_ranks(torch.tensor([1.0 + 2 * rank, -float(rank)])).tolist(),
               "stop_and_clock": distributed.maxima([float(rank == 1), 10.0 - rank], cpu),
               "clock": distributed.max_over_ranks(3.0 + rank, cpu),
               "same": distributed.same_on_all_ranks([5, 7], cpu),
               "differ": distributed.same_on_all_ranks([5, rank], cpu)}
        Path(out, f"{rank}.json").write_text(json.dumps(got))
    finally:
        torch.distributed.destroy_process_group()


def test_the_processes_agree_on_means_clocks_and_stops(tmp_path):
    """Logged losses are the mean over the processes (the global batch's), a clock and a stop are the largest
    (the latest clock; a stop asked by any process), not their sums."""
    torch.multiprocessing.spawn(_agree, args=(_free_port(), str(tmp_path)), nprocs=2)
    for r in (0, 1):
        assert json.loads((tmp_path / f"{r}.json").read_text()) == {
            "mean": [2.0, -0.5], "stop_and_clock": [1.0, 10.0], "clock": 4.0, "same": True, "differ": False}


def _in_turn(rank: int, port: int, out: str) -> None:
    import time

    from gankit.errors import GankitError

    _two_processes(rank, port)
    try:
        cached = Path(out, "cached")
        with distributed.main_first():
            if rank == 0:
                time.sleep(0.5)  # decoding the dataset into the cache
                cached.write_text("images")
            got = {"found_the_cache": cached.exists()}
        try:
            with distributed.main_first():
                if rank == 0:
                    raise RuntimeError("a bad image")
                got["then"] = "ran the block"
        except (RuntimeError, GankitError) as e:
            got["then"] = str(e)
        got["config"] = distributed.from_main(lambda: {"read by": rank})

        def missing() -> None:
            raise FileNotFoundError("no config.yaml")

        try:
            distributed.from_main(missing)
        except (FileNotFoundError, GankitError) as e:
            got["missing"] = str(e)
        Path(out, f"{rank}.json").write_text(json.dumps(got))
    finally:
        torch.distributed.destroy_process_group()


def test_process_0_runs_the_block_first_and_its_failure_stops_the_others_quietly(tmp_path):
    torch.multiprocessing.spawn(_in_turn, args=(_free_port(), str(tmp_path)), nprocs=2)
    assert [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)] == [
        {"found_the_cache": True, "then": "a bad image", "config": {"read by": 0}, "missing": "no config.yaml"},
        {"found_the_cache": True, "then": distributed.RANK0_STOPPED, "config": {"read by": 0},
         "missing": distributed.RANK0_STOPPED}]


def test_a_command_other_than_train_under_torchrun_is_refused_in_one_line(tmp_path):
    """`torchrun ... -m gankit sanity` ran the test once per process in one folder: one process said the folder was
    "being trained by another gankit process" (on a terminal only when it was process 0), or process 0, stopped by
    torchrun when the other failed first, said "SIGTERM: stopped before it finished". Only train uses the processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
           "-m", "gankit", "sanity", "--epochs", "1", "--copies", "8", "--run-dir", "run", "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**_torchrun_env(), "MASTER_ADDR": "127.0.0.1"},
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [
        "error: gankit sanity runs in one process: only gankit train uses torchrun's processes; run "
        "'gankit sanity ...' without torchrun"], proc.stderr
    assert "stopped before it finished" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["sanity", "--run", "run"], ["sample", "run"], ["evaluate", "run"], ["fid", "a", "b"],
                                  ["compare", "run"]])
def test_every_command_but_train_refuses_torchruns_processes(args, monkeypatch, capsys):
    """Process 0 says it; another waits for torchrun to stop it (here: not at all), then stops without a word."""
    from gankit import cli

    monkeypatch.setattr(cli, "QUIET_PROCESS_WAIT", 0.0)
    for rank, said in (("0", [f"error: gankit {args[0]} runs in one process: only gankit train uses torchrun's "
                              f"processes; run 'gankit {args[0]} ...' without torchrun"]), ("1", [])):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        assert e.value.code == 2 and capsys.readouterr().err.splitlines() == said
