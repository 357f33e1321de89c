"""End-to-end: a tiny run writes every file of the run folder, and resume really continues."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from conftest import IMBALANCED, ctrl_c_at, make_image_folder, tiny_layers
from gankit.checkpoint import load_checkpoint, numbered_checkpoints, save_checkpoint, state_digest
from gankit.errors import ConfigError, RunError
from gankit.report.runs import find_samples
from gankit.runlog import read_metrics
from gankit.train import Trainer, run_training


def test_tiny_run_writes_the_whole_run_folder(image_folder, tmp_path):
    run = run_training(tiny_layers(image_folder), tmp_path / "run")
    for rel in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/epoch_0001.pt",
                "checkpoints/epoch_0002.pt", "generator.safetensors", "samples/epoch_0001.png", "samples/epoch_0002.png"):
        assert (run / rel).is_file(), rel
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    grid = Image.open(run / "samples/epoch_0002.png")
    assert grid.size[0] > 4 * 16  # a 4x4 grid of 16 px images
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    shown = events.Images("samples")  # each epoch's grid in the Images tab, at the step it was drawn
    assert [(e.step, e.width, e.height) for e in shown] == [(s, *grid.size) for s in (4, 8)]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["kind"] == "step"]
    epochs = [x for x in lines if x["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert steps and all(set(("d_loss", "g_loss", "d_acc_real", "d_acc_fake")) <= set(s) for s in steps)
    assert steps[-1]["step"] == 8 and steps[-1]["d_updates"] == 8 and steps[-1]["g_updates"] == 8
    # the models actually learned something: D separates real from fake better than chance by the end
    assert epochs[-1]["d_loss"] != epochs[0]["d_loss"]
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["iteration"] == 8 and ckpt["cursor"] == 8
    weights = load_file(run / "generator.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in ckpt["G"].items())


@pytest.mark.parametrize("share, written, drawn", [(0, [1, 2, 3, 4], 4), (1e-9, [1, 2, 4], 3)])
def test_epoch_end_writings_take_a_bounded_share_of_the_run_and_all_are_written_at_its_end(
        image_folder, tmp_path, monkeypatch, share, written, drawn):
    """Each epoch-end writing (grid, last.pt, numbered checkpoint, plots) is skipped at an epoch end sooner than
    1 / log.write_share times its last duration after it. With a share of ~0 each is done at the first epoch end, at
    the second (the first's duration, imports included, is not counted) and at the run's end; with 0, every epoch
    (the plots of the last epoch end are those the run's end draws)."""
    from gankit.report import plots

    calls = []
    real = plots.write_plots
    monkeypatch.setattr(plots, "write_plots", lambda run_dir: calls.append(1) or real(run_dir))
    layers = tiny_layers(image_folder, epochs=4)
    layers[0]["log"]["write_share"] = share
    run = run_training(layers, tmp_path / "run")
    names = [f"epoch_{e:04d}" for e in written]
    assert sorted(p.stem for p in (run / "samples").iterdir()) == names
    assert sorted(p.stem for p in (run / "checkpoints").glob("epoch_*.pt")) == names  # checkpoint_every 1
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 16
    assert len(calls) == drawn and (run / "plots" / "losses.png").is_file()


def _trainer(layers: list[dict], image_folder, run_dir, resume: bool = False) -> Trainer:
    """A Trainer for these config layers on the 16 px image folder, for tests that drive it by hand."""
    from gankit.config import build_config
    from gankit.data import load_dataset
    from gankit.train import finalize_config

    data = load_dataset(image_folder, 16, progress=False)
    return Trainer(finalize_config(build_config(*layers), data), data, run_dir, resume=resume)


@pytest.mark.parametrize("share, evaluated", [(0, [1, 2, 3, 4, 5]), (1e-9, [1, 2, 5])])
def test_evaluations_take_a_bounded_share_of_the_run_and_the_last_epoch_is_evaluated(image_folder, tmp_path, share,
                                                                                    evaluated):
    """eval.every 1 with eval.share ~0: the first evaluation, the second (the first's duration, Inception's loading
    and the real features included, is not counted) and the run's end; with share 0 every epoch."""
    layers = tiny_layers(image_folder, epochs=5) + [{"eval": {"every": 1, "share": share}}]
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = lambda generate, n: {"fid": 100.0 - trainer.epoch, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n,
                                                 "n_real": 32}
    trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "eval"] == evaluated
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["iteration"] == 20  # FID falls: the last is best


def test_eval_lines_carry_the_epochs_done_where_they_were_measured(image_folder, tmp_path):
    """An eval line had only its step and epoch: the report placed the evaluation that a budget ended inside an epoch
    by the step line of the same step. It carries its own epochs_done now, fractional as the step lines': 1 at the
    first epoch's end, 1.5 where --max-steps 6 (4 batches an epoch) ended the run."""
    layers = tiny_layers(image_folder, epochs=2, max_steps=6) + [{"eval": {"every": 1, "share": 0}}]
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = lambda generate, n: {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32}
    trainer.fit()
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    evals, steps = ({x["step"]: x for x in lines if x["kind"] == kind} for kind in ("eval", "step"))
    assert [x["epochs_done"] for x in evals.values()] == [1.0, 1.5] == [steps[s]["epochs_done"] for s in evals]


def test_a_best_fid_whose_best_pt_could_not_be_written_is_measured_again_by_the_resume(image_folder, tmp_path,
                                                                                        monkeypatch):
    """best.pt was written after last.pt: a full disk (or a kill) between them left a last.pt whose best_fid said
    the best was reached, and no best.pt; the resume never wrote it (the run was complete, or no later FID beat it)."""
    import gankit.train

    def fake_fid(trainer):
        trainer._evaluator = lambda generate, n: {"fid": 50.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32}
        return trainer

    layers = tiny_layers(image_folder, epochs=1) + [{"eval": {"every": 1}}]
    real_save = gankit.train.save_checkpoint

    def disk_full_at_best(state, path, **kw):
        if path.name == "best.pt":
            raise RunError(f"could not write checkpoint '{path}' (No space left on device)")
        real_save(state, path, **kw)

    monkeypatch.setattr(gankit.train, "save_checkpoint", disk_full_at_best)
    with pytest.raises(RunError, match="best.pt"):
        fake_fid(_trainer(layers, image_folder, tmp_path / "run")).fit()
    monkeypatch.undo()
    fake_fid(_trainer(layers, image_folder, tmp_path / "run", resume=True)).fit()
    best, last = (load_checkpoint(tmp_path / "run" / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    assert best["iteration"] == last["iteration"] == 4 and best["best_fid"] == last["best_fid"] == 50.0


def _clock_ahead(monkeypatch) -> list[float]:
    """time.perf_counter, moved on by whatever a stand-in adds to the returned list's one item: an evaluation's
    minutes without waiting for them (a sleep, measured against steps, failed on a busy machine)."""
    clock, ahead = time.perf_counter, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock() + ahead[0])
    return ahead


def _evaluation_taking(monkeypatch, seconds: float, ahead: list[float] | None = None):
    """A stand-in for the trainer's Evaluator whose every evaluation moves the clock on by `seconds` (the clock of
    `_clock_ahead`: `ahead` where the caller moves it too)."""
    ahead = _clock_ahead(monkeypatch) if ahead is None else ahead

    def evaluate(generate, n):
        ahead[0] += seconds
        return {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32}

    return evaluate


def _fit_on_a_slow_clock(layers: list[dict], image_folder, run_dir: Path, monkeypatch) -> list[dict]:
    """Train `layers` into `run_dir` on a fake clock that iteration i moves on by 1000 * i s (so that the real seconds
    of a loaded machine stay far below the tests' tolerance) and each evaluation by 1000 s; metrics.jsonl's lines."""
    ahead = _clock_ahead(monkeypatch)
    trainer = _trainer(layers, image_folder, run_dir)
    trainer._evaluator = _evaluation_taking(monkeypatch, 1000.0, ahead)
    step = trainer.train_iteration

    def slow_step():
        step()
        ahead[0] += 1000.0 * trainer.iteration

    monkeypatch.setattr(trainer, "train_iteration", slow_step)
    trainer.fit()
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_images_per_second_count_training_time_not_the_evaluations_at_epoch_ends(image_folder, tmp_path, monkeypatch):
    """The logging interval after an epoch end excludes that epoch end's writings and evaluation from its img/s.
    The evaluation here moves the clock on by 1000 s (a sleep, measured against steps, failed on a busy machine):
    an interval of 2 steps of 8 images that counted it would show < 0.02 img/s."""
    evaluate = _evaluation_taking(monkeypatch, 1000.0)
    layers = tiny_layers(image_folder, epochs=3) + [{"eval": {"every": 1, "share": 0}}]
    layers[0]["log"]["every"] = 3  # 4 steps an epoch: intervals end at steps 3, 6, 9, 12, so three span epoch ends
    layers[0]["log"]["every_minutes"] = 0  # metric lines by iterations only
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = evaluate
    trainer.fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [x["img_per_s"] for x in lines if x["kind"] == "step" and "img_per_s" in x]
    assert len(rates) == 6 and min(rates) > 1.0, rates  # steps 3, 4 (epoch end), 6, 8 (epoch end), 9, 12


@pytest.mark.parametrize("max_steps", [None, 7])
def test_every_step_line_has_its_images_per_second(image_folder, tmp_path, monkeypatch, max_steps):
    """The step line at an epoch's end (and at a budget's end inside an epoch) had no img_per_s, so TensorBoard's
    step/img_per_s had gaps at steps 4, 8... It is measured as the other lines': training's images since the last
    line over its time. Iteration i moves the clock on by 1000 * i s, the evaluation at each epoch end by 1000 s (left
    out): lines at 3 (24 images in 1000 + 2000 + 3000 s), 4 (8 in 4000 s), 6 (16 in 11000 s), then 8 (16 in 15000 s),
    or 7 (8 in 7000 s) where max_steps ends the run."""
    layers = tiny_layers(image_folder, epochs=2, max_steps=max_steps) + [{"eval": {"every": 1, "share": 0}}]
    layers[0]["log"].update(every=3, every_minutes=0)  # 4 steps of 8 of the 32 images an epoch
    lines = _fit_on_a_slow_clock(layers, image_folder, tmp_path / "run", monkeypatch)
    rates = {x["step"]: x.get("img_per_s") for x in lines if x["kind"] == "step"}
    last = {None: (8, 16 / 15_000), 7: (7, 8 / 7000)}[max_steps]
    want = {3: 24 / 6000, 4: 8 / 4000, 6: 16 / 11_000, last[0]: last[1]}
    assert rates == {k: pytest.approx(v, rel=0.02) for k, v in want.items()}, rates


@pytest.mark.parametrize("every", [2, 50])
def test_an_epoch_lines_images_per_second_is_the_epochs_own_rate(image_folder, tmp_path, monkeypatch, every):
    """The epoch line's img_per_s was the mean of its step lines' (123.7 in metrics.jsonl where the console said
    164 img/s), and absent when an epoch had fewer iterations than log.every (a small dataset: every = 50 here). It
    is now the epoch's images over its training time. Iteration i moves the clock on by 1000 * i s (so that the
    real seconds of a loaded machine stay far below the tolerance), and epoch 1's evaluation by 1000 s: epoch 1
    trains 32 images in 1000 + 2000 + 3000 + 4000 s (the mean of the step lines at 2 and 4 would be 0.0038, not
    0.0032), epoch 2 in 5000 + ... + 8000 s, its evaluation left out."""
    layers = tiny_layers(image_folder, epochs=2) + [{"eval": {"every": 1, "share": 0}}]
    layers[0]["log"].update(every=every, every_minutes=0)  # 4 steps of 8 of the 32 images an epoch
    lines = _fit_on_a_slow_clock(layers, image_folder, tmp_path / "run", monkeypatch)
    rates = [x.get("img_per_s") for x in lines if x["kind"] == "epoch"]
    assert rates == [pytest.approx(32 / 10_000, rel=0.02), pytest.approx(32 / 26_000, rel=0.02)], rates


def test_the_progress_lines_images_per_second_leave_out_the_epoch_ends_writings(image_folder, tmp_path, monkeypatch,
                                                                                  capsys):
    """Off a terminal, an epoch's progress line said 119 img/s where training ran at 600: its rate counted the
    previous epoch end's evaluation. Here each evaluation moves the clock on by 1000 s: the line of epoch 3 (after
    epoch 1's, two evaluations later) shows training's rate, not the < 0.1 img/s that counting them would give,
    and its time spent still counts them."""
    from gankit import console

    evaluate = _evaluation_taking(monkeypatch, 1000.0)
    monkeypatch.setattr(console, "LINE_EVERY", 1e9)  # lines at the first epoch's end and the run's last only
    layers = tiny_layers(image_folder, epochs=3) + [{"eval": {"every": 1, "share": 0}}]
    layers[0]["log"]["progress"] = True
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = evaluate
    trainer.fit()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("run epoch")]
    assert [line.split(":")[0] for line in lines] == ["run epoch 1/3", "run epoch 3/3"], lines
    rate = float(lines[1].split(" img/s")[0].rsplit(" ", 1)[1])
    assert rate > 1.0 and "33:" in lines[1].split(" in, ")[0], lines[1]  # 2,000 s of evaluations: 33:2x in


def test_under_ddp_the_progress_lines_after_an_evaluation_show_the_time_spent_and_trainings_rate(
        image_folder, tmp_path, monkeypatch, capsys):
    """Under torchrun the processes agree on their clock only at logging iterations and epoch ends: off a terminal,
    the line inside epoch 2 right after epoch 1's FID (here 1000 s) said "0:01 in", and the next one's rate counted
    the FID ("4 img/s" where training ran at 1000). Every line now shows process 0's own clock."""
    from gankit import console, distributed

    evaluate = _evaluation_taking(monkeypatch, 1000.0)
    monkeypatch.setattr(console, "LINE_EVERY", 0.0)  # a line at every iteration
    layers = tiny_layers(image_folder, epochs=2) + [{"eval": {"every": 1, "share": 0}}]
    layers[0]["log"].update(progress=True, every=50, every_minutes=0)  # agreements at the epoch ends only
    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # one process standing for 2 (half of each batch)
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = evaluate
    started = time.monotonic()
    trainer.fit()
    real = time.monotonic() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("run epoch")]
    after = lines[lines.index(next(line for line in lines if line.startswith("run epoch 1/2:"))) + 1:]
    said = [re.search(r"(\d+):(\d\d) in, ", line) for line in after]
    assert after and all(m and 1000 <= 60 * int(m[1]) + int(m[2]) <= 1000 + real + 1 for m in said), lines
    assert all(float(line.split(" img/s")[0].rsplit(" ", 1)[1]) > 1.0 for line in after if "img/s" in line), lines


