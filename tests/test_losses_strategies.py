"""Losses, tricks and strategies: the seeds' definitions, checked number by number."""

from __future__ import annotations

import math

import pytest
import torch

from gankit.config import ConfigError, build_config
from gankit.losses import BCELoss, HingeLoss, WassersteinLoss, aux_stats, build_loss, clip_weights, gradient_penalty
from gankit.strategies import Boost, Critic, Monitored, Phase, build_strategy, lr_factor
from gankit.tricks import (NoisyLabels, add_instance_noise, ema_decay, instance_noise_std, make_ema, standing_stats, top_k,
                           topk_count)


def _bce(x, t):
    return -(t * math.log(torch.sigmoid(torch.tensor(x)).item()) + (1 - t) * math.log(1 - torch.sigmoid(torch.tensor(x)).item()))


def test_label_smoothing_and_swapping_change_the_bce_targets():
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    plain = BCELoss().d_loss(real, fake)
    assert plain.item() == pytest.approx(_bce(2.0, 1.0) + _bce(-1.0, 0.0), rel=1e-5)
    smooth = build_loss(build_config({"train": {"label_smoothing": 0.1}}))
    assert smooth.targets() == (0.9, 0.0)  # one-sided: fakes keep target 0
    assert smooth.d_loss(real, fake).item() == pytest.approx(_bce(2.0, 0.9) + _bce(-1.0, 0.0), rel=1e-5)
    assert smooth.targets(swap=True) == (0.0, 0.9)  # noisy labels: real labelled fake, fake labelled real
    assert smooth.d_loss(real, fake, swap=True).item() == pytest.approx(_bce(2.0, 0.0) + _bce(-1.0, 0.9), rel=1e-5)
    assert BCELoss().g_loss(fake).item() == pytest.approx(_bce(-1.0, 1.0), rel=1e-5)


def test_label_noise_draws_each_images_target_near_its_label_for_d_and_g():
    """Seed 004: real targets 1 - 0.2 U(0, 1), fake 0.2 U(0, 1), and G's 1 - 0.2 U(0, 1), drawn per image."""
    loss = build_loss(build_config({"train": {"label_noise": 0.2}}))
    out = torch.zeros(4000)
    torch.manual_seed(0)
    real, fake, g = loss._target(out, loss.targets()[0]), loss._target(out, loss.targets()[1]), loss._target(out, 1.0)
    for t, lo, hi in ((real, 0.8, 1.0), (fake, 0.0, 0.2), (g, 0.8, 1.0)):
        assert lo <= t.min() and t.max() <= hi and t.std() > 0.05  # spread over the whole band, not a constant
        assert t.mean().item() == pytest.approx((lo + hi) / 2, abs=0.005)
    torch.manual_seed(0)  # the loss is BCE against exactly those targets
    logits = torch.randn(3)
    torch.manual_seed(1)
    expected = sum(_bce(x, 1 - 0.2 * u) for x, u in zip(logits.tolist(), torch.rand(3).tolist())) / 3
    torch.manual_seed(1)
    assert loss.g_loss(logits).item() == pytest.approx(expected, rel=1e-5)
    swapped = loss._target(out, loss.targets(swap=True)[0])  # noisy labels still swap: the real images near 0
    assert swapped.max() <= 0.2
    for bad, said in (({"loss": "wgan", "label_noise": 0.2}, "needs train.loss bce"),
                      ({"label_noise": 0.5, "label_smoothing": 0.5}, "must stay under 1")):
        with pytest.raises(ConfigError, match=said):
            build_config({"train": bad})


def test_alternating_trains_g_for_an_epoch_then_d_for_all_but_one_of_its_steps():
    """Seed 001: per epoch, num_steps_per_epoch G steps, then num_steps_per_epoch - 1 D steps."""
    s = build_strategy(build_config({"train": {"strategy": "alternating"}}), steps_per_epoch=3)
    assert [s.plan(i)[0].net for i in range(12)] == list("GGGDDGGGDDGG")
    # an epoch of one batch: G then D (with no D step it never used a real batch, so the run never ended)
    s = build_strategy(build_config({"train": {"strategy": "alternating"}}), steps_per_epoch=1)
    assert [s.plan(i)[0].net for i in range(6)] == list("GDGDGD")


@pytest.mark.parametrize("train", [{"loss": "bce", "label_smoothing": 0.1}, {"loss": "wgan"}, {"loss": "hinge"}],
                         ids=["bce", "wgan", "hinge"])
