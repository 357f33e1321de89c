"""DiffAugment ops and the adaptive probability controller."""

from __future__ import annotations

import pytest
import torch

from gankit.data.augment import AdaptiveP, DiffAugment, color, cutout, translation


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


def _color_three_steps(x, b, s, c):
    """DiffAugment's colour ops as three separate steps, the definition gankit's fused `color` must equal."""
    x = x + b
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * s + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def test_fused_color_equals_the_three_steps_and_translation_is_exact():
    x = torch.rand(16, 3, 12, 12) * 2 - 1
    torch.manual_seed(3)
    fused = color(x)
    torch.manual_seed(3)  # the same draws, in the same order: brightness, saturation, contrast
    b, s, c = (torch.rand(16, 1, 1, 1) for _ in range(3))
    assert torch.allclose(fused, _color_three_steps(x, b - 0.5, s * 2, c + 0.5), atol=1e-5)
    # translation moves values without touching them, in bf16 as in fp32 (one-hot matmuls)
    xb = x.to(torch.bfloat16)
    for y, src in ((translation(x), x), (translation(xb), xb)):
        assert y.dtype == src.dtype
        nonzero = y[y != 0]
        assert torch.isin(nonzero, src).all()


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_each_op_changes_about_p_of_the_images(p):
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 8, 8) * 2 - 1
    changed = (DiffAugment("color", p=p)(x) != x).flatten(1).any(1).float().mean()
    assert float(changed) == pytest.approx(p, abs=0.03)


def test_translation_reaches_every_shift_up_to_an_eighth_both_ways():
    """At 16 px: a lone pixel in the middle lands at every offset -2..+2 on each axis, and never further."""
    torch.manual_seed(0)
    x = torch.zeros(2000, 1, 16, 16)
    x[:, :, 8, 8] = 1
    where = translation(x).flatten(1).argmax(1)
    assert set((where // 16 - 8).tolist()) == set((where % 16 - 8).tolist()) == {-2, -1, 0, 1, 2}


def test_cutout_falls_anywhere_and_differs_per_image():
    """Over many images every pixel, edges included, is cut at least once, and each image has a square of its own."""
    torch.manual_seed(0)
    cut = cutout(torch.ones(500, 1, 16, 16))[:, 0] == 0
    assert cut.any(0).all()
    assert len({tuple(r.tolist()) for r in cut.any(2)}) > 5 and len({tuple(c.tolist()) for c in cut.any(1)}) > 5


def test_adaptive_p_stays_within_zero_and_one_and_reads_the_mean_sign():
    ada = AdaptiveP(target=0.6, interval=2, speed=0.3, p=0.8)
    for _ in range(6):
        ada.observe(torch.ones(8))
    assert ada.p == 1.0  # capped, however overconfident D stays
    ada = AdaptiveP(target=0.6, interval=2, speed=0.1, p=0.5)
    ada.observe(torch.ones(8))
    ada.observe(torch.tensor([1.0, -1.0]))  # mean sign over the interval 0.5 < target: less augmentation
    assert ada.p == pytest.approx(0.4)