@pytest.mark.parametrize("evaluation_seconds, said", [(1000.0, True), (0.0, False)])
def test_a_run_whose_evaluations_took_most_of_its_time_says_so(image_folder, tmp_path, monkeypatch, capsys,
                                                               evaluation_seconds, said):
    """`--minutes 1.5` with evaluations on a busy CPU ran 7.5 minutes, 5.7 of them FID/KID, without a word about
    it. Here each of the 3 evaluations moves the clock on by `evaluation_seconds`: 50:00 of a run of 50:xx (its
    real seconds, more on a loaded machine) is said, with what shortens it; a run whose evaluations took no time
    says nothing."""
    evaluate = _evaluation_taking(monkeypatch, evaluation_seconds)
    trainer = _trainer(tiny_layers(image_folder, epochs=3) + [{"eval": {"every": 1, "share": 0, "n_fake": 60}}],
                       image_folder, tmp_path / "run")
    trainer._evaluator = evaluate
    trainer.fit()
    err = capsys.readouterr().err
    assert ("FID/KID took 50:00 of this run's 50:" in err and "(now eval.every 1)" in err
            and "(eval.n_fake 60)" in err) == said, err


@pytest.mark.parametrize("budget, said", [({"minutes": 0.01}, True), ({"max_steps": 3}, False)])
def test_a_run_that_minutes_ended_says_how_long_it_trained_and_its_final_evaluation_took(image_folder, tmp_path,
                                                                                     monkeypatch, capsys, budget, said):
    """The final FID/KID comes after the --minutes budget is spent, so a `--minutes 30` run took longer than 30 minutes
    without a word. Here the one evaluation (the run's final) moves the clock on by 1000 s: the run says it trained
    for its budget and then evaluated for 16:40; a run that --max-steps ended says nothing of it. Numerics unchanged:
    training stops where the budget ends, as before."""
    trainer = _trainer(tiny_layers(image_folder, epochs=10**4, **budget) + [{"eval": {"every": 10**4, "share": 0}}],
                       image_folder, tmp_path / "run")
    trainer._evaluator = _evaluation_taking(monkeypatch, 1000.0)
    trainer.fit()
    err = capsys.readouterr().err
    assert ("--minutes 0.01, evaluations and writing included); the final FID/KID after it took 16:40 more" in err) \
        == said, err
    assert ("trained for 0:" in err) == said
    evals = [x for x in read_metrics(tmp_path / "run" / "metrics.jsonl") if x["kind"] == "eval"]
    assert [x["step"] for x in evals] == [trainer.iteration]


def test_the_first_evaluations_duration_includes_loading_inception_and_the_real_features(image_folder, tmp_path,
                                                                                         monkeypatch):
    """`eval_seconds` is what an evaluation cost the run: the first one also builds the Evaluator (Inception's
    weights, the real images' features: minutes on a CPU for a thousand images). The fake clock moves 500 s there
    and 10 s for each scoring."""
    import gankit.evaluate

    ahead = _clock_ahead(monkeypatch)

    class Evaluator:
        def __init__(self, *args, **kwargs):
            ahead[0] += 500.0

        def __call__(self, generate, n):
            ahead[0] += 10.0
            return {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32}

    monkeypatch.setattr(gankit.evaluate, "Evaluator", Evaluator)
    layers = tiny_layers(image_folder, epochs=2) + [{"eval": {"every": 1, "share": 0}}]
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer.fit()
    evals = [x for x in read_metrics(tmp_path / "run" / "metrics.jsonl") if x["kind"] == "eval"]
    assert [round(x["eval_seconds"]) for x in evals] == [510, 10]


def test_a_run_stopped_at_an_epoch_end_that_skipped_its_writings_writes_them(image_folder, tmp_path):
    """The single-image test stops the loop at an epoch end (`fit(stop_when=...)`): the grid and last.pt that the
    write share skipped there are written before it returns."""
    layers = tiny_layers(image_folder, epochs=6)
    layers[0]["log"]["write_share"] = 1e-9
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer.fit(stop_when=lambda: trainer.epoch == 3)
    assert (tmp_path / "run" / "samples" / "epoch_0003.png").is_file()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 12


def test_only_the_newest_numbered_checkpoints_are_kept_when_asked(image_folder, tmp_path):
    layers = tiny_layers(image_folder, epochs=4)
    layers[0]["log"].update(write_share=0, keep_checkpoints=2)
    run = run_training(layers, tmp_path / "run")
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt")) == ["epoch_0003.pt", "epoch_0004.pt"]


def test_checkpoint_every_0_writes_no_numbered_checkpoints(image_folder, tmp_path, capsys):
    """log.checkpoint_every=0: last.pt only (a 300 px run's checkpoints are large), also at a resume's mending; and
    log.keep_checkpoints given with it is named as having no effect."""
    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["log"].update(write_share=0, checkpoint_every=0, keep_checkpoints=3)
    run = run_training(layers, tmp_path / "run")
    assert "log.keep_checkpoints (only with log.checkpoint_every > 0)" in capsys.readouterr().err
    two = load_checkpoint(run / "checkpoints" / "last.pt")["iteration"]
    layers[0]["train"]["epochs"] = 3
    run_training(layers, run)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) in (["last.pt"], ["last.prev.pt", "last.pt"])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == two * 3 // 2


def test_a_nearly_full_disk_holds_numbered_checkpoints_back_and_last_pt_goes_on(image_folder, tmp_path, monkeypatch,
                                                                                 capsys):
    """Numbered checkpoints are history, last.pt the run's safety: once a numbered one would leave too little room
    for the next last.pt, they stop (one warning) while last.pt is still written, and start again when room is made."""
    import shutil
    from gankit import checkpoint

    full = {2, 3}  # the epochs at whose end the disk is nearly full
    trainer = _trainer(tiny_layers(image_folder, epochs=5), image_folder, tmp_path / "run")
    real = shutil.disk_usage

    def usage(path):
        total, used, free = real(path)
        return type(real(path))(total, used, 0 if trainer.epoch in full else checkpoint.DISK_RESERVE * 4)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", usage)
    last = []
    trainer.fit(stop_when=lambda: last.append(load_checkpoint(tmp_path / "run/checkpoints/last.pt")["iteration"]))
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").glob("epoch_*.pt")) == \
        ["epoch_0001.pt", "epoch_0004.pt", "epoch_0005.pt"]
    assert last == [4, 8, 12, 16, 20]
    assert capsys.readouterr().err.count("numbered ones are skipped") == 1


