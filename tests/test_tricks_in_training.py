"""Each trick is wired into the training loop: the loop calls it with the configured values and its effect reaches
the losses, the optimizers or the sampler. (The tricks' own functions are tested alone in test_losses_strategies.py,
test_augment.py and test_models.py; a mutation audit found that turning some off inside train.py passed those.)"""

from __future__ import annotations

import json

import pytest
import torch

import gankit.train
from conftest import tiny_layers
from gankit.checkpoint import load_checkpoint
from gankit.config import build_config
from gankit.losses import aux_loss
from gankit.models import sample_z
from gankit.train import run_training


def _run(tmp_path, image_folder, steps=4, model=None, **train):
    layers = tiny_layers(image_folder, max_steps=steps, **train)
    layers[0]["model"].update(model or {})
    layers[0]["log"].update({"every": 1, "plots": False})
    return run_training(layers, tmp_path / "run")


def _steps(run):
    return [x for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if x["kind"] == "step"]


@pytest.mark.parametrize("label_swap", [0.0, 0.999])  # (1 is refused: D would learn the labels swapped)
def test_noisy_labels_swap_ds_targets_at_their_rate(tmp_path, image_folder, monkeypatch, label_swap):
    swaps = []
    build = gankit.train.build_loss

    def spied(cfg):
        loss = build(cfg)
        d_loss = loss.d_loss

        def recorded(real_out, fake_out, swap=False):
            swaps.append(swap)
            return d_loss(real_out, fake_out, swap=swap)

        loss.d_loss = recorded
        return loss

    monkeypatch.setattr(gankit.train, "build_loss", spied)
    _run(tmp_path, image_folder, label_swap=label_swap)
    assert len(swaps) == 4 and set(swaps) == {bool(label_swap)}


def test_instance_noise_reaches_ds_inputs_and_anneals(tmp_path, image_folder, monkeypatch):
    seen = []
    add = gankit.train.add_instance_noise

    def recorded(x, std):
        out = add(x, std)
        seen.append((std, float((out - x).detach().float().std())))
        return out

    monkeypatch.setattr(gankit.train, "add_instance_noise", recorded)
    _run(tmp_path, image_folder, steps=8, instance_noise=0.5, instance_noise_epochs=2)  # 4 steps an epoch
    stds = [s for s, _ in seen]
    # the first D phase has taken its batch: 1/8 of the 2 annealing epochs done
    assert stds[0] == pytest.approx(0.5 * (1 - 1 / 8)) and stds == sorted(stds, reverse=True) and stds[-1] < 0.2
    assert seen[0][1] == pytest.approx(stds[0], rel=0.1)  # the noise D's input carries has that std


def test_instance_noise_is_on_every_input_of_d_real_and_fake_in_d_and_g_phases(tmp_path, image_folder, monkeypatch):
    noised = []  # kept alive: an input is checked by identity
    add = gankit.train.add_instance_noise
    monkeypatch.setattr(gankit.train, "add_instance_noise", lambda x, std: noised.append(add(x, std)) or noised[-1])
    inputs = []
    build = gankit.train.build_discriminator

    def spied(cfg):
        D = build(cfg)
        D.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        return D

    monkeypatch.setattr(gankit.train, "build_discriminator", spied)
    _run(tmp_path, image_folder, steps=3, instance_noise=0.5, instance_noise_epochs=2)
    assert len(inputs) == 3 * 3  # a real and a fake batch in each D phase, the fakes in each G phase
    assert all(any(x is y for y in noised) for x in inputs)


def test_top_k_g_updates_keep_the_fraction_after_the_first_epoch(tmp_path, image_folder, monkeypatch):
    counts = []
    build = gankit.train.build_loss

    def spied(cfg):
        loss = build(cfg)
        g_loss = loss.g_loss
        loss.g_loss = lambda fake_out, real_out=None: counts.append(fake_out.shape[0]) or g_loss(fake_out, real_out)
        return loss

    monkeypatch.setattr(gankit.train, "build_loss", spied)
    _run(tmp_path, image_folder, steps=6, topk=0.5, topk_gamma=0.01)  # 4 steps an epoch, batch 8
    # the whole batch in epoch 0 (gamma ** 0), then half of it (the 4th G step, after epoch 0's last batch, either)
    assert len(counts) == 6 and counts[:3] == [8] * 3 and counts[-2:] == [4] * 2


