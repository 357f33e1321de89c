"""The one training loop under every loss, strategy and trick: tiny runs, asserting what each must do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_layers
from gankit.checkpoint import load_checkpoint
from gankit.errors import RunError
from gankit.losses import BCELoss, RelativisticAverage
from gankit.train import run_training


def _layers(folder, train=None, model=None, **log):
    layers = tiny_layers(folder, **(train or {}))
    layers[0]["model"].update(model or {})
    layers[0]["log"].update(log)
    return layers


def _lines(run, kind):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if json.loads(x)["kind"] == kind]


def _undocumented_keys(run) -> set[str]:
    """The keys of the run's metrics.jsonl lines that README's list of them does not name (as `key`)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    keys = {k for x in (run / "metrics.jsonl").read_text().splitlines() for k in json.loads(x)}
    return {k for k in keys if f"`{k}`" not in readme}


def _tensorboard_steps(run, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return [e.step for e in (events.Images(tag) if tag == "samples" else events.Scalars(tag))]


def test_a_resume_keeps_tensorboard_events_up_to_its_checkpoint(image_folder, tmp_path):
    """A resume from iteration 4 hides what came after it in TensorBoard, and keeps what was logged at it (epoch
    1's end: its epoch line, step line and grid), as metrics.jsonl does."""
    run = run_training(_layers(image_folder, {"max_steps": 4}), tmp_path / "r")
    run_training(_layers(image_folder, {"max_steps": 8}), run)
    assert _tensorboard_steps(run, "step/d_loss") == [x["step"] for x in _lines(run, "step")] == [2, 4, 6, 8]
    assert _tensorboard_steps(run, "epoch/d_loss") == [4, 8] and _tensorboard_steps(run, "samples") == [4, 8]


def test_a_resume_in_the_second_of_the_last_event_file_is_read_after_it(image_folder, tmp_path):
    """TensorBoard reads event files in name order (second, host, pid, a counter not zero-padded: 'pid.10' before
    'pid.9'); a resume whose file would sort before the last one, as the CI once had in one pytest process, waits
    for a name that sorts after it."""
    import time

    run = run_training(_layers(image_folder, {"max_steps": 4}), tmp_path / "r")
    (old,) = (run / "tensorboard").iterdir()
    old.rename(old.with_name(f"events.out.tfevents.{int(time.time()) + 2:010d}.~~.1.9"))  # sorts after this second's
    run_training(_layers(image_folder, {"max_steps": 8}), run)
    assert len(list((run / "tensorboard").iterdir())) == 2  # the file named before the wait is gone
    assert _tensorboard_steps(run, "step/d_loss") == [2, 4, 6, 8]
    assert _tensorboard_steps(run, "samples") == [4, 8]


def test_g_steps_on_a_larger_batch_of_fresh_noise(image_folder, tmp_path, monkeypatch):
    """Seed 004: "Generate a number of batch size x 2 of noise vectors, that will be used to train the generator"."""
    from gankit.train import Trainer

    drawn, z = [], Trainer._z
    monkeypatch.setattr(Trainer, "_z", lambda self, n: drawn.append(n) or z(self, n))
    run_training(_layers(image_folder, {"g_batch_factor": 2, "label_noise": 0.2, "batch_size": 4, "max_steps": 3}),
                 tmp_path / "r")
    assert drawn == [4, 8] * 3  # each iteration: D on a batch of fakes, then G on twice as many fresh ones
    drawn.clear()
    run_training(_layers(image_folder, {"batch_size": 4, "max_steps": 3}), tmp_path / "plain")
    assert drawn == [4] * 3  # by default G reuses the D phase's fakes


@pytest.mark.parametrize("loss", ["bce", "wgan", "acgan"])
def test_split_d_phase_updates_d_twice_on_each_batch(image_folder, tmp_path, loss):
    """Seed 004: D trained "with the real and fake images separately": two optimizer steps per D phase."""
    from conftest import make_image_folder

    train = {"d_split": True, "max_steps": 3, "label_noise": 0.2 if loss != "wgan" else 0.0}
    if loss == "wgan":
        train.update(loss="wgan", optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5)
    layers = _layers(image_folder, train)
    if loss == "acgan":  # the class loss of each batch goes with its own update
        make_image_folder(tmp_path / "pets", classes=("cat", "dog"))
        layers[0]["data"].update(path=str(tmp_path / "pets"), labels="folders")
    run = run_training(layers, tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["d_updates"] == 3 and ckpt["config"]["model"]["arch"] == ("acgan" if loss == "acgan" else "dcgan")
    steps = {float(v["step"]) for v in ckpt["opt_d"]["state"].values()}
    assert steps == {6.0} and {float(v["step"]) for v in ckpt["opt_g"]["state"].values()} == {3.0}
    assert not _undocumented_keys(run)  # (those of ACGAN and WGAN too)
    if loss == "wgan":
        weights = [v for k, v in ckpt["D"].items() if v.is_floating_point() and "running" not in k]
        assert max(w.abs().max().item() for w in weights) <= 0.01 + 1e-7  # clipped after each of the two updates


def test_alternating_strategy_trains_and_counts_its_updates(image_folder, tmp_path):
    """Seed 001's loop with 4 batches an epoch (32 images, batch 8): 4 G steps, then 3 D steps, and again."""
    run = run_training(_layers(image_folder, {"strategy": "alternating", "batch_size": 8, "max_steps": 10},
                               {"d_downsample": "maxpool"}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["g_updates"], ckpt["d_updates"], ckpt["cursor"]) == (4 + 3, 3, 3)
    # a run whose budget ends in G steps after an epoch's end (the 4th cycle's D steps end epoch 3 at iteration 28)
    # saves them too: no epoch end does
    run = run_training(_layers(image_folder, {"strategy": "alternating", "batch_size": 8, "max_steps": 30, "epochs": 10}),
                       tmp_path / "r30")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["iteration"], ckpt["g_updates"], ckpt["d_updates"], ckpt["cursor"]) == (30, 18, 12, 12)


def test_alternating_strategy_ends_on_a_dataset_of_one_batch(image_folder, tmp_path):
    """32 images, batch 32: one batch an epoch. The loop trained G forever (3,364 iterations of epoch 0 in a minute)."""
    run = run_training(_layers(image_folder, {"strategy": "alternating", "batch_size": 32, "epochs": 2}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["iteration"], ckpt["g_updates"], ckpt["d_updates"], ckpt["cursor"]) == (4, 2, 2, 2)


def test_wgan_clip_keeps_every_critic_weight_in_range(image_folder, tmp_path):
    run = run_training(_layers(image_folder, {"loss": "wgan", "strategy": "critic", "n_critic": 3, "optimizer": "rmsprop",
                                              "lr_g": 5e-5, "lr_d": 5e-5, "max_steps": 3}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    weights = [v for k, v in ckpt["D"].items() if v.is_floating_point() and "running" not in k]
    assert max(w.abs().max().item() for w in weights) <= 0.01 + 1e-7
    assert ckpt["d_updates"] == 9 and ckpt["g_updates"] == 3  # n_critic = 3 (seed 000)
    step = _lines(run, "step")[-1]
    assert "wasserstein" in step and step["d_updates"] == 9


@pytest.mark.parametrize("alpha", [0.99, 0.9])
def test_rmsprop_averages_squared_gradients_with_the_configs_alpha(image_folder, tmp_path, alpha):
    """Keras' RMSprop (seed 004's WGAN) keeps its squared-gradient average with rho 0.9, PyTorch's with alpha 0.99:
    gankit always used PyTorch's, so a Keras write-up's recipe could not carry its optimizer. Both nets get the
    config's (the default stays PyTorch's)."""
    train = {"loss": "wgan", "strategy": "critic", "n_critic": 1, "optimizer": "rmsprop", "max_steps": 2}
    if alpha != 0.99:
        train["rmsprop_alpha"] = alpha
    ckpt = load_checkpoint(run_training(_layers(image_folder, train), tmp_path / "r") / "checkpoints/last.pt")
    assert [ckpt[opt]["param_groups"][0]["alpha"] for opt in ("opt_g", "opt_d")] == [alpha, alpha]


@pytest.mark.parametrize("optimizer, eps", [("adam", None), ("adam", 1e-7), ("rmsprop", 1e-7)])
def test_the_optimizers_epsilon_is_the_configs(image_folder, tmp_path, optimizer, eps):
    """tf.keras' Adam adds 1e-7 to the root of its squared-gradient average (seed 001's recipe), PyTorch's 1e-8: gankit
    always used PyTorch's. Both nets' optimizers, Adam or RMSprop, get the config's (the default stays 1e-8)."""
    train = {"optimizer": optimizer, "max_steps": 2}
    if optimizer == "rmsprop":
        train.update(loss="wgan", strategy="critic", n_critic=1)
    if eps is not None:
        train["eps"] = eps
    ckpt = load_checkpoint(run_training(_layers(image_folder, train), tmp_path / "r") / "checkpoints/last.pt")
    assert [ckpt[opt]["param_groups"][0]["eps"] for opt in ("opt_g", "opt_d")] == [eps or 1e-8] * 2


def test_the_critic_boost_runs_its_bursts_at_the_g_steps_it_names(image_folder, tmp_path):
    """Seed 004's schedule, scaled down: 3 critic steps for the first G step and every 3rd, 1 otherwise: G steps 0 and 3
    of 4 take 3 each."""
    run = run_training(_layers(image_folder, {"loss": "wgan", "strategy": "critic", "n_critic": 1, "critic_boost": 3,
                                              "critic_boost_first": 1, "critic_boost_every": 3, "max_steps": 4,
                                              "epochs": 10}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["g_updates"], ckpt["d_updates"]) == (4, 3 + 1 + 1 + 3)


def test_monitored_strategy_skips_d_updates_and_counts_them(image_folder, tmp_path, monkeypatch):
    # a D loss far below 0.8 x G loss is never updated: only the first iteration (nothing to compare) updates D
    monkeypatch.setattr(BCELoss, "g_loss", lambda self, out, real_out=None: out.float().mean() * 0 + 100.0)
    run = run_training(_layers(image_folder, {"strategy": "monitored", "max_steps": 6}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["d_updates"] == 1 and ckpt["d_skipped"] == 5 and ckpt["g_updates"] == 6
    assert _lines(run, "step")[-1]["d_skipped"] == 5


def test_boost_strategy_trains_and_resumes_identically(image_folder, tmp_path):
    train = {"strategy": "boost", "boost_window": 2, "epochs": 5}
    straight = run_training(_layers(image_folder, {**train, "max_steps": 8}), tmp_path / "a")
    run_training(_layers(image_folder, {**train, "max_steps": 4}), tmp_path / "b")
    resumed = run_training(_layers(image_folder, {**train, "max_steps": 8}), tmp_path / "b")
    a, b = load_checkpoint(straight / "checkpoints/last.pt"), load_checkpoint(resumed / "checkpoints/last.pt")
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    assert a["strategy"]["left"] == b["strategy"]["left"]


@pytest.mark.parametrize("loss", ["hinge", "bce"])
def test_relativistic_g_loss_sees_the_real_scores_with_and_without_a_d_phase_before(image_folder, tmp_path, monkeypatch,
                                                                                     loss):
    seen = []
    g_loss = RelativisticAverage.g_loss

    def spy(self, fake_out, real_out=None):
        seen.append(None if real_out is None else (real_out.shape, real_out.requires_grad))
        return g_loss(self, fake_out, real_out)

    monkeypatch.setattr(RelativisticAverage, "g_loss", spy)
    # boost: iterations of D+G, G alone (no D phase to take the real scores from) and D alone
    train = {"loss": loss, "relativistic": True, "strategy": "boost", "boost_window": 2, "max_steps": 12, "epochs": 5}
    run = run_training(_layers(image_folder, train), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert len(seen) == ckpt["g_updates"] > 0 and ckpt["d_updates"] > 0
    batch = tiny_layers(image_folder)[0]["train"]["batch_size"]
    assert set(seen) == {(torch.Size([batch]), False)}
    assert all(torch.isfinite(torch.tensor(line["g_loss"])) for line in _lines(run, "step"))


def test_tricks_run_and_are_logged(image_folder, tmp_path):
    train = {"label_smoothing": 0.1, "label_swap": 0.2, "instance_noise": 0.1, "instance_noise_epochs": 2,
             "ema": 0.9, "augment": "color,translation,cutout", "ada_target": 0.6, "epochs": 2}
    run = run_training(_layers(image_folder, train), tmp_path / "r")
    step = _lines(run, "step")[-1]
    assert 0 <= step["augment_p"] <= 1 and 0 <= step["instance_noise"] < 0.1
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["G_ema"] is not None and ckpt["ada"] is not None
    # the shared generator is the EMA one, not the raw weights
    from safetensors.torch import load_file

    shared = load_file(run / "generator.safetensors")
    ema = {k[len("module."):]: v for k, v in ckpt["G_ema"].items() if k.startswith("module.")}
    stats = [k for k in shared if "running_" in k]
    assert stats and all(torch.equal(shared[k], ema[k]) for k in shared if k not in stats and "num_batches" not in k)
    assert any(not torch.equal(shared[k], ckpt["G"][k]) for k in shared if shared[k].is_floating_point())
    # ... with BatchNorm statistics measured on the EMA generator itself, not its averaged running ones
    assert all(not torch.equal(shared[k], ema[k]) for k in stats)
    averaged = run_training(_layers(image_folder, {**train, "ema_standing_stats": False}), tmp_path / "avg")
    shared = load_file(averaged / "generator.safetensors")
    ema = load_checkpoint(averaged / "checkpoints/last.pt")["G_ema"]
    assert all(torch.equal(shared[k], ema["module." + k]) for k in shared)


def _nan_once(*at: int):
    """A BCE d_loss that returns NaN once at each of its `at`-th calls."""
    real_loss, calls = BCELoss.d_loss, [0]

    def d_loss(self, real, fake, swap=False):
        calls[0] += 1
        out = real_loss(self, real, fake, swap)
        return out * float("nan") if calls[0] in at else out
    return d_loss


def test_nan_rolls_back_to_last_checkpoint_with_lower_lr(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(7))
    run = run_training(_layers(image_folder, {"epochs": 3}), tmp_path / "r")
    assert "rolled back" in capsys.readouterr().err
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["iteration"] == 12 and ckpt["rollbacks"] == 1
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1.5e-4 * 0.5)
    events = _lines(run, "event")
    assert len(events) == 1 and events[0]["step"] == 4  # back to the end of epoch 1
    assert events[0]["rollback"] == 1 and events[0]["lr_g"] == pytest.approx(1.5e-4 * 0.5)
    # every kind of line the log holds is one README's metrics.jsonl documents (the rollback's was not)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    kinds = {json.loads(x)["kind"] for x in (run / "metrics.jsonl").read_text().splitlines()}
    assert kinds == {"step", "epoch", "event"} and all(f"`kind: {k}`" in readme for k in kinds)
    assert not _undocumented_keys(run)  # lr_g, lr_d, rollback...
    steps = [x["step"] for x in _lines(run, "step")]
    assert steps == sorted(set(steps))  # the rolled-back lines are gone, none duplicated
    assert _tensorboard_steps(run, "step/d_loss") == steps  # in TensorBoard too
    assert all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())


def test_a_rollback_at_the_runs_last_step_line_sets_the_progress_back_too(image_folder, tmp_path, monkeypatch,
                                                                          capsys):
    """--max-steps 7 of 4-iteration epochs: NaN at iteration 7, seen by the line of the unfinished epoch that ends the
    run, goes back to iteration 4. The progress shown was not set back with it (as it is by a rollback inside the
    loop): it went on from iteration 7's count, 6/4 batches of epoch 2 at the end; and off a terminal the next
    line's img/s counted from the last line's images, which the rollback undid, and the lines until the next step
    line showed the losses that it undid."""
    import gankit.train

    shown = []

    class Shown(gankit.train._progress):
        def advance(self, n: int) -> None:
            super().advance(n)
            shown.append((self.epoch, self.in_epoch))

    monkeypatch.setattr(gankit.train, "_progress", Shown)
    monkeypatch.setattr(gankit.console, "LINE_EVERY", 0)  # a progress line at every batch (off a terminal)
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(7))
    run = run_training(_layers(image_folder, {"epochs": 3, "max_steps": 7}, progress=True), tmp_path / "r")
    assert [e["step"] for e in _lines(run, "event")] == [4] and load_checkpoint(run / "checkpoints/last.pt")["iteration"] == 7
    assert shown == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2), (1, 3), (1, 1), (1, 2), (1, 3)]
    after = capsys.readouterr().err.split("rolled back to iteration 4")[1]
    assert re.findall(r"epoch (\d+/\d+), (\d+/4) batches", after) == [("2/3", "1/4"), ("2/3", "2/4"), ("2/3", "3/4")]
    # the line at iteration 5 showed the losses of iteration 6's line (log.every 2), which the rollback undid
    assert [" d_loss " in line for line in after.splitlines() if " batches: " in line] == [False, True, True], after
    # their img/s counts the images from iteration 4 on, not from iteration 7's line (-138 img/s)
    assert all(float(speed) > 0 for speed in re.findall(r"(-?[\d.]+) img/s", after)), after


def test_a_rollback_removes_the_grids_of_the_steps_it_undid(image_folder, tmp_path, monkeypatch, capsys):
    """Epochs 1 and 2 (of 3, 4 iterations each) write their grids but pacing skips their last.pt, so NaN at
    iteration 10 goes back to iteration 0; the redone epochs skip their grids. epoch_0001/0002.png were left showing
    the weights that the rollback undid (as a resume from an older checkpoint removes them)."""
    import gankit.train

    class Paced(gankit.train.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            grids = iter([True, True])  # the first two epoch ends' grids, then none until the run's last
            self._paced["samples"].due = lambda: next(grids, False)
            self._paced["checkpoint"].due = lambda: False

    monkeypatch.setattr(gankit.train, "Trainer", Paced)
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(10))
    run = run_training(_layers(image_folder, {"epochs": 3}, checkpoint_every=0), tmp_path / "r")
    assert [e["step"] for e in _lines(run, "event")] == [0]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0003.png"]
    assert "removed 2 sample grids of epochs after the checkpoint rolled back to (iteration 0)" in capsys.readouterr().err


def test_a_stop_after_a_rollback_at_an_undone_epochs_end_writes_its_grid(image_folder, tmp_path, monkeypatch):
    """As above, NaN at iteration 10 goes back to iteration 0, removing epoch_0002.png; a `stop_when` stop (gankit
    sanity's) at the redone epoch 2's end, whose grid pacing skips, took it for written (the grid of the last
    epoch end written was still epoch 2's, of before the rollback): the run ended without one."""
    import gankit.train

    class Paced(gankit.train.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            grids = iter([True, True])
            self._paced["samples"].due = lambda: next(grids, False)
            self._paced["checkpoint"].due = lambda: False

        def fit(self, stop_when=None):
            return super().fit(stop_when=lambda: self.rollbacks == 1 and self.epoch == 2)

    monkeypatch.setattr(gankit.train, "Trainer", Paced)
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(10))
    run = run_training(_layers(image_folder, {"epochs": 3}, checkpoint_every=0), tmp_path / "r")
    assert [e["step"] for e in _lines(run, "event")] == [0]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0002.png"]


def test_two_rollbacks_to_the_same_checkpoint_lower_the_rates_twice(image_folder, tmp_path, monkeypatch):
    # NaN at iteration 7, back to iteration 4 (end of epoch 1); NaN again at iteration 7 (the 10th D loss), before
    # epoch 2 ends: back to the same checkpoint, now with the rates x0.5 twice
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(7, 10))
    run = run_training(_layers(image_folder, {"epochs": 3, "lr_d": 3e-4}), tmp_path / "r")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert [e["step"] for e in _lines(run, "event")] == [4, 4] and ckpt["rollbacks"] == 2
    assert ckpt["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1.5e-4 * 0.25)
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx(3e-4 * 0.25)


def test_nan_policy_stop_is_one_clear_error(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(BCELoss, "d_loss", _nan_once(3))
    with pytest.raises(RunError, match="non-finite d_loss.*nan_policy is stop") as e:
        run_training(_layers(image_folder, {"epochs": 3, "nan_policy": "stop"}), tmp_path / "r")
    assert "\n" not in str(e.value)


def test_a_critic_schedule_longer_than_an_epoch_says_how_epochs_end(image_folder, tmp_path, capsys):
    """32 images, batch 16: 2 batches an epoch, and a G step takes 5 critic batches, so `--epochs 1` ended at
    "epoch 3/1" with no word why. The start says so; the run ends after its first G step."""
    run = run_training(_layers(image_folder, {"loss": "wgan", "strategy": "critic", "n_critic": 5, "batch_size": 16,
                                              "epochs": 1, "optimizer": "rmsprop"}), tmp_path / "r")
    assert "one G step takes up to 5 critic batches and an epoch has 2 batches" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoints/last.pt")["g_updates"] == 1
    run_training(_layers(image_folder, {"loss": "wgan", "strategy": "critic", "n_critic": 2, "batch_size": 8,
                                        "epochs": 1, "optimizer": "rmsprop"}), tmp_path / "r2")
    assert "critic batches" not in capsys.readouterr().err  # 4 batches an epoch: nothing to say


def test_g_steps_longer_than_an_epoch_end_the_run_on_its_last_epochs_grid(image_folder, tmp_path, monkeypatch, capsys):
    """n_critic 5 on 4 batches an epoch: the G step that ends epoch 3 reaches into epoch 4. The run wrote an
    'unfinished' epoch_0004.png beside epoch 3's (3 epochs in the log, 4 in the compare page's caption), and each
    epoch end's FID was labelled with the next epoch, 'unfinished'."""
    import gankit.evaluate

    def evaluator(*args, **kwargs):  # FID/KID as the real one returns them, without Inception's minutes
        return lambda generate, n: {"fid": 50.0, "kid_mean": 0.05, "kid_std": 1e-9, "n_fake": n, "n_real": n}

    monkeypatch.setattr(gankit.evaluate, "Evaluator", evaluator)
    layers = _layers(image_folder, {"loss": "wgan", "strategy": "critic", "n_critic": 5, "epochs": 3,
                                    "optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5}, write_share=0)
    layers.append({"eval": {"every": 1, "n_fake": 8, "share": 1.0}})
    run = run_training(layers, tmp_path / "r")
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"epoch_000{i}.png" for i in (1, 2, 3)]
    assert [x["epoch"] for x in _lines(run, "epoch")] == [1, 2, 3]
    assert [x["epoch"] for x in _lines(run, "eval")] == [1, 2, 3]
    said = [line for line in capsys.readouterr().err.splitlines() if "FID 50.00" in line]
    # 8 generated against 8 real: every KID subset is all of them, so no spread is shown
    assert [line.split(": FID")[0] for line in said] == ["epoch 1", "epoch 2", "epoch 3"]
    assert all(line.endswith("KID 0.0500") or "KID 0.0500 (best so far)" in line for line in said), said
    from gankit.report.runs import load_run

    assert {x["n_real"] for x in _lines(run, "eval")} == {8}  # logged, so the compare page shows no spread either
    assert load_run(run).best.kid_std is None
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iteration"] == 3 and state["cursor"] == 15  # the batches of the run's last G step are all in it
