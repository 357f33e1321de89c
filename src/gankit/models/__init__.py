"""Builders: a `Config` (model section + resolution) -> generator and discriminator modules.

Interfaces the trainer relies on:
    G(z, labels=None) -> images [N, C, R, R] in [-1, 1]; labels (int64 [N]) are required when
        the model is conditional (arch acgan), and G.num_classes says whether it is (0: no).
    D(x) -> (adv, aux): adv = raw scores [N] (no sigmoid), aux = class logits [N, K] (no softmax)
        for arch acgan, else None. Always a tuple.
"""

from __future__ import annotations

import torch

from gankit.config import Config
from gankit.errors import ConfigError
from gankit.models.dcgan import Discriminator, Generator, init_weights, layout


def _num_classes(cfg: Config) -> int:
    """Classes of a conditional model: the dataset's for arch acgan, 0 (unconditional) for dcgan."""
    m = cfg.model
    if m.arch != "acgan":
        return 0
    if m.num_classes < 1:
        raise ConfigError("model.arch acgan needs labelled images: pass --labels folders (class sub-folders) "
                          "or --labels FILE.csv --set data.label_column=COLUMN")
    return m.num_classes


def build_generator(cfg: Config) -> Generator:
    m = cfg.model
    return Generator(cfg.data.resolution, nz=m.nz, ngf=m.ngf, channels=m.channels, max_channels=m.max_channels,
                     upsample=m.upsample, kernel=m.kernel, palette_size=m.palette_size, norm=m.g_norm, act=m.g_act, dropout=m.g_dropout,
                     num_classes=_num_classes(cfg), embed_dim=m.embed_dim, init=m.init, init_std=m.init_std,
                     leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum, bn_eps=m.bn_eps)


def build_discriminator(cfg: Config) -> Discriminator:
    m = cfg.model
    return Discriminator(cfg.data.resolution, ndf=m.ndf, channels=m.channels, max_channels=m.max_channels,
                         norm=m.d_norm, dropout=m.d_dropout, mbd_features=m.mbd_features,
                         mbd_kernel_dim=m.mbd_kernel_dim, mbstd_group=m.d_mbstd_group, spectral_norm=m.spectral_norm,
                         num_classes=_num_classes(cfg), init=m.init, init_std=m.init_std, downsample=m.d_downsample,
                         kernel=m.kernel, leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum, bn_eps=m.bn_eps)


def sample_z(n: int, cfg: Config, device, generator=None) -> torch.Tensor:
    """Latent noise of the configured size and distribution (normal, or uniform in [-1, 1])."""
    if cfg.model.z_dist == "uniform":
        return torch.rand(n, cfg.model.nz, device=device, generator=generator) * 2 - 1
    return torch.randn(n, cfg.model.nz, device=device, generator=generator)


__all__ = ["Generator", "Discriminator", "build_generator", "build_discriminator", "init_weights", "layout",
           "sample_z"]