def test_each_side_of_the_d_loss_is_the_part_of_the_whole_it_scores(train):
    """train.d_split updates D on each side alone: the two sides must add up to the D loss, swapped labels too."""
    loss = build_loss(build_config({"train": train}))
    real, fake = torch.tensor([1.5, -0.5, 0.2]), torch.tensor([-2.0, 0.3, 0.8])
    for swap in (False, True):
        whole = loss.d_loss(real, fake, swap=swap)
        assert (loss.d_side(real, True, swap) + loss.d_side(fake, False, swap)).item() == pytest.approx(whole.item())
    assert loss.d_side(real, True).item() != pytest.approx(loss.d_side(real, True, swap=True).item())


def test_two_sided_label_smoothing_is_seed_000s_bcesmooth():
    """basic_functions.py: target * (1 - 0.1) + 0.1 / 2 for every BCE target, D's real and fake and G's."""
    loss = build_loss(build_config({"train": {"label_smoothing": 0.1, "label_smoothing_two_sided": True}}))
    assert loss.targets() == pytest.approx((0.95, 0.05)) and loss.targets(swap=True) == pytest.approx((0.05, 0.95))
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    assert loss.d_loss(real, fake).item() == pytest.approx(_bce(2.0, 0.95) + _bce(-1.0, 0.05), rel=1e-5)
    assert loss.g_loss(fake).item() == pytest.approx(_bce(-1.0, 0.95), rel=1e-5)


def test_split_d_updates_are_refused_where_the_d_loss_needs_both_batches():
    for train, said in (({"loss": "wgan_gp"}, "gradient penalty"), ({"relativistic": True}, "relativistic"),
                        ({"strategy": "monitored"}, "monitored"), ({"fuse_d": True}, "fused")):
        model = {"d_norm": "none"} if train.get("loss") == "wgan_gp" or "fuse_d" in train else {}
        with pytest.raises(ConfigError, match=f"train.d_split .*{said}"):
            build_config({"train": {"d_split": True, **train}, "model": model})


def test_wasserstein_and_hinge_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    w = WassersteinLoss()
    assert w.d_loss(real, fake).item() == pytest.approx(-1.0 - 2.0)  # mean C(fake) - mean C(real)
    assert w.g_loss(fake).item() == pytest.approx(1.0)
    h = HingeLoss()
    assert h.d_loss(real, fake).item() == pytest.approx((0 + 0) / 2 + (0 + 1) / 2)
    assert h.g_loss(fake).item() == pytest.approx(1.0)


def test_relativistic_average_losses_compare_each_side_with_the_others_mean():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0], requires_grad=True)  # means 2 and -1
    ra_hinge = build_loss(build_config({"train": {"loss": "hinge", "relativistic": True}}))
    assert ra_hinge.d_loss(real, fake).item() == pytest.approx(0.0)  # r - mean f = [2, 4], f - mean r = [-4, -2]
    g = ra_hinge.g_loss(fake, real.requires_grad_(True))  # mean relu(1 - [-4, -2]) + mean relu(1 + [2, 4])
    assert g.item() == pytest.approx(4.0 + 4.0)
    g.backward()
    assert real.grad is None and fake.grad is not None  # G learns through its fakes only
    ra_bce = build_loss(build_config({"train": {"loss": "bce", "relativistic": True}}))
    r, f = torch.tensor([0.5]), torch.tensor([-0.5])
    assert ra_bce.d_loss(r, f).item() == pytest.approx(_bce(1.0, 1.0) + _bce(-1.0, 0.0), rel=1e-5)
    assert ra_bce.g_loss(f, r).item() == pytest.approx(_bce(-1.0, 1.0) + _bce(1.0, 0.0), rel=1e-5)
    with pytest.raises(ValueError, match="real batch"):
        ra_bce.g_loss(f)
    with pytest.raises(ConfigError, match="relativistic"):
        build_config({"train": {"loss": "wgan", "relativistic": True}})