def test_keep_checkpoints_makes_room_for_the_next_numbered_one_on_a_tight_disk(image_folder, tmp_path, monkeypatch,
                                                                               capsys):
    """With log.keep_checkpoints=1, a disk with room for the next numbered checkpoint only once the one it replaces
    is gone: that one is deleted first, so history goes on (it was skipped, with a warning telling to keep fewer)."""
    from gankit import checkpoint

    layers = tiny_layers(image_folder, epochs=4)
    layers[0]["log"].update(keep_checkpoints=1, write_share=0)
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    real = shutil.disk_usage

    def usage(path):
        total, used, free = real(path)
        if trainer.epoch <= 2:
            return type(real(path))(total, used, free)
        size = (tmp_path / "run/checkpoints/last.pt").stat().st_size  # short of 2 of them and the reserve by a byte
        return type(real(path))(total, used, 2 * size + min(checkpoint.DISK_RESERVE, total // 10) - 1)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", usage)
    trainer.fit()
    assert [p.name for p in (tmp_path / "run/checkpoints").glob("epoch_*.pt")] == ["epoch_0004.pt"]
    assert "skipped" not in capsys.readouterr().err


@pytest.mark.parametrize("deterministic", [False, True])
def test_deterministic_runs_write_last_pt_at_every_epoch_end(image_folder, tmp_path, deterministic):
    """A NaN rollback goes back to last.pt, so under --deterministic where it goes must not depend on timing: there
    last.pt is not held to log.write_share. Without it, a share of ~0 skips the third epoch's (the test can fail)."""
    layers = tiny_layers(image_folder, epochs=4, deterministic=deterministic)
    layers[0]["log"]["write_share"] = 1e-9
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    saved = []
    trainer.fit(stop_when=lambda: saved.append(trainer._saved_iteration == trainer.iteration))
    assert saved == [True, True, deterministic, True]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_first_save_that_fails_gives_the_signals_back(image_folder, tmp_path, monkeypatch, failure):
    """A training called from Python (a notebook cell) whose first checkpoint failed (a full disk, or an interrupt
    raised in it) left its Ctrl-C, SIGTERM and hang-up handlers installed: the next cell could not be interrupted (a
    press said "stopping after this iteration") and SIGTERM no longer ended the process."""
    signals = [sig for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if sig is not None]
    before = [signal.getsignal(sig) for sig in signals]
    original, calls = Trainer.save, []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise failure
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "save", save)
    with pytest.raises(type(failure)):
        run_training(tiny_layers(image_folder, max_steps=1, epochs=1), tmp_path / "run")
    assert [signal.getsignal(sig) for sig in signals] == before


def test_a_run_that_fails_closes_its_log(image_folder, tmp_path, monkeypatch):
    """A training called from Python (a notebook cell) that failed mid-run (a full disk) left metrics.jsonl open and
    TensorBoard's writer thread running in the caller's process, its last events unwritten."""
    import threading

    layers = tiny_layers(image_folder, max_steps=4, epochs=1)
    layers[0]["log"]["tensorboard"] = True
    threads_before = set(threading.enumerate())
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    writers = [t for t in set(threading.enumerate()) - threads_before if "Writer" in type(t).__name__]
    assert writers  # TensorBoard's (_AsyncWriterThread)
    original = Trainer.train_iteration

    def full_disk_at_the_third(self):
        if self.iteration == 2:
            raise OSError(28, "No space left on device")
        return original(self)

    monkeypatch.setattr(Trainer, "train_iteration", full_disk_at_the_third)
    with pytest.raises(OSError):
        trainer.fit()
    assert trainer.log.file.closed
    assert not any(t.is_alive() for t in writers)


def _g_weights(run):
    return load_checkpoint(run / "checkpoints/last.pt")["G"]


def test_the_gif_frame_of_an_epoch_a_budget_cut_short_says_it_is_unfinished(image_folder, tmp_path, monkeypatch):
    """The last frame of evolution.gif said "epoch 2" after `--max-steps 5` stopped a run inside epoch 2 (4 steps per
    epoch), where the compare page says "epoch 2 (unfinished)": it says so too, until epoch 2's end remakes it."""
    from gankit.report import gif

    captions, caption = [], gif._with_caption
    monkeypatch.setattr(gif, "_with_caption", lambda im, *texts: captions.append(texts[0]) or caption(im, *texts))
    run = run_training(tiny_layers(image_folder, max_steps=5, epochs=5), tmp_path / "run")
    assert captions[-2:] == ["epoch 1", "epoch 2 (unfinished)"], captions
    captions.clear()
    run_training(tiny_layers(image_folder, max_steps=8, epochs=5), run)
    assert captions[-2:] == ["epoch 1", "epoch 2"], captions


def test_resume_equals_straight_run(image_folder, tmp_path):
    straight = run_training(tiny_layers(image_folder, max_steps=10, epochs=5), tmp_path / "a")
    half = run_training(tiny_layers(image_folder, max_steps=5, epochs=5), tmp_path / "b")
    assert load_checkpoint(half / "checkpoints/last.pt")["iteration"] == 5
    # max_steps ended it inside epoch 2 (4 steps per epoch): that unfinished epoch has its grid too
    assert sorted(p.name for p in (half / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    resumed = run_training(tiny_layers(image_folder, max_steps=10, epochs=5), tmp_path / "b")
    # ... which epoch 2's end overwrote: the same picture as in the straight run
    for name in ("epoch_0002.png", "epoch_0003.png"):
        assert (resumed / "samples" / name).read_bytes() == (straight / "samples" / name).read_bytes(), name
    a, b = _g_weights(straight), _g_weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    da = load_checkpoint(straight / "checkpoints/last.pt")
    db = load_checkpoint(resumed / "checkpoints/last.pt")
    for k in da["D"]:
        assert torch.equal(da["D"][k], db["D"][k]), k
    assert torch.equal(da["fixed_noise"], db["fixed_noise"])
    # the resumed log has no duplicated steps
    steps = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "step"]
    assert steps == sorted(set(steps))


def test_a_checkpoint_on_an_apple_gpu_keeps_its_random_stream(image_folder, tmp_path, fake_mps):
    """Only CUDA's random state was saved and restored: a run resumed on MPS went on from another stream than the
    straight run's. (No Apple GPU here: the trainer is told it is on one, and torch.mps's generator is faked.)"""
    trainer = _trainer(tiny_layers(image_folder), image_folder, tmp_path / "run")
    assert trainer.state_dict()["rng_mps"] is None  # on the CPU
    trainer.device = torch.device("mps")
    fake_mps.manual_seed(5)
    state = trainer.state_dict()
    fake_mps.manual_seed(6)  # the stream went on after the save
    trainer._load(state)
    assert fake_mps.state.item() == 5


def test_an_evaluation_on_an_apple_gpu_leaves_the_trainings_stream_alone(image_folder, tmp_path, fake_mps):
    """torch.manual_seed of the evaluation seeds the Apple GPU's stream too, which only CUDA's was put back from."""
    layers = tiny_layers(image_folder) + [{"eval": {"every": 1, "share": 0}}]
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer._evaluator = lambda generate, n: {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32}
    trainer.device = torch.device("mps")
    fake_mps.manual_seed(5)
    trainer._evaluate(1)
    assert fake_mps.state.item() == 5


def test_finished_run_is_not_retrained(image_folder, tmp_path, capsys):
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    before = (run / "checkpoints/last.pt").stat().st_mtime_ns
    run_training(tiny_layers(image_folder, epochs=1), run)
    err = capsys.readouterr().err
    assert "already complete" in err and " of 1 epoch, " in err and "1 epochs" not in err, err  # "of 1 epochs" it said
    assert re.search(r"1 of 1 epoch, \d+:\d\d in\): raise", err), err  # not "0.449 minutes": as the progress lines say it
    assert (run / "checkpoints/last.pt").stat().st_mtime_ns == before
    run_training(tiny_layers(image_folder, epochs=1, max_steps=2), run)  # a budget below what it trained: no change
    assert "already complete (4 iterations, 1 of 1 epoch," in capsys.readouterr().err
    config = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (config["epochs"], config["max_steps"]) == (1, None)  # the run's own budget, not the command's
    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["train"]["epochs"] = 2
    run_training(layers, run)
    run_training(tiny_layers(image_folder, epochs=1), run)
    assert "already complete (8 iterations, 2 epochs, more than the 1 asked for" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_default_run_folders_resume_from_anywhere_and_never_collide(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a = run_training(tiny_layers("images", max_steps=2, epochs=5))  # a relative path, no --run
    assert a == Path("runs/images_16px_dcgan")
    assert yaml.safe_load((a / "config.yaml").read_text())["data"]["path"] == str(image_folder)  # saved absolute
    b = run_training(tiny_layers("./images", max_steps=2, epochs=5, loss="hinge"))  # another recipe, same data
    assert b == Path("runs/images_16px_dcgan-2")
    assert "holds a run of another config" in capsys.readouterr().err
    assert run_training(tiny_layers("images", max_steps=4, epochs=5)) == a  # the first recipe finds its own run
    assert "resuming from iteration 2" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run_training(tiny_layers("../images", max_steps=6, epochs=5), tmp_path / a)  # the same folder, named from here
    log = {"train": {"max_steps": 6}, "log": {"progress": False}}
    run_training([log], tmp_path / a)  # no --data: the saved absolute path
    err = capsys.readouterr().err
    assert "resuming from iteration 4" in err and "already complete (6 iterations" in err and "raise --max-steps" in err


def test_labels_train_a_conditional_model_unless_told_otherwise(tmp_path, capsys, monkeypatch):
    from gankit.train import Trainer

    make_image_folder(tmp_path / "pets", classes=("cat", "dog"))
    layers = tiny_layers(tmp_path / "pets", max_steps=1)
    layers[0]["data"]["labels"] = "folders"
    drawn, generate = [], Trainer._generate
    monkeypatch.setattr(Trainer, "_generate", lambda self, z, y: drawn.append((z, y)) or generate(self, z, y))
    cfg = yaml.safe_load((run_training(layers, tmp_path / "a") / "config.yaml").read_text())
    assert (cfg["model"]["arch"], cfg["model"]["num_classes"]) == ("acgan", 2)
    err = capsys.readouterr().err
    assert "images of 2 classes at 16px" in err and "sample grids show" not in err  # the start line; every class shown
    # its epoch grid: one row per class (its name at the left), the same noise down each of the 8 columns
    z, y = drawn[0]
    assert y.tolist() == [0] * 8 + [1] * 8 and torch.equal(z[:8], z[8:]) and len(set(z[:8, 0].tolist())) == 8
    with Image.open(tmp_path / "a" / "samples" / "epoch_0001.png") as grid:
        margin = grid.width - (8 * 18 + 2)
        assert grid.height == 2 * 18 + 2 and margin > 10
        assert grid.crop((0, 0, margin, grid.height)).convert("L").getextrema()[1] > 200  # white names on black
    layers[0]["model"]["arch"] = "dcgan"  # asked for: trained, with a warning that the labels go unused
    cfg = yaml.safe_load((run_training(layers, tmp_path / "b") / "config.yaml").read_text())
    assert (cfg["model"]["arch"], cfg["model"]["num_classes"]) == ("dcgan", 0)
    assert "the labels are not used" in capsys.readouterr().err


def test_a_conditional_run_says_which_classes_its_sample_grids_leave_out(tmp_path, capsys, monkeypatch):
    """log.n_samples below the classes (16 for Pokemon's 17 types) showed the first 16 in one column, 'water' never,
    and nothing said so: one line at the start names the classes left out and the setting that shows them all."""
    from gankit.train import Trainer

    make_image_folder(tmp_path / "pets", n=12, classes=("cat", "dog", "eel"))
    layers = tiny_layers(tmp_path / "pets", max_steps=1) + [{"data": {"labels": "folders"}, "log": {"n_samples": 2}}]
    drawn, generate = [], Trainer._generate
    monkeypatch.setattr(Trainer, "_generate", lambda self, z, y: drawn.append(y) or generate(self, z, y))
    run_training(layers, tmp_path / "run")
    assert drawn[0].tolist() == [0, 1]  # the grid as before: the first classes, one image each
    err = capsys.readouterr().err
    assert ("the sample grids show the first 2 of the 3 classes, not 'eel': --set log.n_samples=3 (or a multiple, up to "
            "24) shows every class") in err  # (it took 249 characters for Pokemon's types at log.n_samples=8)
    assert err.count("sample grids show") == 1


def test_a_conditional_runs_fid_draws_each_class_as_often_as_its_real_images_and_an_older_run_keeps_uniform(
        tmp_path, monkeypatch):
    """FID/KID drew the fakes' classes uniformly while the real images follow the labels' counts (Pokemon's types are
    very imbalanced), which held imbalanced labels against ACGAN. Now 10 fakes of 10 a, 4 b and 2 c images are 6 a,
    3 b and 1 c (largest remainder), the same classes at every evaluation whatever the chunks; a run made before
    eval.fake_classes existed (its config.yaml without it) keeps every class in turn on resume, and records that."""
    import gankit.evaluate
    from gankit.evaluate import fake_classes

    class Evaluator:  # no Inception: draws in chunks of 3, as the real one does in chunks of 50
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, generate, n):
            for k in (3, 3, n - 6):
                generate(k)
            return {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 16}

    drawn, generate = [], Trainer.generate
    monkeypatch.setattr(Trainer, "generate", lambda self, n, labels=None: drawn.append(labels) or generate(self, n, labels))
    monkeypatch.setattr(gankit.evaluate, "Evaluator", Evaluator)
    make_image_folder(tmp_path / "data", n=16, classes=IMBALANCED)
    layers = tiny_layers(tmp_path / "data", epochs=1) + [{"data": {"labels": "folders"}, "model": {"arch": "acgan"},
                                                          "eval": {"every": 1, "n_fake": 10}}]
    run = run_training(layers, tmp_path / "run")
    classes = torch.cat(drawn).cpu()
    assert torch.bincount(classes).tolist() == [6, 3, 1] and torch.equal(classes, fake_classes(10, 3, torch.tensor(
        [0] * 10 + [1] * 4 + [2] * 2)))
    assert yaml.safe_load((run / "config.yaml").read_text())["eval"]["fake_classes"] == "data"

    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["eval"]["fake_classes"]  # as a gankit before the key wrote it
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    drawn.clear()
    run_training(tiny_layers(tmp_path / "data", epochs=2), run)
    assert torch.cat(drawn).tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert yaml.safe_load((run / "config.yaml").read_text())["eval"]["fake_classes"] == "uniform"


def test_an_unconditional_model_ignores_labels_that_would_drop_images(tmp_path, capsys):
    make_image_folder(tmp_path / "pets", n=16)  # half of them without a label: an ACGAN would drop them
    rows = [f"img_{i:03d}.png,{'cat' if i % 2 else ''}" for i in range(16)]
    (tmp_path / "pets" / "labels.csv").write_text("file,kind\n" + "\n".join(rows) + "\n")
    layers = tiny_layers(tmp_path / "pets", max_steps=1)
    layers[0]["data"].update(labels="labels.csv", label_column="kind")
    layers[0]["model"]["arch"] = "dcgan"
    run_training(layers, tmp_path / "a")
    err = capsys.readouterr().err
    assert "the labels are not used" in err and "16 images at 16px" in err and "dropped" not in err


def test_sync_batchnorm_in_one_process_says_it_is_ignored(image_folder, tmp_path, capsys):
    layers = tiny_layers(image_folder, max_steps=1)
    layers[0]["train"]["sync_batchnorm"] = True
    run_training(layers, tmp_path / "r")
    assert "train.sync_batchnorm has no effect in a single process" in capsys.readouterr().err


def test_a_step_line_at_an_epoch_end_carries_that_epoch(image_folder, tmp_path):
    layers = tiny_layers(image_folder, epochs=3)  # 4 iterations per epoch
    layers[0]["log"]["every"] = 3
    rows = [json.loads(x) for x in (run_training(layers, tmp_path / "r") / "metrics.jsonl").read_text().splitlines()]
    epoch_of = {r["step"]: r["epoch"] for r in rows if r["kind"] == "step"}
    assert [epoch_of[s] for s in (3, 4, 6, 9, 12)] == [1, 1, 2, 3, 3]  # 12 ends epoch 3 (it was logged as 4)
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3]


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(image_folder, tmp_path, monkeypatch, capsys):
    original = Trainer._g_phase

    def g_phase_with_two_ctrl_c(self, kept):
        if self.iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration
            os.kill(os.getpid(), signal.SIGINT)  # no: at once, between the D and the G step
        original(self, kept)

    monkeypatch.setattr(Trainer, "_g_phase", g_phase_with_two_ctrl_c)
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_training(tiny_layers(image_folder, epochs=5), tmp_path / "r")  # 4 iterations per epoch
    assert stopped.value.exit_code == 130
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["iteration"] == 4  # epoch 1's, not half of the 6th
    assert "stopped at once; not saved since the last checkpoint" in capsys.readouterr().err


def test_a_ctrl_c_with_weights_not_finite_says_nothing_was_saved_and_what_a_resume_uses(image_folder, tmp_path,
                                                                                         monkeypatch, capsys):
    original = Trainer._g_phase

    def g_phase_with_ctrl_c(self, kept):
        if self.iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration
            monkeypatch.setattr(Trainer, "_weights_finite", lambda self: False)  # NaN weights, not yet logged
        original(self, kept)

    monkeypatch.setattr(Trainer, "_g_phase", g_phase_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_layers(image_folder, epochs=5), tmp_path / "r")  # 4 iterations per epoch
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["iteration"] == 4
    err = capsys.readouterr().err
    assert "saved" not in err.replace("not saved", "")
    assert (f"interrupted at iteration 6; not saved: its weights are not finite (NaN or Inf), so a resume continues "
            f"from {tmp_path / 'r/checkpoints/last.pt'} (iteration 4)") in err


def test_a_stop_during_an_evaluation_leaves_it_out_and_saves_the_epoch(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler's, with a short grace period) while the real images' Inception features are being
    computed: the evaluation is left out at its next batch, nothing of it is cached, the epoch's checkpoint is
    saved, and the run resumed from it evaluates the later epochs and ends with the weights of a run that was never
    stopped (--deterministic). When the evaluation left out was the run's last, resuming the complete run does it."""
    import torch.nn as nn

    import gankit.metrics
    def evaluations(run: str) -> list[tuple[int, int]]:
        return [(r["epoch"], r["step"]) for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["kind"] == "eval"]

    projection = torch.randn(3 * 16 * 16, 2048, generator=torch.Generator().manual_seed(0))

    class Features(nn.Module):  # a stand-in for Inception: any fixed map of the images to 2048 numbers
        signal_at_call = None

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, images):
            self.calls += 1
            if self.calls == Features.signal_at_call:
                os.kill(os.getpid(), signal.SIGTERM)
            return images.float().flatten(1) @ projection / 1000

    monkeypatch.setattr(gankit.metrics, "load_inception", lambda device, weights=None: Features())
    images, cache = tmp_path / "images", tmp_path / "cache"
    make_image_folder(images, n=64)  # 8 iterations per epoch; the real features in two batches (50 + 14)
    layers = tiny_layers(images, epochs=3, deterministic=True) + [
        {"eval": {"every": 1, "share": 0, "n_fake": 60}, "data": {"cache_dir": str(cache)}, "log": {"plots": False}}]
    whole = load_checkpoint(run_training(layers, tmp_path / "whole") / "checkpoints" / "last.pt")
    for f in cache.glob("fid-features-*"):
        f.unlink()
    Features.signal_at_call = 1  # epoch 1's end, the first batch of the real features
    with pytest.raises(KeyboardInterrupt):
        run_training(layers, tmp_path / "r")
    assert "epoch 1: FID/KID left out, stopping" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["iteration"] == 8
    assert not any(cache.glob("fid-features-*"))  # features of part of the images are never cached
    assert evaluations("r") == []
    Features.signal_at_call = None
    resumed = load_checkpoint(run_training(layers, tmp_path / "r") / "checkpoints" / "last.pt")
    assert [epoch for epoch, _ in evaluations("r")] == [2, 3]
    for net in ("G", "D"):
        for k in whole[net]:
            torch.testing.assert_close(resumed[net][k], whole[net][k], rtol=0, atol=0, msg=f"{net} {k}")
    # the run's final evaluation left out: resuming the complete run does it (calls: the real features' two
    # batches, then two per evaluation of 60 generated images; the 7th is epoch 3's first)
    for f in cache.glob("fid-features-*"):
        f.unlink()
    Features.signal_at_call = 7
    with pytest.raises(KeyboardInterrupt):
        run_training(layers, tmp_path / "f")
    assert [epoch for epoch, _ in evaluations("f")] == [1, 2]
    Features.signal_at_call = None
    capsys.readouterr()
    run_training(layers, tmp_path / "f")
    assert evaluations("f") == [(1, 8), (2, 16), (3, 24)]
    assert "already complete" in capsys.readouterr().err


def test_epoch_ends_after_a_stop_that_the_processes_have_not_agreed_on_yet_do_not_evaluate(tmp_path, monkeypatch,
                                                                                            capsys):
    """Under torchrun a Ctrl-C during epoch 1's FID leaves it out, then the processes train on to the iteration they
    agree to stop after (here 28: `_InterruptFlag.stop` as DDP's, one process standing for them), past more epoch
    ends. Those did not each load Inception again and start the real images' features, only to leave them out (on
    small data: 3 times, and the stop took 21 s of torchrun's 30 s grace period)."""
    import gankit.metrics
    from gankit import train

    loads = []

    def load_inception(device, weights=None):
        loads.append(device)
        if len(loads) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C comes during epoch 1's evaluation
        return torch.nn.Flatten()

    monkeypatch.setattr(gankit.metrics, "load_inception", load_inception)
    monkeypatch.setattr(train._InterruptFlag, "stop", lambda self, iteration, clock, device: self.hit and iteration >= 28)
    make_image_folder(tmp_path / "images", n=64)  # 8 iterations per epoch
    layers = tiny_layers(tmp_path / "images", epochs=5) + [
        {"eval": {"every": 1, "share": 0, "n_fake": 60}, "data": {"cache_dir": str(tmp_path / "cache")},
         "log": {"plots": False}}]
    with pytest.raises(KeyboardInterrupt):
        run_training(layers, tmp_path / "r")
    err = capsys.readouterr().err
    assert len(loads) == 1 and err.count("FID/KID left out, stopping") == 1, err
    assert load_checkpoint(tmp_path / "r/checkpoints/last.pt")["iteration"] == 28


@pytest.mark.parametrize("processes, forced", [(1, True), (2, False)])
def test_a_second_sigint_stops_at_once_only_in_a_single_process(monkeypatch, capsys, processes, forced):
    """Under torchrun a process gets the same SIGINT twice when the launcher signals every process of the job (Slurm's
    scancel, `kill -INT` of torchrun and its processes) and torchrun passes it on: that stopped at once, unsaved
    ("stopped at once; not saved since the last checkpoint"), where one Ctrl-C saves. A second Ctrl-C at the
    terminal reaches torchrun only, so there a second SIGINT is the first again; alone it still stops at once."""
    from gankit import distributed
    from gankit.train import _InterruptFlag

    monkeypatch.setattr(distributed, "world_size", lambda: processes)
    flag, at_once = _InterruptFlag(), False
    try:
        flag._handler(signal.SIGINT, None)
        flag._handler(signal.SIGINT, None)
    except KeyboardInterrupt:
        at_once = True
    finally:
        flag.restore()
    assert flag.hit and at_once == flag.forced == forced


@pytest.mark.parametrize("peer", ["lost", "there"])
def test_under_ddp_a_signals_line_waits_for_the_other_processes_to_answer(monkeypatch, capsys, peer):
    """`kill -9` of one torchrun process: torchrun SIGTERMs the others, which said "SIGTERM: stopping within seconds,
    after the same iteration in every process" and then, their next all-reduce failing, that a process was lost. The
    line now comes once the peers answer: the all-reduce that asks them, or a whole iteration begun after it."""
    from gankit import distributed
    from gankit.train import _InterruptFlag

    def all_reduce(values, device):
        if peer == "lost":
            raise RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:28063")
        return values

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "maxima", all_reduce)
    line = "SIGTERM: stopping within seconds, after the same iteration in every process\n"
    flag = _InterruptFlag()
    try:
        flag._handler(signal.SIGTERM, None)
        assert capsys.readouterr().err == ""
        if peer == "lost":
            with pytest.raises(RuntimeError, match="Connection closed by peer"):
                flag.stop(7, 1.0, torch.device("cpu"))
            assert capsys.readouterr().err == ""
            return
        flag._agreed, flag._next = (5, 0.5), 20  # between two agreements: no all-reduce of the flag's own
        assert not flag.stop(7, 1.0, torch.device("cpu")) and capsys.readouterr().err == ""  # (begun before it?)
        assert not flag.stop(8, 1.1, torch.device("cpu")) and capsys.readouterr().err == line
    finally:
        flag.restore()
    flag = _InterruptFlag()
    try:
        flag._handler(signal.SIGTERM, None)
        assert flag.stop(20, 2.0, torch.device("cpu")) and capsys.readouterr().err == line  # the agreement answered
    finally:
        flag.restore()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_signal_while_a_stop_is_under_way_says_nothing_more(monkeypatch, capsys, processes):
    """Under torchrun a Ctrl-C reaches its processes, then torchrun's SIGTERM: that said "SIGTERM: stopping within
    seconds, after the same iteration in every process" after the Ctrl-C's line (and made the exit code SIGTERM's);
    alone, a second SIGTERM said "SIGTERM: stopping after this iteration" again. The stop's line is said once, and the
    exit code is the first signal's."""
    from gankit import distributed
    from gankit.train import _InterruptFlag

    monkeypatch.setattr(distributed, "world_size", lambda: processes)
    monkeypatch.setattr(distributed, "maxima", lambda values, device: values)  # the other processes answer
    first = signal.SIGINT if processes > 1 else signal.SIGTERM  # (alone a second Ctrl-C stops at once)
    flag, said = _InterruptFlag(), []
    try:
        for sig in (first, signal.SIGTERM):
            flag._handler(sig, None)
            assert flag.stop(20, 2.0, torch.device("cpu"))
            said.append(capsys.readouterr().err)
    finally:
        flag.restore()
    assert "stopping" in said[0] and said[1] == "" and flag.exit_code == 128 + first


