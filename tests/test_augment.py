"""DiffAugment ops and the adaptive probability controller."""

from __future__ import annotations

import torch

from gankit.data.augment import AdaptiveP, DiffAugment, cutout, translation


def test_translation_shifts_content_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) + 1  # strictly positive, so zeros can only come from padding
    y = translation(x)
    for i in range(64):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(x[i])
                src = x[i][:, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
                shifted[:, max(0, dy):16 - max(0, -dy), max(0, dx):16 - max(0, -dx)] = src
                found |= torch.equal(shifted, y[i])
        assert found, i
    assert (y == 0).any()  # some sample was shifted


def test_cutout_zeroes_a_quarter_and_everything_is_differentiable():
    x = torch.ones(32, 3, 16, 16, requires_grad=True)
    y = cutout(x)
    zero_frac = (y == 0).float().mean(dim=(1, 2, 3))
    assert torch.all(zero_frac >= 1 / 16 - 1e-6) and torch.all(zero_frac <= 0.25 + 1e-6)
    out = DiffAugment()(x * 0.5)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_probability_zero_is_identity_and_one_changes_every_image():
    x = torch.rand(8, 3, 16, 16)
    assert torch.equal(DiffAugment(p=0.0)(x), x)
    y = DiffAugment("color", p=1.0)(x)
    assert all(not torch.allclose(a, b) for a, b in zip(x, y))


def test_adaptive_p_follows_discriminator_overfitting():
    ada = AdaptiveP(target=0.6, interval=2, speed=0.1)
    for _ in range(10):
        ada.observe(torch.ones(8))  # D sure every real is real: overfitting -> more augmentation
    assert abs(ada.p - 0.5) < 1e-6
    for _ in range(20):
        ada.observe(-torch.ones(8))
    assert ada.p == 0.0
    state = ada.state_dict()
    other = AdaptiveP(target=0.6, interval=2, speed=0.1)
    other.load_state_dict(state)
    assert other.p == ada.p