class _Linear(torch.nn.Module):
    def __init__(self, norm: float):
        super().__init__()
        w = torch.randn(3 * 4 * 4, generator=torch.Generator().manual_seed(0))
        self.w = torch.nn.Parameter(w / w.norm() * norm)

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_gradient_penalty_is_zero_for_unit_gradient_and_grows_for_steeper_critics():
    real, fake = torch.randn(16, 3, 4, 4), torch.randn(16, 3, 4, 4)
    assert gradient_penalty(_Linear(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-8)
    gp2, gp3 = (gradient_penalty(_Linear(n), real, fake).item() for n in (2.0, 3.0))
    assert gp2 == pytest.approx(1.0, rel=1e-4) and gp3 == pytest.approx(4.0, rel=1e-4)
    # two-sided: a critic flatter than 1-Lipschitz is penalised too, (0.5 - 1)^2
    assert gradient_penalty(_Linear(0.5), real, fake).item() == pytest.approx(0.25, rel=1e-4)
    critic = _Linear(3.0)
    gradient_penalty(critic, real, fake).backward()  # the penalty trains the critic (create_graph)
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_clip_weights_bounds_every_parameter():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(4, 2))
    clip_weights(m, 0.01)
    assert all(p.abs().max() <= 0.01 for p in m.parameters())


def test_aux_stats_accuracy_and_entropy():
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    acc, ent = aux_stats(logits, torch.tensor([0, 1]))
    assert acc.item() == pytest.approx(0.5)  # argmax of a tie is class 0
    assert ent.item() == pytest.approx((0.0 + math.log(2)) / 2, abs=1e-3)


def test_instance_noise_anneals_to_zero():
    assert instance_noise_std(0.1, 0, 10) == pytest.approx(0.1)
    assert instance_noise_std(0.1, 5, 10) == pytest.approx(0.05)
    assert instance_noise_std(0.1, 12, 10) == 0.0
    x = torch.zeros(1000)
    assert add_instance_noise(x, 0.0) is x
    assert add_instance_noise(x, 0.5).std().item() == pytest.approx(0.5, rel=0.1)


def test_noisy_labels_swap_with_the_given_probability_and_resume():
    n = NoisyLabels(0.2, seed=1)
    draws = [n.swap() for _ in range(5000)]
    assert sum(draws) / len(draws) == pytest.approx(0.2, abs=0.02)
    state = n.state_dict()
    a = [n.swap() for _ in range(50)]
    n.load_state_dict(state)
    assert [n.swap() for _ in range(50)] == a
    assert not any(NoisyLabels(0.0).swap() for _ in range(100))


def test_ema_tracks_the_model():
    m = torch.nn.Linear(2, 1)
    ema = make_ema(m, 0.5)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update_parameters(m)  # first update copies
    with torch.no_grad():
        m.weight.fill_(3.0)
    ema.update_parameters(m)
    d = ema_decay(0.5, 1)  # ramp-up: min(0.5, 2 / 11)
    assert d == pytest.approx(2 / 11)
    assert torch.allclose(ema.module.weight, torch.full_like(m.weight, 1.0 * d + 3.0 * (1 - d)))
    assert ema_decay(0.999, 10**6) == 0.999  # the configured decay once the run is old
    assert make_ema(m, 0.0) is None


def test_standing_stats_measure_the_models_own_activations():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh())
    before = {k: v.clone() for k, v in G.state_dict().items()}
    zs = [torch.randn(16, 3) for _ in range(3)]
    it = iter(zs)
    out = standing_stats(G, lambda: (next(it),), batches=3)
    with torch.no_grad():
        h = G[0](torch.cat(zs))
    # the plain average of the three batches' statistics (equal batch sizes), not a momentum blend
    assert torch.allclose(out[1].running_mean, h.mean(0), atol=1e-6)
    assert torch.allclose(out[1].running_var, torch.stack([G[0](z).var(0) for z in zs]).mean(0), atol=1e-5)
    assert out[1].momentum == G[1].momentum and not out.training
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())  # G itself is untouched
    plain = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
    assert standing_stats(plain, lambda: (torch.randn(2, 3),)) is plain


def test_classic_and_critic_schedules():
    assert build_strategy(build_config()).plan(0) == [Phase("D"), Phase("G")]
    c = Critic(n_critic=5, boost=100, boost_first=25, boost_every=500)  # seed 004
    counts = [len(c.plan(i)) - 1 for i in range(1001)]
    assert counts[:25] == [100] * 25 and counts[25] == 5 and counts[499] == 5
    assert counts[500] == 100 and counts[1000] == 100 and counts[501] == 5
    assert [len(Critic(3).plan(i)) for i in range(30)] == [4] * 30  # seed 000: D trained 3 times more