def test_a_dataset_too_large_for_the_gpu_stays_in_host_memory(monkeypatch, capsys):
    """The uint8 dataset lives on the GPU unless it would take more than half of its free memory; then batches come
    from host memory (a one-line warning says so). On a CPU it is where training runs. (The copy of each batch to
    the GPU is not run here: no GPU.)"""
    from gankit.train import dataset_home

    cuda, gib = torch.device("cuda"), 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))  # 10 GiB free
    assert dataset_home(5 * gib, cuda) == cuda and capsys.readouterr().err == ""
    assert dataset_home(6 * gib, cuda) == torch.device("cpu")
    assert "the dataset (6.0 GiB as uint8) would take more than half of the GPU's free memory (10.0 GiB)" in \
        capsys.readouterr().err
    assert dataset_home(10**12, torch.device("cpu")) == torch.device("cpu")


def test_resume_with_incompatible_config_is_refused(image_folder, tmp_path):
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["model"]["ngf"] = 16
    with pytest.raises(RunError, match="model.ngf"):
        run_training(layers, run)


def test_batch_larger_than_dataset(image_folder, tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        run_training(tiny_layers(image_folder, batch_size=64), tmp_path / "r")


def test_builtin_dataset_defaults_sit_below_user_settings(tmp_path):
    small = {"train": {"max_steps": 1, "precision": "fp32", "device": "cpu", "batch_size": 8},
             "log": {"progress": False, "plots": False, "tensorboard": False}}
    run = run_training([small], tmp_path / "a")
    cfg = load_checkpoint(run / "checkpoints/last.pt")["config"]
    assert (cfg["model"]["ngf"], cfg["model"]["ndf"], cfg["train"]["epochs"], cfg["data"]["resolution"]) == (32, 32, 30, 32)
    run = run_training([small, {"model": {"ngf": 16}, "train": {"epochs": 3}}], tmp_path / "b")
    cfg = load_checkpoint(run / "checkpoints/last.pt")["config"]
    assert (cfg["model"]["ngf"], cfg["model"]["ndf"], cfg["train"]["epochs"]) == (16, 32, 3)
    # resuming keeps the saved config: the built-in defaults are not applied over it
    run_training([{**small, "train": {**small["train"], "max_steps": 2}}], run)
    assert load_checkpoint(run / "checkpoints/last.pt")["config"]["model"]["ngf"] == 16


def test_cpu_paths_train_to_the_weights_onednn_gives(image_folder, tmp_path):
    """train.gemm_wgrad and train.thin_conv (auto: on on a CPU) change how small layers' weight gradients and
    the RGB layers are computed, not the training: the same weights after a few steps, BatchNorm in G and
    spectral norm in D included."""
    def layers(**train):
        out = tiny_layers(image_folder, max_steps=4, epochs=5, **train)
        out[0]["model"].update(d_norm="none", spectral_norm=True)
        return out

    fast = run_training(layers(), tmp_path / "fast")
    assert "gemm_wgrad: true" in (fast / "config.yaml").read_text()
    assert "thin_conv: true" in (fast / "config.yaml").read_text()
    plain = run_training(layers(gemm_wgrad=False, thin_conv=False), tmp_path / "plain")
    a, b = load_checkpoint(plain / "checkpoints/last.pt"), load_checkpoint(fast / "checkpoints/last.pt")
    for net in ("G", "D"):
        for k in a[net]:
            torch.testing.assert_close(b[net][k], a[net][k], rtol=0, atol=1e-5, msg=f"{net} {k}")


@pytest.mark.parametrize("mbstd_group", [0, 4])
def test_fused_d_forward_computes_what_two_forwards_compute(image_folder, tmp_path, mbstd_group):
    """train.fuse_d: real and fake in one D forward gives the weights two forwards give, when D scores each
    image alone (no BatchNorm, no minibatch discrimination) or minibatch std's groups stay within real or
    fake; auto picks it exactly then."""
    def layers(max_steps=6, **train):
        out = tiny_layers(image_folder, max_steps=max_steps, epochs=5, augment="color,translation,cutout",
                          augment_p=0.5, **train)
        out[0]["model"].update(d_norm="none", d_mbstd_group=mbstd_group)
        return out

    two = run_training(layers(fuse_d=False), tmp_path / "two")
    one = run_training(layers(), tmp_path / "one")  # auto
    assert "fuse_d: true" in (one / "config.yaml").read_text()
    a, b = load_checkpoint(two / "checkpoints/last.pt"), load_checkpoint(one / "checkpoints/last.pt")
    for net in ("G", "D"):
        for k in a[net]:
            torch.testing.assert_close(b[net][k], a[net][k], rtol=0, atol=1e-5, msg=f"{net} {k}")
    init = load_checkpoint(run_training(layers(max_steps=1), tmp_path / "short") / "checkpoints/last.pt")
    assert max((init["D"][k] - b["D"][k]).abs().max().item() for k in b["D"]) > 2e-4  # 5 more Adam steps (lr 1.5e-4) moved D

    batchnorm = run_training(tiny_layers(image_folder, max_steps=1), tmp_path / "bn")
    assert "fuse_d: false" in (batchnorm / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="train.fuse_d needs a D whose output"):
        run_training(tiny_layers(image_folder, fuse_d=True), tmp_path / "bad")
    if mbstd_group:  # batch 8 in groups of 3 would put real and fake images in one group
        with pytest.raises(ConfigError, match="model.d_mbstd_group 3 does not divide the 8 images"):
            run_training([{**layers()[0], "model": {**layers()[0]["model"], "d_mbstd_group": 3}}], tmp_path / "bad3")


def test_topk_g_update_learns_only_from_the_fakes_d_rates_most_real(image_folder, tmp_path):
    """train.topk: after the first epochs G's gradient is that of the loss on the k best-scored fakes alone
    (Sinha et al. 2020), not of the whole batch."""
    import copy

    layers = tiny_layers(image_folder, topk=0.25, topk_gamma=0.5, loss="hinge")
    layers[0]["model"].update(d_norm="none")
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    trainer.cursor = 10 * trainer.batches.steps_per_epoch  # epoch 10: k = max(ceil(8 * 0.25), ceil(8 * 0.5**10)) = 2
    G, D = copy.deepcopy(trainer.G_raw), copy.deepcopy(trainer.D_raw)
    z = torch.randn(8, 16, 1, 1)

    trainer._g_phase((trainer.G(z), None, None))  # (fakes, their labels, real scores for a relativistic loss)
    got = [p.grad.clone() for p in trainer.G_raw.parameters()]

    out, _ = D(G(z))
    best = out.detach().flatten().topk(2).indices
    (-out[best].mean()).backward(retain_graph=True)
    for g, p in zip(got, G.parameters()):
        torch.testing.assert_close(g, p.grad)
    (-out.mean()).backward()  # adds the whole batch's gradient: a different one
    assert max((g - p.grad).abs().max().item() for g, p in zip(got, G.parameters())) > 1e-4


def test_lr_decay_follows_the_runs_progress(image_folder, tmp_path, capsys):
    """train.lr_decay=linear: both rates hold until lr_decay_start, then fall linearly towards 0 at the end. A run
    resumed with a longer budget follows it, and says how far that moves the rates; an unchanged budget says nothing."""
    def layers(steps):
        return tiny_layers(image_folder, max_steps=steps, epochs=5, lr_decay="linear", lr_decay_start=0.5,
                           lr_g=2e-4, lr_d=4e-4)

    run = run_training(layers(8), tmp_path / "run")
    state = load_checkpoint(run / "checkpoints/last.pt")
    # the last of 8 iterations ran at progress 7/8: factor (1 - 7/8) / (1 - 0.5) = 0.25
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.25)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(4e-4 * 0.25)
    steps = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "step"]  # the rates, for other.png
    assert [r["lr_g"] for r in steps] == pytest.approx([2e-4 * f for f in (1, 1, 0.75, 0.25)])
    assert [r["lr_d"] for r in steps] == pytest.approx([4e-4 * f for f in (1, 1, 0.75, 0.25)])
    plain = run_training(tiny_layers(image_folder, max_steps=2), tmp_path / "plain")  # fixed rates: not logged
    assert all("lr_g" not in r for r in read_metrics(plain / "metrics.jsonl"))
    capsys.readouterr()
    run_training(layers(16), run)  # iteration 8 of 16: progress 0.5, factor 1 again; the last ran at 15/16
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train.lr_decay")]
    assert said == ["train.lr_decay linear follows the new budget: the learning rates go from x0.25 to x1.00 of "
                    "train.lr_g / train.lr_d here and fall to 0 at its end"]
    assert load_checkpoint(run / "checkpoints/last.pt")["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.125)
    run_training(layers(16), run)  # the same budget again (already complete): nothing said about the rates
    assert "train.lr_decay" not in capsys.readouterr().err


def test_minutes_budget_stops_the_run_and_a_larger_one_resumes_it(image_folder, tmp_path):
    """train.minutes: the run stops once its training time reaches the budget, resumably."""
    layers = tiny_layers(image_folder, epochs=10**4, minutes=0.01)
    layers[0]["log"].update(plots=False, tensorboard=False, checkpoint_every=10**4)
    run = run_training(layers, tmp_path / "run")
    first = load_checkpoint(run / "checkpoints/last.pt")
    assert 0.6 <= first["elapsed"] < 30 and 0 < first["iteration"] < 10**4
    more = first["elapsed"] / 60 + 0.01  # 0.6 s past what the first run used, however slow its first iteration was
    layers[0]["train"]["minutes"] = more
    second = load_checkpoint(run_training(layers, tmp_path / "run") / "checkpoints/last.pt")
    assert second["elapsed"] >= more * 60 and second["iteration"] > first["iteration"]


def test_a_metric_line_comes_by_time_when_log_every_iterations_take_long(image_folder, tmp_path):
    """log.every_minutes: a metric line (and its NaN check) also once that much training time has passed since the
    last, whatever log.every is; not under --deterministic, whose lines come at the same iterations in every run."""
    def steps(minutes: float, deterministic: bool) -> list[int]:
        layers = tiny_layers(image_folder, epochs=2, deterministic=deterministic)  # 4 iterations per epoch
        layers[0]["log"].update(every=100, every_minutes=minutes, plots=False, tensorboard=False)
        run = run_training(layers, tmp_path / f"run{minutes}{deterministic}")
        return [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "step"]

    assert steps(1e-9, False) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert steps(0, False) == steps(1e-9, True) == [4, 8]  # the epoch ends' lines only


def test_a_crash_inside_a_long_epoch_loses_only_the_minutes_since_the_last_save(tmp_path, monkeypatch):
    """log.checkpoint_minutes: inside an epoch, last.pt is also written once that much time has passed since the last
    save (whatever log.every is), so a crash (here an exception in the middle of iteration 7 of an 8-iteration epoch,
    nothing saved on the way out, as after kill -9) loses the iterations since then, not the epoch; the resume
    continues from there. Weights that are not finite are not saved."""
    make_image_folder(tmp_path / "images", n=64)  # 8 iterations per epoch
    original = Trainer.train_iteration

    def crashing(self):
        if self.iteration == 6:
            raise RuntimeError("power cut")
        original(self)

    saved = {}
    for minutes, finite in ((0, True), (1e-9, False), (1e-9, True)):
        layers = tiny_layers(tmp_path / "images", epochs=1)
        layers[0]["log"].update(every=100, checkpoint_minutes=minutes, write_share=0, plots=False, tensorboard=False)
        monkeypatch.setattr(Trainer, "train_iteration", crashing)
        monkeypatch.setattr(Trainer, "_weights_finite", lambda self: finite)
        with pytest.raises(RuntimeError, match="power cut"):
            run_training(layers, tmp_path / f"run{minutes}{finite}")
        saved[minutes, finite] = load_checkpoint(tmp_path / f"run{minutes}{finite}/checkpoints/last.pt")["iteration"]
    # at epoch ends only: the run's start; every few minutes: the last iteration, unless its weights are not finite
    assert saved == {(0, True): 0, (1e-9, False): 0, (1e-9, True): 6}
    monkeypatch.undo()
    run = run_training(layers, tmp_path / "run1e-09True")
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 8
    assert [(r["kind"], r["step"]) for r in read_metrics(run / "metrics.jsonl")] == [("step", 8), ("epoch", 8)]


def test_a_run_whose_checkpoints_are_gone_is_not_restarted_over_its_log(image_folder, tmp_path):
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    log = (run / "metrics.jsonl").read_bytes()
    grid = (run / "samples/epoch_0001.png").read_bytes()
    for ckpt in (run / "checkpoints").iterdir():
        ckpt.unlink()
    with pytest.raises(RunError, match=r"trained to iteration 4 .* no checkpoint .* delete .*metrics.jsonl"):
        run_training(tiny_layers(image_folder, epochs=1), run)
    assert (run / "metrics.jsonl").read_bytes() == log and (run / "samples/epoch_0001.png").read_bytes() == grid
    (run / "metrics.jsonl").unlink()  # what the message says to do: the run starts again from iteration 0
    run_training(tiny_layers(image_folder, epochs=1), run)
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 4


def test_a_resume_with_another_log_n_samples_draws_that_many_keeping_the_first(image_folder, tmp_path):
    """log.* may change on resume: the grid follows log.n_samples, its first images from the same fixed noise."""
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")  # 16 samples (conftest)
    noise = load_checkpoint(run / "checkpoints/last.pt")["fixed_noise"]
    for n, epochs in ((4, 2), (25, 3)):
        layers = tiny_layers(image_folder, epochs=epochs)
        layers[0]["log"]["n_samples"] = n
        run_training(layers, run)
        now = load_checkpoint(run / "checkpoints/last.pt")["fixed_noise"]
        assert len(now) == n and torch.equal(now[:4], noise[:4])
        with Image.open(run / f"samples/epoch_{epochs:04d}.png") as grid:  # 2 x 2, then 5 x 5 images of 16 px
            assert grid.size[0] == {4: 2, 25: 5}[n] * 16 + ({4: 2, 25: 5}[n] + 1) * 2


def test_a_runs_config_yaml_names_what_the_run_filled_in_and_a_resume_keeps_it(image_folder, tmp_path):
    """What the run filled in for its data and machine (not what the user set: data.resolution here) is named on
    config.yaml's first line, which a resume writes again, less a key its overrides set."""
    from gankit.config import filled_in

    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    assert filled_in(run / "config.yaml") == ["data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv",
                                              "eval.every"]
    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["eval"] = {"every": 0}
    run_training(layers, run)
    assert filled_in(run / "config.yaml") == ["data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv"]


def test_a_resume_on_another_machine_works_out_again_what_the_run_filled_in_for_its_machine(image_folder, tmp_path,
                                                                                            monkeypatch, capsys):
    """A run begun on a CPU and resumed on a GPU (simulated: `machine_defaults` says a GPU's) kept the CPU's kernels
    and its eval.every 0 (no FID on the GPU): what it filled in for its machine is worked out for the new one, said in
    a line; what it filled in for its data stays, and so does a key the user set (data.resolution)."""
    import gankit.evaluate
    import gankit.train
    from gankit.config import filled_in

    def saved(run):
        c = yaml.safe_load((run / "config.yaml").read_text())
        return c["train"]["gemm_wgrad"], c["train"]["thin_conv"], c["eval"]["every"], c["data"]["flip"]

    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    assert saved(run) == (True, True, 0, True)
    gpu = {"train.gemm_wgrad": False, "train.thin_conv": False, "eval.every": 10}
    monkeypatch.setattr(gankit.train, "machine_defaults", lambda device: gpu)
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda *a, **k: lambda generate, n: {
        "fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": n, "n_real": 32})
    capsys.readouterr()
    run_training(tiny_layers(image_folder, epochs=2), run)
    assert saved(run) == (False, False, 10, True)
    assert "train.gemm_wgrad True -> False, train.thin_conv True -> False, eval.every 0 -> 10); its FID curve starts" \
        in capsys.readouterr().err
    assert [x["epoch"] for x in read_metrics(run / "metrics.jsonl") if x["kind"] == "eval"] == [2]
    assert filled_in(run / "config.yaml") == ["data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv",
                                              "eval.every"]
    monkeypatch.setattr(gankit.train, "machine_defaults", lambda device: {**gpu, "eval.every": 0})  # back on a CPU
    run_training(tiny_layers(image_folder, epochs=3), run)
    assert saved(run)[2] == 0 and "eval.every 10 -> 0); it measures FID no more" in capsys.readouterr().err


