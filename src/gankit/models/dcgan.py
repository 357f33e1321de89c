"""DCGAN generator and discriminator for any power-of-two resolution (Radford et al. 2015, seed 004).

The networks are built from the resolution instead of one file per size: the generator starts at
4x4 and doubles the size with stride-2 transposed convolutions until it reaches the resolution;
the discriminator mirrors it with stride-2 convolutions down to 4x4 and a final 4x4 convolution.
Widths double towards the 4x4 end, capped by `max_channels` so 256-512 px models stay trainable.

Paper rules kept: no pooling, no fully connected hidden layers, BatchNorm in both nets except the
generator's output and the discriminator's input layer, ReLU in G (Tanh at the output), LeakyReLU(0.2)
in D. D returns logits (the sigmoid lives in the loss, which is numerically safe under autocast).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def block_widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels of each feature map from 4x4 up to resolution/2, e.g. 64px, width 64 -> [512, 256, 128, 64]."""
    n = int(math.log2(resolution)) - 2  # number of size doublings from 4x4 to the resolution
    if 2 ** (n + 2) != resolution or n < 2:
        raise ValueError(f"resolution must be a power of two >= 16, got {resolution}")
    return [min(width * 2 ** (n - 1 - i), max_channels) for i in range(n)]


class Generator(nn.Module):
    def __init__(self, resolution: int, nz: int = 100, ngf: int = 64, channels: int = 3, max_channels: int = 512):
        super().__init__()
        self.nz = nz
        widths = block_widths(resolution, ngf, max_channels)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, resolution: int, ndf: int = 64, channels: int = 3, max_channels: int = 512):
        super().__init__()
        widths = block_widths(resolution, ndf, max_channels)[::-1]  # e.g. [64, 128, 256, 512]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)  # 4x4 -> 1x1 logit

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.head(self.features(x)).flatten(), None


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN paper init: conv weights ~ N(0, std); BatchNorm gamma ~ N(1, std), beta = 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
