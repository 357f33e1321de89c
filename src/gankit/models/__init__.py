"""Builders: a `ModelConfig` (+ resolution) -> generator and discriminator modules."""

from __future__ import annotations

from torch import nn

from gankit.config import Config
from gankit.models.dcgan import Discriminator, Generator, init_weights


def build_generator(cfg: Config) -> nn.Module:
    m = cfg.model
    g = Generator(cfg.data.resolution, nz=m.nz, ngf=m.ngf, channels=m.channels, max_channels=m.max_channels)
    init_weights(g, m.init_std)
    return g


def build_discriminator(cfg: Config) -> nn.Module:
    m = cfg.model
    d = Discriminator(cfg.data.resolution, ndf=m.ndf, channels=m.channels, max_channels=m.max_channels)
    init_weights(d, m.init_std)
    return d


def sample_z(n: int, cfg: Config, device, generator=None):
    """Latent noise of the configured size and distribution (normal, or uniform in [-1, 1])."""
    import torch

    if cfg.model.z_dist == "uniform":
        return torch.rand(n, cfg.model.nz, device=device, generator=generator) * 2 - 1
    return torch.randn(n, cfg.model.nz, device=device, generator=generator)


__all__ = ["Generator", "Discriminator", "build_generator", "build_discriminator", "init_weights", "sample_z"]