def test_a_resume_on_the_cpu_it_was_started_on_says_how_to_move_to_a_gpu_found_here(image_folder, tmp_path,
                                                                                   monkeypatch, capsys):
    """A run started with --device cpu and resumed without --device trains on the CPU (the user chose it), without a
    word where a GPU is available (simulated): one line says so and what moves it. Silent where --device is given,
    where no GPU is there, and for a run started on --device auto."""
    from gankit.train import _resolve_run

    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    resumed = tiny_layers(image_folder, epochs=1)
    del resumed[0]["train"]["device"]

    def said(layers, cuda):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        capsys.readouterr()
        _resolve_run(layers, run, {}, torch.device("cpu"))
        return capsys.readouterr().err

    assert f"run '{run}' trains on cpu as it was started (--device cpu), though a GPU is available here: resume it " \
           "with --device cuda to move it there\n" in said(resumed, cuda=True)
    assert "--device cuda" not in said(tiny_layers(image_folder, epochs=1), cuda=True)  # --device cpu given again
    assert "--device cuda" not in said(resumed, cuda=False)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: auto"))
    assert "--device cuda" not in said(resumed, cuda=True)


def test_a_run_that_lost_its_config_yaml_resumes_with_its_checkpoints_config(image_folder, tmp_path, capsys):
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "r")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").unlink()
    capsys.readouterr()
    run_training([{"train": {"epochs": 2}, "log": {"progress": False}}], run)  # no --data, nothing of the model: all from the checkpoint
    assert "config.yaml' was gone: written again from the config in last.pt" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config.replace("epochs: 1", "epochs: 2")
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 8
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "epoch"] == [4, 8]
    # without a checkpoint to take it from, a log that shows training is not overwritten by a new run
    (run / "config.yaml").unlink()
    for ckpt in (run / "checkpoints").iterdir():
        ckpt.unlink()
    log = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(RunError, match=r"trained to iteration 8 .* config.yaml is gone and no checkpoint holds one"):
        run_training(tiny_layers(image_folder, epochs=1), run)
    assert (run / "metrics.jsonl").read_bytes() == log


def test_a_new_run_folder_named_like_an_existing_run_says_so(image_folder, tmp_path, capsys):
    run_training(tiny_layers(image_folder, epochs=1), tmp_path / "pokemon_64px_dcgan")
    capsys.readouterr()
    run_training(tiny_layers(image_folder, epochs=1), tmp_path / "pokemon_64px_dcgn")  # a typo: a new run, as asked
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'pokemon_64px_dcgan'}' holds a run: pass --run {tmp_path / 'pokemon_64px_dcgan'}" in err
    run_training(tiny_layers(image_folder, epochs=1), tmp_path / "birds")  # no run named like it: nothing said
    assert "holds a run" not in capsys.readouterr().err
    # a sibling made on purpose with another recipe could not resume that run: nothing said either
    run_training(tiny_layers(image_folder, epochs=1, loss="hinge"), tmp_path / "pokemon_64px_dcgan-hinge")
    assert "holds a run" not in capsys.readouterr().err
    # nor numbered runs: run_38 beside run_8 is the next of a series, not a typo
    run_training(tiny_layers(image_folder, epochs=1), tmp_path / "run_8")
    run_training(tiny_layers(image_folder, epochs=1), tmp_path / "run_38")
    assert "holds a run" not in capsys.readouterr().err