def test_monitored_gates_d_on_the_loss_ratio():
    m = Monitored(0.8)
    assert m.plan(0) == [Phase("D", gated=True), Phase("G")]
    assert m.allow_update(0.1, None)  # nothing to compare with yet
    assert m.allow_update(0.9, 1.0) and not m.allow_update(0.7, 1.0)
    assert not m.allow_update(0.4, 0.5)  # D_loss exactly 0.8 x G_loss: not above it, no update
    built = build_strategy(build_config({"train": {"strategy": "monitored"}}))  # seed 000's factor by default
    assert built.allow_update(0.81, 1.0) and not built.allow_update(0.79, 1.0)


def test_boost_maps_k_ranges_to_phases(monkeypatch):
    b = Boost(window=3)
    ks = iter([0.5, 0.95, 0.00005, 0.0005, 0.2])
    monkeypatch.setattr(b, "draw", lambda: next(ks))
    D, G, DS = Phase("D"), Phase("G"), Phase("D", swap=True)
    plans = [b.plan(i) for i in range(9)]
    assert plans == [[D, G], [DS, G], [G], [G], [G], [D], [D], [D], [D, G]]


def test_boost_resumed_inside_a_boost_finishes_it(monkeypatch):
    b = Boost(window=5)
    monkeypatch.setattr(b, "draw", lambda: 0.00005)  # a G boost of 5 iterations
    assert [b.plan(i) for i in range(2)] == [[Phase("G")]] * 2
    resumed = Boost(window=5)
    resumed.load_state_dict(b.state_dict())
    assert [resumed.plan(i) for i in range(2, 5)] == [[Phase("G")]] * 3  # the boost's last 3, no new k drawn
    assert resumed.left == 0


def test_boost_draws_follow_train_seed():
    draws = [build_strategy(build_config({"train": {"strategy": "boost", "seed": seed}})).draw() for seed in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2]


def test_the_critic_schedule_takes_its_keys_from_the_config():
    s = build_strategy(build_config({"train": {"strategy": "critic", "loss": "wgan", "n_critic": 2, "critic_boost": 7,
                                                "critic_boost_first": 3, "critic_boost_every": 10}}))
    assert [s.critic_steps(i) for i in range(12)] == [7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 7, 2]


def test_boost_frequencies_match_the_k_ranges():
    b = Boost(window=100, seed=3)
    n = 300_000
    k = torch.rand(n, generator=b.rng, dtype=torch.float64)
    assert ((k >= 0.93).double().mean().item()) == pytest.approx(0.07, abs=0.003)
    assert ((k < 1e-3) & (k >= 1e-4)).sum().item() == pytest.approx(n * 9e-4, rel=0.2)
    assert (k < 1e-4).sum().item() == pytest.approx(n * 1e-4, abs=4 * math.sqrt(n * 1e-4))
    # and the strategy itself: over many iterations the share of swapped D steps is ~7% of the drawn ones
    b = Boost(window=100, seed=5)
    plans = [b.plan(i) for i in range(60_000)]
    drawn = [p for p in plans if len(p) == 2]
    swapped = sum(p[0].swap for p in drawn) / len(drawn)
    assert swapped == pytest.approx(0.07, abs=0.006)
    state = b.state_dict()
    nxt = [b.plan(i) for i in range(500)]
    b2 = Boost(window=100, seed=99)
    b2.load_state_dict(state)
    assert [b2.plan(i) for i in range(500)] == nxt


def test_topk_shrinks_k_per_epoch_to_the_fraction_and_keeps_the_best_scores():
    assert [topk_count(64, 0.5, 0.99, e) for e in (0, 10, 68, 69, 500)] == [64, 58, 33, 32, 32]
    assert topk_count(64, 1.0, 0.5, 100) == 64  # topk 1: the classic update
    assert topk_count(8, 0.25, 0.0, 3) == 2
    assert topk_count(5, 0.5, 0.0, 3) == 3  # never below the fraction: 2.5 fakes round up
    scores = torch.tensor([[0.3], [-2.0], [1.5], [0.9]])
    assert sorted(top_k(scores, 2).tolist()) == [2, 3]
    assert sorted(top_k(scores, 3).tolist()) == [0, 2, 3]  # all but the worst
    assert top_k(scores, 4) is None


def test_linear_lr_decay_holds_then_falls_to_zero_at_the_end():
    assert [lr_factor("linear", 0.5, p) for p in (0.0, 0.5, 0.75, 1.0)] == [1.0, 1.0, 0.5, 0.0]
    assert lr_factor("linear", 0.0, 0.25) == 0.75
    assert lr_factor("none", 0.0, 0.9) == 1.0


@pytest.mark.parametrize("loss, relative", [("bce", False), ("hinge", False), ("wgan", True), ("wgan_gp", True),
                                            ("ra_hinge", True), ("ra_bce", True)])