def test_wgan_gp_ds_loss_is_the_critics_plus_lambda_times_the_penalty(tmp_path, image_folder):
    run = _run(tmp_path, image_folder, loss="wgan_gp", gp_lambda=7.0, model={"d_norm": "layer"})
    lines = _steps(run)
    assert len(lines) == 4 and all(x["gp"] > 0 for x in lines)
    for x in lines:  # the critic's loss is mean D(fake) - mean D(real) = -wasserstein
        assert x["d_loss"] == pytest.approx(-x["wasserstein"] + 7.0 * x["gp"], rel=1e-4, abs=1e-5)


def test_the_auxiliary_loss_is_cross_entropy_on_raw_logits():
    logits = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]])
    assert float(aux_loss(logits, torch.tensor([0, 2]))) < 1e-6  # confident and right: ~0 (a softmax first: ~0.55)
    assert float(aux_loss(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))) == pytest.approx(torch.log(torch.tensor(3.0)))


def test_acgan_adds_the_weighted_class_loss_to_both_ds_and_gs_losses(tmp_path, tmp_path_factory, monkeypatch):
    from conftest import make_image_folder

    folder = tmp_path_factory.mktemp("classes")
    make_image_folder(folder, classes=("a", "b"))
    # a class loss 100 larger than it is: D's loss carries two of them (real and fake), G's one, times aux_weight
    monkeypatch.setattr(gankit.train, "aux_loss", lambda logits, y: aux_loss(logits, y) + 100.0)
    layers = tiny_layers(folder, max_steps=3, aux_weight=0.5)
    layers[0]["data"]["labels"] = "folders"
    layers[0]["log"].update({"every": 1, "plots": False})
    lines = _steps(run_training(layers, tmp_path / "run"))
    assert len(lines) == 3
    assert all(100 < x["d_loss"] < 110 and 50 < x["g_loss"] < 60 for x in lines), lines


def test_the_ema_of_g_is_updated_after_every_g_step(tmp_path, image_folder, monkeypatch):
    updates = []
    make = gankit.train.make_ema

    def spied(model, decay):
        ema = make(model, decay)
        update = ema.update_parameters
        ema.update_parameters = lambda m: (updates.append(decay), update(m))
        return ema

    monkeypatch.setattr(gankit.train, "make_ema", spied)
    run = _run(tmp_path, image_folder, steps=5, ema=0.9)
    assert updates == [0.9] * 5
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    g, ema = state["G"], state["G_ema"]
    moved = [k for k in g if g[k].is_floating_point() and not torch.equal(g[k], ema.get(k, ema.get(f"module.{k}")))]
    assert moved  # the average lags the trained weights


def test_augmentation_reaches_ds_inputs_with_the_adaptive_probability(tmp_path, image_folder, monkeypatch):
    ps = []
    augment = gankit.train.DiffAugment

    class Recorded(augment):
        def __call__(self, x):
            ps.append(self.p)
            return super().__call__(x)

    monkeypatch.setattr(gankit.train, "DiffAugment", Recorded)
    run = _run(tmp_path, image_folder, steps=8, augment="translation", augment_p=0.2, ada_target=0.01)
    assert len(ps) >= 2 * 8  # real and fake in every D phase, fakes in the G phases
    # D tells the tiny images apart at once (sign D(real) ~ 1 > 0.01): ADA raises p, and D's inputs get the new p
    assert ps[0] == pytest.approx(0.2) and ps[-1] > 0.2
    logged = [x["augment_p"] for x in _steps(run) if "augment_p" in x]
    assert logged and logged[-1] == pytest.approx(ps[-1], abs=0.02)


def test_the_two_learning_rates_reach_their_optimizers(tmp_path, image_folder):
    run = _run(tmp_path, image_folder, steps=2, lr_g=1e-4, lr_d=4e-4)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {g["lr"] for g in state["opt_g"]["param_groups"]} == {1e-4}
    assert {g["lr"] for g in state["opt_d"]["param_groups"]} == {4e-4}


def test_uniform_z_lies_in_the_unit_cube_and_normal_z_is_gaussian():
    gen = torch.Generator().manual_seed(0)
    uniform = sample_z(4000, build_config({"model": {"z_dist": "uniform", "nz": 16}}), "cpu", gen)
    normal = sample_z(4000, build_config({"model": {"nz": 16}}), "cpu", gen)
    assert uniform.shape == normal.shape == (4000, 16)
    assert uniform.min() >= -1 and uniform.max() <= 1 and abs(float(uniform.mean())) < 0.02
    assert float(uniform.std()) == pytest.approx(1 / 3 ** 0.5, rel=0.03)  # uniform on [-1, 1]
    assert float(normal.std()) == pytest.approx(1.0, rel=0.03) and float(normal.abs().max()) > 3