def test_a_label_file_is_saved_absolute_and_moves_with_its_dataset(tmp_path, monkeypatch, capsys):
    """--labels from the current folder is saved absolute (the run resumes from any folder, as data.path does); when
    the data folder moves with the label file inside it, --data NEW_PLACE takes the file in the new place too; a
    label file that is gone is said so, and may be given anew."""
    make_image_folder(tmp_path / "pets", classes=("cat", "dog"))
    names = sorted(p.relative_to(tmp_path / "pets").as_posix() for p in (tmp_path / "pets").rglob("*.png"))
    (tmp_path / "pets" / "types.csv").write_text("name,kind\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in names))
    monkeypatch.chdir(tmp_path)
    layers = tiny_layers("pets", max_steps=2)
    layers[0]["data"].update(labels="pets/types.csv", label_column="kind")
    run = run_training(layers, tmp_path / "run")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["labels"] == str(tmp_path / "pets/types.csv")
    monkeypatch.chdir(run)  # another folder
    run_training([{"train": {"max_steps": 3}}], run)
    (tmp_path / "pets").rename(tmp_path / "moved")
    run_training([{"data": {"path": str(tmp_path / "moved")}, "train": {"max_steps": 4}}], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (saved["path"], saved["labels"]) == (str(tmp_path / "moved"), str(tmp_path / "moved/types.csv"))
    (tmp_path / "moved/types.csv").rename(tmp_path / "kinds.csv")
    with pytest.raises(RunError, match=r"labels in '.*moved/types.csv', which is not there .* pass --labels"):
        run_training([{"train": {"max_steps": 5}}], run)
    run_training([{"data": {"labels": str(tmp_path / "kinds.csv")}, "train": {"max_steps": 5}}], run)
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 5


def test_a_resume_whose_labels_give_other_classes_says_so(tmp_path, capsys):
    """A label file changed under a conditional run: its classes no longer match the checkpoint's. That was "does not
    match this model (Error(s) in loading state_dict for Generator:)" with another number of classes, and nothing
    at all with as many. With one more class the error came after "warning: model.num_classes 2 is ignored: it
    follows from the data (3 here)", a value the user never set (config.yaml's): the error alone is said now."""
    make_image_folder(tmp_path / "pets", classes=("cat", "dog"))
    names = sorted(p.relative_to(tmp_path / "pets").as_posix() for p in (tmp_path / "pets").rglob("*.png"))
    labels = tmp_path / "pets" / "types.csv"
    labels.write_text("name,kind\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in names))
    layers = tiny_layers(tmp_path / "pets", max_steps=2)
    layers[0]["data"].update(labels=str(labels), label_column="kind")
    run = run_training(layers, tmp_path / "run")
    as_many = ["cow" if n.startswith("dog") else "cat" for n in names]
    one_more = ["bird" if i == 0 else n.split("/")[0] for i, n in enumerate(names)]
    for kinds, now in ((as_many, r"2 \(new: cow; gone: dog\)"), (one_more, r"3 \(new: bird\)")):  # which, not all
        labels.write_text("name,kind\n" + "".join(f"{n},{k}\n" for n, k in zip(names, kinds)))
        capsys.readouterr()
        with pytest.raises(RunError, match=rf"trained on 2 classes \(cat, dog\) but its labels now give {now} from "):
            run_training([{"train": {"max_steps": 4}}], run)
        assert "is ignored" not in capsys.readouterr().err


def test_a_resume_whose_labels_moved_images_between_classes_says_how_many(tmp_path, capsys):
    """A label file edited within its classes (an image relabelled): the resume went on without a word. It says how
    many images changed class, with one, and goes on with the new labels; a checkpoint of an older gankit (without
    each image's class) resumes silently, as before."""
    images = tmp_path / "imgs"
    make_image_folder(images, n=16)
    kinds = images / "kinds.csv"
    kinds.write_text("file,kind\n" + "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n" for i in range(16)))
    layers = tiny_layers(images, max_steps=1)
    layers[0]["data"].update(labels=str(kinds), label_column="kind")
    run = run_training(layers, tmp_path / "run")
    kinds.write_text(kinds.read_text().replace("img_000.png,a", "img_000.png,b").replace("img_003.png,b", "img_003.png,a"))
    capsys.readouterr()
    run_training([{"train": {"max_steps": 2}}], run)
    err = capsys.readouterr().err
    assert "2 images of" in err and "changed class since this run's checkpoint was written (e.g. 'img_000.png': a -> b" in err
    last = load_checkpoint(run / "checkpoints/last.pt")
    assert (last["iteration"], last["image_classes"]["img_000.png"]) == (2, "b")
    run_training([{"train": {"max_steps": 3}}], run)  # trained with these labels now: nothing to say
    assert "changed class" not in capsys.readouterr().err
    save_checkpoint({k: v for k, v in load_checkpoint(run / "checkpoints/last.pt").items() if k != "image_classes"},
                    run / "checkpoints/last.pt")
    kinds.write_text(kinds.read_text().replace("img_005.png,b", "img_005.png,a"))
    run_training([{"train": {"max_steps": 4}}], run)
    assert "changed class" not in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 4


def test_a_run_whose_dataset_moved_resumes_from_its_new_place(tmp_path, capsys):
    """Its folder moved (or the run continues on another machine): --data gives the new place; while the old one
    is there, another --data is another config, as before."""
    from gankit.errors import DataError
    from gankit.evaluate import evaluate_run

    make_image_folder(tmp_path / "a")
    make_image_folder(tmp_path / "other")
    run = run_training(tiny_layers(tmp_path / "a", max_steps=2), tmp_path / "run")
    with pytest.raises(RunError, match="different config"):
        run_training(tiny_layers(tmp_path / "other", max_steps=4), run)
    (tmp_path / "a").rename(tmp_path / "b")
    with pytest.raises(RunError, match=rf"trained on '{tmp_path / 'a'}', which does not exist any more: pass --data"):
        run_training([{"train": {"max_steps": 4}}], run)
    with pytest.raises(DataError, match="does not exist any more: pass --data"):
        evaluate_run(run, None, n_fake=2, n_real=2, device="cpu")
    capsys.readouterr()
    run_training(tiny_layers(tmp_path / "b", max_steps=4), run)
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'a'}' is gone: resuming on the images in '{tmp_path / 'b'}'" in err
    assert "resuming from iteration 2" in err and load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == str(tmp_path / "b")


def test_a_run_being_trained_is_not_trained_a_second_time_at_once(image_folder, tmp_path):
    """A second `gankit train` on a folder another process is training would resume from the same checkpoint and
    truncate the first's log: refused before it touches anything. The lock is the folder's own (flock): it goes
    with its holder, so the next training goes on; a start that fails leaves no empty folders behind."""
    from gankit import runlock

    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"].update(plots=False, tensorboard=False)
    run = run_training(layers, tmp_path / "run")
    log, one_epoch = (run / "metrics.jsonl").read_bytes(), load_checkpoint(run / "checkpoints/last.pt")["iteration"]
    layers[0]["train"]["epochs"] = 2
    with runlock.hold(run, "--run"):  # as another process training it would
        with pytest.raises(RunError, match="is being trained by another gankit process"):
            run_training(layers, run)
    assert (run / "metrics.jsonl").read_bytes() == log
    assert load_checkpoint(run_training(layers, run) / "checkpoints/last.pt")["iteration"] == 2 * one_epoch

    bad = tiny_layers(tmp_path / "no_such_images", epochs=1)
    with pytest.raises(Exception):
        run_training(bad, tmp_path / "new" / "deeper" / "run")
    assert not (tmp_path / "new").exists()


def test_a_tensorboard_that_cannot_write_is_one_warning_and_the_run_goes_on(image_folder, tmp_path, capsys):
    """TensorBoard's writer fails from its own thread (a full disk, a folder it may not write): that printed a raw
    traceback into the error line and stopped the run. Now one warning, and training goes on with metrics.jsonl."""
    import errno
    import threading

    from tensorboard.summary.writer import record_writer

    real = record_writer.RecordWriter.write
    fail = {"after": 3}  # writes: the file's version record, then the run's first lines

    def write(self, data):
        fail["after"] -= 1
        if fail["after"] < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    traces = []
    hook = threading.excepthook
    record_writer.RecordWriter.write = write
    try:
        threading.excepthook = lambda args: traces.append(args)  # what would print a raw traceback
        run = run_training(tiny_layers(image_folder, epochs=2), tmp_path / "run")
    finally:
        record_writer.RecordWriter.write = real
        threading.excepthook = hook
    err = capsys.readouterr().err
    assert err.count("warning: TensorBoard's log in") == 1 and "(No space left on device)" in err
    assert "Traceback" not in err and not traces
    assert load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 8


def test_a_metrics_line_the_disk_refuses_stops_the_run_in_one_line_that_says_how_to_resume(tmp_path):
    import errno

    from gankit.runlog import RunLog

    log = RunLog(tmp_path / "run", None, tensorboard=False)

    class Full:
        closed = False

        def write(self, _):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    log.file = Full()
    with pytest.raises(RunError) as info:
        log.write("step", 1, 0, 0.1, {"d_loss": 1.0})
    assert str(info.value) == (f"could not write '{tmp_path / 'run' / 'metrics.jsonl'}' (No space left on device): the "
                               f"disk is full: free some space, then resume with gankit train --run {tmp_path / 'run'}")


def test_a_tensorboard_that_cannot_be_imported_is_said_once(tmp_path, monkeypatch, capsys):
    import sys

    from gankit.runlog import RunLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as with a broken install
    log = RunLog(tmp_path / "run", None, tensorboard=True)
    log.write("step", 1, 0, 0.1, {"d_loss": 1.0})
    log.close()
    err = capsys.readouterr().err
    assert err.count("warning: TensorBoard cannot be imported") == 1 and "pip install tensorboard" in err
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["d_loss"] == 1.0


def test_a_checkpoint_of_an_older_gankit_resumes_and_one_without_the_models_says_so(image_folder, tmp_path):
    """Checkpoints of older versions lack what later ones added (noisy labels' state, ADA, the EMA copy, counters):
    their resume crashed with "internal error (KeyError: 'noisy_labels')". Those parts start as in a new run; a
    checkpoint without what a resume cannot do without is one line."""
    from gankit.checkpoint import save_checkpoint

    layers = tiny_layers(image_folder, epochs=1, ema=0.9)
    layers[0]["log"].update(plots=False, tensorboard=False)
    run = run_training(layers, tmp_path / "run")
    state = load_checkpoint(run / "checkpoints/last.pt")
    old = {k: v for k, v in state.items() if k not in ("noisy_labels", "ada", "G_ema", "last_g_loss", "d_skipped",
                                                        "rollbacks", "strategy", "rng_cuda")}
    save_checkpoint(old, run / "checkpoints/last.pt", keep_previous=False)
    layers[0]["train"]["epochs"] = 2
    resumed = load_checkpoint(run_training(layers, run) / "checkpoints/last.pt")
    assert resumed["iteration"] == 2 * state["iteration"] and resumed["G_ema"] is not None

    save_checkpoint({k: v for k, v in old.items() if k not in ("opt_d", "fixed_noise")}, run / "checkpoints/last.pt")
    layers[0]["train"]["epochs"] = 3
    with pytest.raises(RunError, match=r"lacks opt_d, fixed_noise: it cannot be resumed"):
        run_training(layers, run)


def test_a_run_whose_older_config_names_its_data_relatively_resumes_with_the_same_command(tmp_path, monkeypatch,
                                                                                          capsys):
    """Older gankits saved data.path and data.labels as typed (relative to the folder the run was started from):
    they are read from the current folder, as that gankit read them, said in a line, and made absolute, so the
    same command with `--data data/imgs --labels data/kinds.csv` resumes the run (it was "a different config")."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "data" / "imgs", n=16)
    (tmp_path / "data" / "kinds.csv").write_text("file,kind\n" + "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n"
                                                                          for i in range(16)))
    layers = tiny_layers("data/imgs", epochs=1)
    layers[0]["data"].update(labels="data/kinds.csv", label_column="kind")
    layers[0]["model"]["arch"] = "acgan"
    run = run_training(layers, "run")
    config = run / "config.yaml"
    text = config.read_text()
    assert f"path: {tmp_path / 'data' / 'imgs'}" in text
    config.write_text(text.replace(str(tmp_path / "data") + "/", "data/"))  # as an older gankit wrote it
    capsys.readouterr()
    layers[0]["train"]["epochs"] = 2
    run_training(layers, "run")
    err = capsys.readouterr().err
    assert (f"names its data relative to the folder it was started from (an older gankit wrote its config.yaml): "
            f"reading data.path 'data/imgs' as {tmp_path / 'data' / 'imgs'} and data.labels 'data/kinds.csv' as "
            f"{tmp_path / 'data' / 'kinds.csv'}") in err
    assert "resuming from iteration 2" in err and "is gone" not in err
    assert yaml.safe_load(config.read_text())["data"]["labels"] == str(tmp_path / "data" / "kinds.csv")


@pytest.mark.parametrize("first, then", [("kinds.csv", "absolute"), ("absolute", "kinds.csv")])
def test_a_label_file_named_inside_the_data_folder_or_by_its_full_path_resumes_the_run(tmp_path, monkeypatch, first,
                                                                                       then):
    """`--labels kinds.csv` is the data folder's file: a resume that names it by its full path (or the other way
    round) is the same run, not "a different config"."""
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "imgs"
    make_image_folder(images, n=16)
    (images / "kinds.csv").write_text("file,kind\n" + "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n" for i in range(16)))

    def layers(labels: str, epochs: int) -> list[dict]:
        out = tiny_layers(images, epochs=epochs)
        out[0]["data"].update(labels=str(images / "kinds.csv") if labels == "absolute" else labels, label_column="kind")
        return out

    run = run_training(layers(first, 1), "run")
    run_training(layers(then, 2), "run")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 4  # 2 epochs of 2 batches


def test_a_config_yaml_edited_by_hand_is_refused_where_a_resume_cannot_change_it(image_folder, tmp_path):
    """A learning rate edited in config.yaml resumed silently while the optimizer kept the old one; what a resume
    may change (the epochs) is still taken from it, and a broken one says how to mend it."""
    run = run_training(tiny_layers(image_folder, epochs=1), tmp_path / "run")
    config = run / "config.yaml"
    text = config.read_text()
    config.write_text(text.replace("lr_g: 0.00015", "lr_g: 0.001"))
    with pytest.raises(RunError, match=r"config.yaml' differs from the config its checkpoint was trained with "
                                       r"\(train.lr_g: 0.00015 -> 0.001\), which a resume cannot change: put it back"):
        run_training([], run)
    config.write_text(text.replace("epochs: 1", "epochs: 2"))
    run_training([], run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 8  # 2 epochs of 32 images
    config.write_text("train: [")
    with pytest.raises(RunError, match="is not a gankit config .*: mend it, or delete it to have it written again"):
        run_training([], run)


def test_a_relative_label_file_is_the_data_folders_before_the_current_folders(tmp_path, monkeypatch):
    """The README's rule, as the dataset reader applies it: `--labels kinds.csv` with a kinds.csv in the data folder and
    another in the current folder means the data folder's. The current folder's was made absolute first, and won."""
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "imgs"
    make_image_folder(images, n=16)
    rows = "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n" for i in range(16))
    (images / "kinds.csv").write_text("file,kind\n" + rows)
    (tmp_path / "kinds.csv").write_text("file,kind\n" + rows.replace(",a", ",c"))  # classes b, c
    layers = tiny_layers(images, max_steps=1)
    layers[0]["data"].update(labels="kinds.csv", label_column="kind")
    run = run_training(layers, "run")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["class_names"] == ["a", "b"]


def test_a_relative_label_file_is_the_archives_before_the_current_folders(tmp_path, monkeypatch):
    """The README's rule for an archive too: `--data imgs.zip --labels kinds.csv` with a kinds.csv in the archive and
    another in the current folder means the archive's. The current folder's was made absolute first, and won."""
    import zipfile

    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "imgs", n=16)
    rows = "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n" for i in range(16))
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for image in sorted((tmp_path / "imgs").iterdir()):
            zf.write(image, f"imgs/{image.name}")
        zf.writestr("imgs/kinds.csv", "file,kind\n" + rows)
    (tmp_path / "kinds.csv").write_text("file,kind\n" + rows.replace(",a", ",c"))  # classes b, c
    layers = tiny_layers(tmp_path / "imgs.zip", max_steps=1)
    layers[0]["data"].update(labels="kinds.csv", label_column="kind")
    run = run_training(layers, "run")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["class_names"] == ["a", "b"]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["labels"] == "kinds.csv"


def test_a_resume_given_the_relative_label_file_again_without_data_means_the_data_folders(tmp_path, monkeypatch):
    """`gankit train --run RUN --labels kinds.csv` (no --data) from a folder that has a kinds.csv of its own: the run's
    data folder's file, as for the run itself. It was made absolute from the current folder (no --data named the data
    folder yet), and the resume was refused as a different config."""
    images = tmp_path / "imgs"
    make_image_folder(images, n=16)
    rows = "".join(f"img_{i:03d}.png,{'ab'[i % 2]}\n" for i in range(16))
    (images / "kinds.csv").write_text("file,kind\n" + rows)
    layers = tiny_layers(images, max_steps=1)
    layers[0]["data"].update(labels="kinds.csv", label_column="kind")
    run = run_training(layers, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kinds.csv").write_text("file,kind\n" + rows.replace(",a", ",c"))  # classes b, c
    run_training([{"data": {"labels": "kinds.csv"}, "train": {"max_steps": 2}}], run)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (last["iteration"], last["class_names"]) == (2, ["a", "b"])


def test_the_data_folder_is_refused_as_the_run_folder(image_folder, tmp_path):
    """Its grids and plots would be trained on at the next resume (and, under links, found again as the same folder)."""
    (tmp_path / "link").symlink_to(image_folder)
    for run in (image_folder, tmp_path / "link"):
        with pytest.raises(RunError, match="the run folder '.*' is the data folder: its sample grids and plots would "
                                           "become training images there: pass another --run folder"):
            run_training(tiny_layers(image_folder), run)
    assert not (image_folder / "config.yaml").exists()


def test_a_folder_that_holds_runs_is_refused_as_a_new_run(image_folder, tmp_path):
    """`gankit train --run runs` (meaning to resume a run in it) trained a new run there, among the runs, its
    config.yaml and checkpoints/ beside their folders: refused before anything is written, naming them."""
    run_training(tiny_layers(image_folder, max_steps=1), tmp_path / "runs" / "try1")
    with pytest.raises(RunError, match="'.*runs' holds runs \\(try1\\), it is not one: pass one of them to resume it "
                                       "\\(--run .*try1\\) or a new folder \\(--run .*NAME\\)"):
        run_training(tiny_layers(image_folder), tmp_path / "runs")
    assert not (tmp_path / "runs" / "config.yaml").exists()


def test_a_complete_run_stopped_before_its_gif_writes_it_when_run_again(image_folder, tmp_path, capsys):
    """Ctrl-C after the last checkpoint but before evolution.gif: running the command again only said "already
    complete" and the run never got its GIF."""
    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"]["tensorboard"] = False
    run = run_training(layers, tmp_path / "run")
    (run / "evolution.gif").unlink()
    run_training(layers, run)
    assert "is already complete" in capsys.readouterr().err and (run / "evolution.gif").is_file()


def test_a_run_of_10000_epochs_or_more_names_its_grids_and_checkpoints_so_that_they_sort_in_epoch_order(image_folder,
                                                                                                         tmp_path):
    """epoch_10000.png sorted between epoch_1000.png and epoch_1001.png in a file listing: a run whose budget has five
    digits names its epochs with five, and a resume with such a budget renames the grids and checkpoints of before."""
    layers = tiny_layers(image_folder, epochs=1)  # 4 iterations per epoch
    layers[0]["log"].update(grids_per_epoch=2, write_share=0, tensorboard=False)
    run = run_training(layers, tmp_path / "r")
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0001_batch_0002.png"]
    layers[0]["train"].update(epochs=10_000, max_steps=8)
    run_training(layers, run)
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_00001.png", "epoch_00001_batch_0002.png", "epoch_00002.png", "epoch_00002_batch_0002.png"]
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*")) == ["epoch_00001.pt", "epoch_00002.pt"]
    assert [p.name for p in find_samples(run / "samples")] == ["epoch_00001.png", "epoch_00002.png"]
    assert load_checkpoint(numbered_checkpoints(run / "checkpoints")[0])["iteration"] == 8


def test_a_resume_from_an_older_checkpoint_removes_the_grids_of_later_epochs(image_folder, tmp_path, capsys):
    """Resumed from a checkpoint inside epoch 2 after the run had gone on to epoch 4 (its later checkpoints lost),
    the grids of epochs 3 and 4 stayed, from a future the resume threw away, in evolution.gif and `gankit compare`.
    The grid of the epoch the checkpoint is inside of stays, and those inside it up to the checkpoint's batch."""
    layers = tiny_layers(image_folder, epochs=4, max_steps=6)  # 4 iterations per epoch: stops inside epoch 2
    layers[0]["log"].update(grids_per_epoch=2, write_share=0, tensorboard=False)
    run = run_training(layers, tmp_path / "r")
    shutil.copy(run / "checkpoints/last.pt", tmp_path / "inside_epoch_2.pt")
    layers[0]["train"]["max_steps"] = None
    run_training(layers, run)
    assert len(list((run / "samples").iterdir())) == 8  # epoch_0001.png, epoch_0001_batch_0002.png ... epoch 4's
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    shutil.copy(tmp_path / "inside_epoch_2.pt", run / "checkpoints/last.pt")
    capsys.readouterr()
    layers[0]["train"]["max_steps"] = 6
    run_training(layers, run)
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_0001.png", "epoch_0001_batch_0002.png", "epoch_0002.png", "epoch_0002_batch_0002.png"]
    assert "removed 4 sample grids of epochs after the checkpoint resumed from (iteration 6)" in capsys.readouterr().err
    with Image.open(run / "evolution.gif") as gif:
        assert gif.n_frames == 2


def test_keys_that_follow_from_the_data_say_so_when_set(image_folder, tmp_path, capsys):
    layers = tiny_layers(image_folder, epochs=1) + [{"model": {"channels": 1, "num_classes": 5}}]
    run = run_training(layers, tmp_path / "run")
    err = capsys.readouterr().err
    assert "model.channels 1 is ignored: it follows from the data (3 here)" in err
    assert "model.num_classes 5 is ignored: it follows from the data (0 here)" in err
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert (saved["channels"], saved["num_classes"]) == (3, 0)
    run_training(tiny_layers(image_folder, epochs=2), run)  # a resume, whose config.yaml holds both: nothing said
    assert "is ignored" not in capsys.readouterr().err


def test_a_dataset_folder_whose_name_is_not_utf8_trains_into_a_run_named_in_utf8(tmp_path, monkeypatch):
    """A Latin-1 folder name (lone surrogates in Python) made a run name that plots, TensorBoard and pages refuse:
    the run stopped at every epoch end with a raw traceback."""
    data = tmp_path / os.fsdecode(b"donn\xe9es")
    make_image_folder(data, n=16)
    monkeypatch.chdir(tmp_path)
    run = run_training(tiny_layers(data, epochs=1), None)
    assert run.name == "donn_es_16px_dcgan"
    assert (run / "plots" / "losses.png").is_file() and (run / "samples" / "epoch_0001.png").is_file()


