"""Adversarial losses. Each loss turns discriminator outputs (logits or scores) into D and G losses.

A loss object is stateless; the training loop calls `d_loss` in D phases and `g_loss` in G phases.
`swap=True` asks for the noisy-label variant (real labelled fake and fake labelled real).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BCELoss:
    """Classic GAN loss (seed 000 "classic"): D minimises -(log D(x) + log(1 - D(G(z)))),
    G minimises -log D(G(z)) (the non-saturating form of the original paper).

    `real_target` < 1 gives one-sided label smoothing.
    """

    name = "bce"

    def __init__(self, real_target: float = 1.0):
        self.real_target = real_target

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor, swap: bool = False) -> torch.Tensor:
        t_real, t_fake = (0.0, self.real_target) if swap else (self.real_target, 0.0)
        real_out, fake_out = real_out.float(), fake_out.float()
        return F.binary_cross_entropy_with_logits(real_out, torch.full_like(real_out, t_real)) + \
            F.binary_cross_entropy_with_logits(fake_out, torch.full_like(fake_out, t_fake))

    def g_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        fake_out = fake_out.float()
        return F.binary_cross_entropy_with_logits(fake_out, torch.ones_like(fake_out))

    @staticmethod
    def accuracy(real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fraction of real images D calls real, and of fakes it calls fake (device tensors, no sync)."""
        return (real_out > 0).float().mean(), (fake_out < 0).float().mean()


def build_loss(cfg):
    if cfg.train.loss == "bce":
        return BCELoss()
    raise ValueError(cfg.train.loss)