def test_accuracy_and_ada_read_the_scores_as_the_loss_judges_them(loss, relative):
    """A relativistic loss, or a critic's, sees only differences of scores: their offset drifts freely, so the sign
    of a raw score meant nothing, and ADA (which reads the real scores' sign) kept the small-data preset's
    augmentation probability at 0. Such losses judge each score against the other side's mean."""
    from gankit.data.augment import AdaptiveP
    from gankit.losses import accuracy

    name = loss.removeprefix("ra_")
    fn = build_loss(build_config({"train": {"loss": name, "relativistic": loss.startswith("ra_")},
                                  "model": {"d_norm": "none"}}))
    real, fake = torch.tensor([5.0, 6.0, 7.0]), torch.tensor([4.0, 5.0, 9.0])  # all > 0: "all real" by sign
    judged = fn.judged(real, fake)
    assert [float(a) for a in accuracy(*judged)] == pytest.approx([1 / 3, 2 / 3] if relative else [1.0, 0.0])
    if relative:  # any offset: the same judgement
        assert all(torch.allclose(a, b) for a, b in zip(fn.judged(real + 100, fake + 100), judged))
        ada = AdaptiveP(target=0.6, p=0.5, interval=1)
        ada.observe(fn.judged(real + 100, fake + 100)[0])  # one real above the fakes' mean, two below
        assert ada.p < 0.5  # not overfitting: less augmentation


def test_the_ema_sampler_of_a_generator_with_dropout_leaves_trainings_random_streams_alone():
    """Its passes in train mode ran G's dropout on the global stream: a checkpoint (whose random state is taken
    before the sampler is built) resumed to other weights under --deterministic, and the sampler depended on when it
    was built."""
    from gankit.models import build_generator
    from gankit.tricks import ema_sampler

    cfg = build_config({"data": {"resolution": 16}, "model": {"ngf": 8, "nz": 8, "channels": 3, "g_dropout": 0.5},
                        "train": {"batch_size": 4}})
    G = build_generator(cfg)
    z = torch.randn(2, 8)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = ema_sampler(G, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)  # another moment of the run
    second = ema_sampler(G, cfg)
    with torch.no_grad():
        assert torch.equal(first(z), second(z))


def test_one_sided_label_smoothing_leaves_gs_target_at_one():
    smooth = build_loss(build_config({"train": {"label_smoothing": 0.1}}))
    fake = torch.tensor([-1.0])
    assert smooth.g_loss(fake).item() == pytest.approx(_bce(-1.0, 1.0), rel=1e-5)


def test_gradient_penalty_is_taken_between_each_real_and_its_fake_at_a_point_drawn_per_sample():
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4) + 2

    def critic(x):  # 0.5 ||x||^2: its gradient is x itself
        return 0.5 * x.flatten(1).pow(2).sum(1)

    torch.manual_seed(0)
    eps = torch.rand(6, 1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    expected = (x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.manual_seed(0)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)


def test_relativistic_noisy_labels_swap_the_relative_scores_targets():
    ra_hinge = build_loss(build_config({"train": {"loss": "hinge", "relativistic": True}}))
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])  # relative: r = [2, 4], f = [-4, -2]
    assert ra_hinge.d_loss(real, fake).item() == pytest.approx(0.0)
    # swapped: reals judged as fakes, mean relu(1 + [2, 4]) = 4; fakes as reals, mean relu(1 - [-4, -2]) = 4
    assert ra_hinge.d_loss(real, fake, swap=True).item() == pytest.approx(8.0)


def test_the_ema_sampler_on_an_apple_gpu_forks_and_seeds_its_stream(monkeypatch, fake_mps):
    """Only CUDA's stream was forked and seeded: on MPS, G's dropout in the standing-statistics passes drew from the
    training's stream (a resume went on from another state) and the sampler depended on when it was built."""
    from types import SimpleNamespace

    from gankit import tricks

    cfg = build_config({"train": {"seed": 3}})

    class OnMPS:
        def parameters(self):
            yield SimpleNamespace(device=torch.device("mps"))

    seen = []
    monkeypatch.setattr(tricks, "standing_stats", lambda G, draw: seen.append(fake_mps.state.item()) or G)
    fake_mps.manual_seed(77)  # the training's stream
    tricks.ema_sampler(OnMPS(), cfg)
    assert seen == [3 + 4242] and fake_mps.state.item() == 77