@pytest.mark.parametrize("name", ["x" * 250, "猫の写真" * 21], ids=["latin", "japanese"])
def test_a_dataset_folder_with_a_long_name_gives_a_run_name_a_file_system_takes(tmp_path, name):
    """A data folder named with 250 letters (or 84 Japanese characters, 252 bytes) made the default run folder
    `runs/<name>_32px_dcgan`, longer than the 255 bytes a file name may have: "File name too long"."""
    from gankit.config import build_config
    from gankit.train import default_run_dir

    (tmp_path / name).mkdir()
    run = default_run_dir(build_config({"data": {"path": str(tmp_path / name), "resolution": 32}}))
    assert run.parent == Path("runs") and run.name.endswith("_32px_dcgan") and name.startswith(run.name[:-11])
    assert len(f"{run.name}-99".encode()) < 200


def test_training_on_images_smaller_than_the_resolution_says_so_once(tmp_path, capsys):
    """13 px images trained at 16 px were upscaled without a word; a run start says it in one line (at 16 px, the
    smallest resolution, the fix is larger images)."""
    make_image_folder(tmp_path / "d", n=8, size=13)
    run_training(tiny_layers(tmp_path / "d", max_steps=1), tmp_path / "run")
    said = [line for line in capsys.readouterr().err.splitlines() if "upscaled" in line]
    assert said == ["warning: 8 of 8 images are smaller than 16 px (shorter side; median 13 px) and are upscaled to "
                    "it, which blurs them: use images at least 16 px"]


@pytest.mark.parametrize("name", [".hidroot", "..hid.zip", "..."])
def test_a_hidden_dataset_gives_a_run_folder_that_is_not_hidden(tmp_path, name):
    """`--data /x/.hidroot` trained into `runs/.hidroot_32px_dcgan`, a folder that `ls` does not show."""
    from gankit.config import build_config
    from gankit.train import default_run_dir

    (tmp_path / name).write_bytes(b"") if name.endswith(".zip") else (tmp_path / name).mkdir()
    run = default_run_dir(build_config({"data": {"path": str(tmp_path / name), "resolution": 32}}))
    assert run.parent == Path("runs") and not run.name.startswith(".")
    assert run.name == {".hidroot": "hidroot", "..hid.zip": "hid", "...": "data"}[name] + "_32px_dcgan"


def test_a_run_made_under_a_hidden_datasets_hidden_name_goes_on_there(tmp_path, monkeypatch):
    """Runs trained before hidden names were shown live in `runs/.hidroot_32px_dcgan`: the same command resumes them."""
    from gankit.config import build_config
    from gankit.train import default_run_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hidroot").mkdir()
    cfg = build_config({"data": {"path": str(tmp_path / ".hidroot"), "resolution": 32}})
    assert default_run_dir(cfg) == Path("runs") / "hidroot_32px_dcgan"
    (tmp_path / "runs" / ".hidroot_32px_dcgan").mkdir(parents=True)
    assert default_run_dir(cfg) == Path("runs") / ".hidroot_32px_dcgan"


def test_a_resumed_trainer_holds_every_piece_of_state_its_checkpoint_saved(image_folder, tmp_path):
    """The resume tests train with the defaults: no EMA, no ADA, no noisy labels, and counters that a straight run
    leaves at their start values. Here every piece of a checkpoint, the tricks' states included and the counters set
    to values of their own, must come back from `state_dict()` of the Trainer built from it."""
    layers = tiny_layers(image_folder, max_steps=7, epochs=5, ema=0.9, augment="color,translation,cutout",
                         ada_target=0.6, label_swap=0.3)
    layers[0]["log"].update(plots=False, tensorboard=False)
    run = run_training(layers, tmp_path / "run")
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"G_ema", "ada", "noisy_labels"} <= set(saved)
    saved.update(best_fid=12.5, rollbacks=2, elapsed=123.0, d_skipped=1, last_g_loss=0.75)
    save_checkpoint(saved, run / "checkpoints" / "last.pt")
    now = _trainer(layers, image_folder, run, resume=True).state_dict()
    # (config and filled_in, what config.yaml holds, come to a resume from config.yaml through run_training)
    differ = [k for k in saved if k not in ("config", "filled_in", "rng_cuda", "rng_device")
              and state_digest(saved[k]) != state_digest(now.get(k))]
    assert differ == []


def test_a_resumed_critic_run_goes_on_from_its_batch_not_its_iteration(image_folder, tmp_path):
    """Under the critic strategy an iteration takes n_critic batches: the checkpoint's batch cursor and its iteration
    differ, and a run resumed at 3 of 6 iterations must equal the run that went straight to 6."""
    def layers(steps):
        out = tiny_layers(image_folder, max_steps=steps, epochs=10, strategy="critic", n_critic=2)
        out[0]["log"].update(plots=False, tensorboard=False)
        return out

    a = load_checkpoint(run_training(layers(6), tmp_path / "a") / "checkpoints" / "last.pt")
    run_training(layers(3), tmp_path / "b")
    b = load_checkpoint(run_training(layers(6), tmp_path / "b") / "checkpoints" / "last.pt")
    assert a["cursor"] == b["cursor"] != a["iteration"]
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])


def test_step_lines_say_the_epochs_done_in_batches_a_critic_step_taking_n_critic(image_folder, tmp_path):
    """Each step line says where in training it stands, in epochs (batches consumed over batches per epoch: 32 images
    in batches of 8, 2 batches a critic step), which the comparison page draws curves along inside an epoch; the
    epoch line's averages do not take it in."""
    from gankit.report.runs import load_run

    layers = tiny_layers(image_folder, max_steps=3, epochs=2, strategy="critic", n_critic=2)
    layers[0]["log"].update(every=1, plots=False, tensorboard=False)
    run = run_training(layers, tmp_path / "run")
    lines = read_metrics(run / "metrics.jsonl")
    assert [(x["kind"], x["step"], x.get("epochs_done")) for x in lines] == [
        ("step", 1, 0.5), ("step", 2, 1.0), ("epoch", 2, None), ("step", 3, 1.5)]
    assert load_run(run).unfinished_epoch == (2, pytest.approx(0.5))


def test_a_dataset_that_shrank_keeps_the_position_inside_the_epoch(tmp_path):
    """Stopped half-way through an epoch of 4 batches (iteration 6: epoch 1 done, 2 of 4 batches of the second),
    resumed on half the images (2 batches an epoch): 1 epoch and 1 batch of the new epoch length."""
    data = tmp_path / "images"
    make_image_folder(data, n=32)
    layers = tiny_layers(data, epochs=5, max_steps=6)
    run = run_training(layers, tmp_path / "run")
    for p in sorted(data.iterdir())[16:]:
        p.unlink()
    assert _trainer(layers, data, run, resume=True).cursor == 2 + 1


def test_a_dataset_that_changed_since_the_checkpoint_is_said_and_keeps_the_epochs_done(tmp_path, capsys):
    """The position is counted in batches: resumed on 8 of its 24 images, a run of 2 epochs done read as 6 and said
    "already complete" for 4; with images added, epoch 1 was logged twice. Too few images for the run's batch size
    advised a --batch-size that the resume then refused."""
    from gankit.errors import RunError

    data = tmp_path / "images"
    make_image_folder(data, n=24)  # 3 batches of 8 per epoch
    run = run_training(tiny_layers(data, epochs=2), tmp_path / "run")
    for p in sorted(data.iterdir())[8:]:
        p.unlink()  # 1 batch per epoch now
    capsys.readouterr()
    run_training(tiny_layers(data, epochs=4), run)
    err = capsys.readouterr().err
    assert "holds 8 images, 24 when this run's checkpoint was written" in err and "its 2 epochs done kept" in err
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["iteration"] == 6 + 2 and state["n_images"] == 8
    assert sorted(p.name for p in (run / "samples").glob("epoch_*.png"))[-1] == "epoch_0004.png"
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "epoch"]
    assert epochs == [1, 2, 3, 4]
    for p in sorted(data.iterdir())[4:]:
        p.unlink()
    with pytest.raises(RunError, match=r"trains batches of 8 images but its dataset .* now holds 4: put back"):
        run_training(tiny_layers(data, epochs=5), run)


@pytest.mark.parametrize("during", ["write_samples", "write_pictures"])
def test_a_stop_during_a_finished_runs_last_writes_lets_it_end_as_done(image_folder, tmp_path, monkeypatch, during):
    """SIGTERM during the last epoch end's writings said "interrupted ... Resume with" and exited 130 (a scheduler
    then retried it), though the run had finished: the next command only said "already complete". One during the
    plots and GIF written after the loop killed the process (the default handler was back): no message, no GIF."""
    import signal

    from gankit.train import Trainer

    original = getattr(Trainer, during)

    def writing(self, *a, **k):
        if self.epoch == 2 and (during == "write_samples" or k.get("gif", True)):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    monkeypatch.setattr(Trainer, during, writing)
    run = run_training(tiny_layers(image_folder, epochs=2), tmp_path / "run")
    assert (run / "evolution.gif").is_file() and (run / "samples" / "epoch_0002.png").is_file()


def test_a_training_names_the_settings_that_have_no_effect_in_its_config(image_folder, tmp_path, capsys):
    layers = tiny_layers(image_folder, max_steps=1, clip=0.02)  # clip acts only with train.loss wgan
    run_training(layers, tmp_path / "run")
    assert "warning: this setting has no effect here: train.clip (only with train.loss wgan)" in capsys.readouterr().err


def test_a_run_whose_config_holds_a_setting_refused_since_resumes_with_a_warning(image_folder, tmp_path, capsys):
    """label_smoothing with the hinge loss had no effect and was accepted; it is refused now, and such a run's resume
    stopped with "config.yaml is not a gankit config"."""
    import yaml

    run = run_training(tiny_layers(image_folder, max_steps=2, loss="hinge"), tmp_path / "run")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["train"]["label_smoothing"] = 0.1  # as the older gankit saved it, in config.yaml and in its checkpoint
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["config"]["train"]["label_smoothing"] = 0.1
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    capsys.readouterr()
    run_training(tiny_layers(image_folder, max_steps=4, loss="hinge"), run)  # `gankit train --run DIR --max-steps 4`
    assert "holds a setting that has no effect" in capsys.readouterr().err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["iteration"] == 4


def test_a_metric_line_holds_its_values_and_tensorboard_the_same_under_kind_tags(tmp_path):
    """A fresh run's log starts empty (lines of an attempt that died before its first checkpoint are gone); a line
    holds the values, a non-finite one as null (strict JSON), the time to the ms; TensorBoard's tags are kind/name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gankit.runlog import RunLog

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "step", "step": 40, "epoch": 9, "time": 1.0}) + "\n")
    log = RunLog(tmp_path, None)
    log.write("step", 3, 1, 12.34567, {"d_loss": 0.5, "g_loss": float("nan"), "d_updates": 3}, epochs_done=0.375)
    log.close()
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) == {
        "kind": "step", "step": 3, "epoch": 1, "epochs_done": 0.375, "time": 12.346, "d_loss": 0.5, "g_loss": None,
        "d_updates": 3}
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("step/d_loss")] == [(3, 0.5)]
    assert sorted(events.Tags()["scalars"]) == ["step/d_loss", "step/d_updates", "step/g_loss"]  # an axis: no scalar


def test_a_resume_keeps_tensorboards_points_up_to_its_checkpoint_and_replaces_those_after(tmp_path):
    """As in metrics.jsonl: resumed from step 2, TensorBoard shows steps 1 and 2, then the resumed run's step 3."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gankit.runlog import RunLog

    log = RunLog(tmp_path, None)
    for step in (1, 2, 3):
        log.write("step", step, 1, step, {"d_loss": float(step)})
    log.close()
    log = RunLog(tmp_path, 2)
    log.write("step", 3, 1, 3.5, {"d_loss": 30.0})
    log.close()
    expected = [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert [(r["step"], r["d_loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == expected
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("step/d_loss")] == expected


def test_a_new_run_hides_the_tensorboard_points_of_an_attempt_that_died_before_its_first_checkpoint(tmp_path):
    """metrics.jsonl starts empty in a new run over such an attempt's folder, but TensorBoard showed both attempts'
    points, two at each step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gankit.runlog import RunLog

    for attempt in (1.0, 2.0):
        log = RunLog(tmp_path, None)
        log.write("step", 1, 1, 1.0, {"d_loss": attempt})
        log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("step/d_loss")] == [(1, 2.0)]


def _config_texts(run) -> list[tuple[int, str, str]]:
    """(step, config.yaml text, recipe line) of each config TensorBoard shows for `run`, read as TensorBoard reads its
    Text tab (event_accumulator's EventAccumulator does not purge text after a resume's restart, TensorBoard does)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    texts = [[(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(f"config/{tag}/text_summary")]
             for tag in ("yaml", "recipe")]
    assert [step for step, _ in texts[0]] == [step for step, _ in texts[1]]
    return [(step, yaml_text, recipe) for (step, yaml_text), (_, recipe) in zip(*texts)]


def test_tensorboard_holds_the_config_of_a_run_and_of_each_resume_that_changed_it_once_per_step(image_folder, tmp_path,
                                                                                                monkeypatch):
    """`tensorboard --logdir runs` showed the curves but not which recipe made them: config.yaml and the recipe line
    are in its Text tab from the run's start, and again where a resume changed the config (not where it did not), at
    the resume's first iteration: a resume from the same checkpoint again does not show it twice there."""
    from gankit.config import from_dict, recipe_line

    original = ctrl_c_at(monkeypatch, 1)
    layers = tiny_layers(image_folder, epochs=1)  # 4 iterations
    with pytest.raises(KeyboardInterrupt):
        run_training(layers, tmp_path / "r")
    monkeypatch.setattr(Trainer, "_g_phase", original)
    run = run_training(layers, tmp_path / "r")  # the same config: nothing new
    first = (run / "config.yaml").read_text()
    recipe = recipe_line(from_dict(yaml.safe_load(first))).splitlines()  # batch_size 8: a second line, shown as one
    assert _config_texts(run) == [(0, "".join(f"    {line}\n" for line in first.splitlines()),
                                   f"`{recipe[0]}`  \n`{recipe[1]}`")]
    shutil.copy(run / "checkpoints/last.pt", tmp_path / "at_4.pt")
    layers[0]["train"]["epochs"] = 2
    for _ in range(2):  # the second time from the same checkpoint, as after a crash before the next one
        shutil.copy(tmp_path / "at_4.pt", run / "checkpoints/last.pt")
        run_training(layers, run)
        texts = _config_texts(run)
        assert [step for step, _, _ in texts] == [0, 5]
        assert texts[1][1] == texts[0][1].replace("epochs: 1", "epochs: 2") != texts[0][1] and texts[1][2] == texts[0][2]


def test_a_rewind_past_the_config_text_writes_it_again_after_the_checkpoint(tmp_path):
    """A NaN rollback to the checkpoint a resume started from hides what came after it, the config's text too."""
    from gankit.runlog import RunLog

    log = RunLog(tmp_path, 2)
    log.config("a: 1", "recipe: x", 3)
    log.rewind(2)
    log.close()
    assert _config_texts(tmp_path) == [(3, "    a: 1\n", "`recipe: x`")]


def test_read_metrics_skips_a_garbled_line_anywhere_not_only_the_last(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"kind": "step", "step": 1}) + '\n{"kind": "step", "st\n'
                    + json.dumps({"kind": "step", "step": 2}) + '\n[1, 2]\n{"kind": "ep')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_a_complete_run_in_a_read_only_folder_says_it_is_complete(image_folder, tmp_path, monkeypatch, capsys):
    """`gankit train --run X` on a finished run whose folder is read-only (`chmod -R a-w`) failed on metrics.jsonl,
    which it wrote again (and generator.safetensors, and a new TensorBoard event file) though nothing needed writing:
    it says that the run is complete, as it does where it can write."""
    from conftest import read_only

    layers = tiny_layers(image_folder, epochs=1)
    run = run_training(layers, tmp_path / "r")
    read_only(monkeypatch, run)
    capsys.readouterr()
    run_training(layers, run)
    assert f"run '{run}' is already complete (4 iterations" in capsys.readouterr().err


def test_a_complete_run_in_a_read_only_folder_missing_its_last_numbered_checkpoint_says_it_is_complete(
        image_folder, tmp_path, monkeypatch, capsys):
    """A complete run whose last epoch's numbered checkpoint is missing (held back by a nearly full disk), resumed in a
    read-only folder: the resume's mend of it failed ("could not write checkpoint"), an error instead of saying that
    the run is complete. It says in one line that it could not be written, and that the run is complete."""
    from conftest import read_only

    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"]["checkpoint_every"] = 1
    run = run_training(layers, tmp_path / "r")
    (run / "checkpoints/epoch_0001.pt").unlink()
    read_only(monkeypatch, run)
    capsys.readouterr()
    run_training(layers, run)
    err = capsys.readouterr().err
    assert (f"warning: could not mend what a stop left in run '{run}' (Permission denied): the missing numbered "
            "checkpoint of epoch 1: make the folder writable and run the same command again") in err
    assert f"run '{run}' is already complete (4 iterations" in err
    assert not (run / "checkpoints/epoch_0001.pt").exists()


@pytest.mark.parametrize("stop", ["during the last save", "during the last pictures"])
def test_a_complete_run_in_a_read_only_folder_that_a_stop_left_unmended_says_it_is_complete(
        stop, image_folder, tmp_path, monkeypatch, capsys):
    """A complete run resumed in a read-only folder, as a kill during its last writes left it: its mend (`_mend_a_kill`)
    failed on the first write the folder refused, an error ("could not write '.../generator.safetensors'", a
    PermissionError's traceback for a grid to remove or evolution.gif to make again) instead of saying that the run is
    complete; unfinished files it could not remove went unsaid. One warning line names them all and how to mend them,
    and the run is complete."""
    from conftest import read_only

    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"]["plots"] = True
    run = run_training(layers, tmp_path / "r")
    if stop == "during the last save":
        (run / "generator.safetensors").unlink()
        (run / "checkpoints/.last.pt.x1y2z3.tmp").write_bytes(b"partial")
        shutil.copy(run / "samples/epoch_0001.png", run / "samples/epoch_0002.png")  # of a later, lost checkpoint
        unmended = ("1 unfinished file to remove, 1 sample grid of later epochs to remove, generator.safetensors "
                    "(behind last.pt), evolution.gif and plots to make again")
    else:
        os.utime(run / "evolution.gif", (1, 1))  # older than the last grid: a stop before it was made again
        unmended = "evolution.gif and plots to make again"
    read_only(monkeypatch, run)
    capsys.readouterr()
    run_training(layers, run)
    err = capsys.readouterr().err
    assert (f"warning: could not mend what a stop left in run '{run}' (Permission denied): {unmended}: make the "
            "folder writable and run the same command again") in err
    assert err.count("warning:") == 1
    assert f"run '{run}' is already complete (4 iterations" in err


def test_of_two_trainings_of_a_new_run_started_at_once_the_refused_one_leaves_its_folder(tmp_path, monkeypatch):
    """Two `gankit train --run NEW` started within microseconds both found NEW missing; the first to lock it (whichever
    of them made it) trains there, and the second, refused, removed it as its own folder still empty, from under the
    first about to write there."""
    import fcntl

    from gankit import runlock

    run, mkdir, first = tmp_path / "new", Path.mkdir, []

    def locked_by_the_first_meanwhile(self, *args, **kwargs):
        mkdir(self, *args, **kwargs)
        if self == run and not first:  # between this one's mkdir and its lock
            first.append(os.open(run, os.O_RDONLY))
            fcntl.flock(first[0], fcntl.LOCK_EX)

    monkeypatch.setattr(Path, "mkdir", locked_by_the_first_meanwhile)
    monkeypatch.setattr(runlock, "RETRY_SECONDS", 0)
    try:
        with pytest.raises(RunError, match="is being trained by another gankit process"):
            with runlock.hold(run, "--run"):
                pass
        assert run.is_dir()
    finally:
        os.close(first[0])


def test_a_reader_looking_at_the_same_instant_does_not_refuse_a_training(tmp_path):
    """`in_use` (gankit compare) takes a shared lock for an instant: a training starting then tries again."""
    import fcntl
    import threading

    from gankit import runlock

    reader = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(reader, fcntl.LOCK_SH)
    threading.Timer(0.05, os.close, (reader,)).start()
    with runlock.hold(tmp_path, "--run"):
        assert runlock.in_use(tmp_path)
    assert not runlock.in_use(tmp_path)


def test_training_grids_over_the_side_limit_are_saved_reduced_with_the_same_noise(image_folder, tmp_path, monkeypatch):
    """At 1000 px the per-epoch grid of 64 images was 8018 x 8018 px. Grids over `TRAINING_GRID_SIDE` (4096; 40 here,
    where 16 images at 16 px make 74) are saved reduced by a whole factor, the epoch's and those inside it alike; the
    fixed noise keeps its `log.n_samples`, so a resumed run draws the same samples."""
    import gankit.report.grids as grids

    monkeypatch.setattr(grids, "TRAINING_GRID_SIDE", 40)
    layers = tiny_layers(image_folder, epochs=1)
    layers[0]["log"]["grids_per_epoch"] = 2
    run = run_training(layers, tmp_path / "run")
    for name in ("epoch_0001.png", "epoch_0001_batch_0002.png"):
        with Image.open(run / "samples" / name) as grid:
            assert grid.size == (37, 37) and grid.info[grids.REDUCED_KEY] == "2"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["fixed_noise"].shape[0] == 16


def test_grids_inside_an_epoch_at_evenly_spaced_batches(image_folder, tmp_path):
    """Seed 004 saves 3 grids an epoch: `log.grids_per_epoch 3` with 4 batches an epoch writes grids after batches 1
    and 3 of each epoch besides the epoch's own; the report and the evolution GIF keep to the epochs' grids."""
    from PIL import Image, ImageSequence

    from gankit.report.runs import load_run

    layers = tiny_layers(image_folder, epochs=2)
    layers[0]["log"]["grids_per_epoch"] = 3
    run = run_training(layers, tmp_path / "run")
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_0001.png", "epoch_0001_batch_0001.png", "epoch_0001_batch_0003.png",
        "epoch_0002.png", "epoch_0002_batch_0001.png", "epoch_0002_batch_0003.png"]
    with Image.open(run / "samples" / "epoch_0001_batch_0001.png") as a, \
            Image.open(run / "samples" / "epoch_0002_batch_0003.png") as b:
        assert a.size == b.size and a.tobytes() != b.tobytes()  # G trained in between
    assert [p.name for p in load_run(run).samples] == ["epoch_0001.png", "epoch_0002.png"]
    with Image.open(run / "evolution.gif") as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == 2



@pytest.mark.parametrize("minutes, said", [(1, "1 minute"), (2.5, "2.5 minutes")])
def test_the_start_line_names_every_budget_in_words(image_folder, tmp_path, capsys, minutes, said):
    run_training(tiny_layers(image_folder, epochs=1, max_steps=1, minutes=minutes), tmp_path / "run")
    assert f"up to 1 epoch / 1 iteration / {said}\n" in capsys.readouterr().err


def test_the_start_line_is_followed_by_the_recipe_also_on_resume(image_folder, tmp_path, capsys):
    layers = tiny_layers(image_folder, epochs=1, max_steps=1, label_smoothing=0.1)
    run = run_training(layers, tmp_path / "run")
    layers[0]["train"]["max_steps"] = 2
    run_training(layers, run)
    recipe = ("recipe: dcgan ngf 8 ndf 8, loss bce, strategy classic, adam lr_g 0.00015 lr_d 0.00015, nz 16 normal; "
              "label_smoothing 0.1\nrecipe (also): batch_size 8\n")
    err = capsys.readouterr().err
    assert f"up to 1 epoch / 1 iteration\n{recipe}" in err and f"up to 1 epoch / 2 iterations\n{recipe}" in err, err


def test_on_mps_the_cpu_only_paths_stay_off(image_folder, monkeypatch):
    """--device mps (simulated: gankit has never run on one): none of the CPU kernels, no FID/KID by default, no
    torch.compile, NCHW, fp32."""
    from gankit.config import build_config
    from gankit.data import load_dataset
    from gankit.device import memory_format, resolve_precision
    from gankit.train import finalize_config

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    cfg = finalize_config(build_config(*tiny_layers(image_folder, device="mps", precision="auto")), load_dataset(image_folder, 16, progress=False))
    assert (cfg.train.gemm_wgrad, cfg.train.thin_conv, cfg.eval.every, cfg.train.compile) == (False, False, 0, False)
    mps = torch.device("mps")
    assert memory_format(cfg.train.channels_last, mps, cfg.train.compile) == torch.contiguous_format
    assert resolve_precision(cfg.train.precision, mps) is None


def test_an_old_numbered_checkpoint_open_elsewhere_on_windows_does_not_stop_training(image_folder, tmp_path,
                                                                                      monkeypatch, capsys):
    """On Windows a `gankit evaluate` reading the oldest numbered checkpoint as the training pruned it (or deleted it
    to make room) stopped the training with PermissionError: it is left with a warning, and a later epoch end
    prunes it."""
    from gankit import checkpoint

    layers = tiny_layers(image_folder, epochs=3)
    layers[0]["log"].update(keep_checkpoints=1, write_share=0, plots=False)  # (matplotlib on "win32" wants winreg)
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    unlink = Path.unlink

    def open_elsewhere(self, missing_ok=False):  # epoch_0001.pt read by another process at the end of epoch 2
        if self.name == "epoch_0001.pt" and trainer.epoch == 2:
            raise PermissionError(13, "Access is denied", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(checkpoint.Path, "unlink", open_elsewhere)
    monkeypatch.setattr(checkpoint.time, "sleep", lambda s: None)
    monkeypatch.setattr(checkpoint.sys, "platform", "win32")
    kept = []
    trainer.fit(stop_when=lambda: kept.append(sorted(p.name for p in (tmp_path / "run/checkpoints").glob("epoch_*"))))
    monkeypatch.undo()
    assert kept == [["epoch_0001.pt"], ["epoch_0001.pt", "epoch_0002.pt"], ["epoch_0003.pt"]]
    assert capsys.readouterr().err.count("could not delete the old checkpoint epoch_0001.pt") == 1


def test_an_old_numbered_checkpoint_open_elsewhere_on_windows_when_making_room_skips_one_numbered(image_folder, tmp_path,
                                                                                                  monkeypatch, capsys):
    """On a tight disk with log.keep_checkpoints=1 the old numbered checkpoint is deleted first to make room: where
    Windows refuses (a `gankit evaluate` has it open) that epoch end's numbered checkpoint is skipped, not written
    short of room nor stopping the training, and the next epoch end deletes the old one and writes its own."""
    from gankit import checkpoint

    layers = tiny_layers(image_folder, epochs=4)
    layers[0]["log"].update(keep_checkpoints=1, write_share=0, plots=False)  # (matplotlib on "win32" wants winreg)
    trainer = _trainer(layers, image_folder, tmp_path / "run")
    real, unlink = shutil.disk_usage, Path.unlink

    def usage(path):
        total, used, free = real(path)
        if trainer.epoch <= 2:
            return type(real(path))(total, used, free)
        size = (tmp_path / "run/checkpoints/last.pt").stat().st_size  # short of 2 of them and the reserve by a byte
        return type(real(path))(total, used, 2 * size + min(checkpoint.DISK_RESERVE, total // 10) - 1)

    def open_elsewhere(self, missing_ok=False):  # epoch_0002.pt read by another process at the end of epoch 3
        if self.name == "epoch_0002.pt" and trainer.epoch == 3:
            raise PermissionError(13, "Access is denied", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", usage)
    monkeypatch.setattr(checkpoint.Path, "unlink", open_elsewhere)
    monkeypatch.setattr(checkpoint.time, "sleep", lambda s: None)
    monkeypatch.setattr(checkpoint.sys, "platform", "win32")
    kept = []
    trainer.fit(stop_when=lambda: kept.append(sorted(p.name for p in (tmp_path / "run/checkpoints").glob("epoch_*"))))
    monkeypatch.undo()
    assert kept[2:] == [["epoch_0002.pt"], ["epoch_0004.pt"]]
    assert capsys.readouterr().err.count("could not delete the old checkpoint epoch_0002.pt") == 1


def test_a_resume_that_changes_how_fid_is_measured_says_so_once_the_run_has_evaluated(tmp_path, capsys):
    """eval.* may change on resume, but after an evaluation a new eval.n_fake / n_real / inception_weights (or, for a
    conditional run, eval.fake_classes) makes the FID curve and best.pt mix two measures: a warning says so."""
    from gankit.config import build_config, parse_sets, save_yaml, to_dict
    from gankit.train import _say_measuring_changes, resolve_config

    def resume(*sets: str) -> list[str]:
        return _say_measuring_changes(tmp_path, resolve_config([parse_sets(list(sets))], tmp_path)[0])

    save_yaml(build_config({"model": {"arch": "acgan"}, "eval": {"every": 1}}), tmp_path / "config.yaml")
    assert resume("eval.fake_classes=uniform") == []  # no evaluation yet: nothing to compare with
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 5, "epoch": 1, "fid": 100.0}) + "\n")
    capsys.readouterr()
    assert resume("eval.fake_classes=uniform") == ["eval.fake_classes"]
    assert ("warning: eval.fake_classes: 'data' -> 'uniform' changes how FID and KID are measured (generated images of "
            "another mix of classes are another distribution) from the run's evaluations so far") in capsys.readouterr().err
    assert resume("eval.n_fake=5000", "eval.every=2") == ["eval.n_fake"]
    assert "eval.n_fake: 1000 -> 5000 changes how FID is measured" in capsys.readouterr().err
    assert resume("eval.every=2", "train.max_steps=9") == []  # how often it measures, not how
    assert resume("eval.n_fake=5000", "eval.every=0") == []  # it measures no more
    older = build_config({"model": {"arch": "acgan"}, "eval": {"every": 1, "fake_classes": "uniform"}})
    save_yaml({k: v for k, v in to_dict(older).items() if k != "eval"} | {"eval": {"every": 1}}, tmp_path / "config.yaml")
    assert resume() == []  # a run from before eval.fake_classes goes on measuring as it did (config.OLDER_DEFAULTS)
    save_yaml(build_config({"eval": {"every": 1}}), tmp_path / "config.yaml")  # unconditional: draws no classes
    assert resume("eval.fake_classes=uniform") == []
    assert capsys.readouterr().err == ""
