"""Building blocks the DCGAN family adds to plain convolutions: normalisation choice, minibatch
discrimination (seeds 000/003), minibatch standard deviation and the colour-picker output layer (seed 002).
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation of a conv block: batch | layer | instance.

    `layer` normalises each sample over (C, H, W) (GroupNorm with one group) and `instance` each
    sample's channels over (H, W), both with a learned scale and shift: neither mixes samples of a
    batch, which the WGAN-GP penalty needs (seed 002, Gulrajani et al.).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}: choose batch, layer, instance or none")


class MinibatchDiscrimination(nn.Module):
    """Features that tell D how similar each sample is to the rest of its batch (Salimans et al. 2016).

    For x in R^A (one flattened sample), M = x T with T in R^(A x B*C) gives B rows of size C per
    sample; c_b(x_i, x_j) = exp(-||M_i,b - M_j,b||_1) and o_b(x_i) = sum_{j != i} c_b(x_i, x_j).
    A collapsed batch (all samples alike) gets o close to N - 1, a diverse one close to 0, so D can
    reject batches of near-identical fakes. Returns o: [N, B], to concatenate to D's features.
    """

    def __init__(self, in_features: int, out_features: int, kernel_dim: int):
        super().__init__()
        self.out_features, self.kernel_dim = out_features, kernel_dim
        self.T = nn.Linear(in_features, out_features * kernel_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.T(x.flatten(1)).unflatten(1, (self.out_features, self.kernel_dim))  # [N, B, C]
        m = m.to(torch.promote_types(m.dtype, torch.float32))  # distances and exp in at least fp32 under autocast
        m = m.transpose(0, 1)  # [B, N, C]: one L1 distance matrix per kernel
        similarity = torch.exp(-torch.cdist(m, m, p=1))  # [B, N, N], 1 on the diagonal
        o = similarity.sum(2) - 1  # drop each sample's similarity to itself
        return o.t().to(x.dtype)


class MinibatchStdDev(nn.Module):
    """One more feature map telling D how varied the images around each one are (Karras et al. 2018, ProGAN/StyleGAN).

    The batch is cut into groups of `group` consecutive images (the largest divisor of N not above
    `group`); per group, the standard deviation of every feature over its images, averaged over
    features and positions, is appended as a constant channel to each of its images: [N, C, H, W] ->
    [N, C + 1, H, W]. A collapsed G gives fakes with ~0 spread, which D learns to reject. Groups are
    consecutive so that a fused [real; fake] batch, each half a multiple of `group`, never mixes the two.
    """

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)
        y = x.float().unflatten(0, (n // g, g))  # [N/g, g, C, H, W], statistics in fp32 under autocast
        spread = (y.var(1, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # [N/g]
        feature = spread.repeat_interleave(g).to(x.dtype)[:, None, None, None].expand(n, 1, h, w)
        return torch.cat([x, feature], 1)


class ColorPicker(nn.Module):
    """Output layer that paints with a palette (ConorLazarou/PokeGAN, described in seed 002).

    From the last feature map [N, F, H, W] it makes, per image, a palette of `palette_size` values
    in (-1, 1) shared by every channel (tanh of a learned base palette, which starts spread over
    the range, plus a linear map of the globally pooled features), and
    per channel and output pixel a softmax distribution over the palette (nearest x2 upsampling,
    3x3 conv to channels * palette_size logits). Each channel is the distribution-weighted sum of
    the palette, so every output value lies between the palette's smallest and largest entry:
    images come out with few, flat colours. Output: [N, channels, 2H, 2W] in (-1, 1).

    PokeGAN itself shares one distribution between R, G and B and gives each channel its own
    palette; seed 002 describes (and this layer does) the transpose of that.
    """

    def __init__(self, in_channels: int, channels: int, palette_size: int):
        super().__init__()
        self.channels, self.palette_size = channels, palette_size
        self.base_palette = nn.Parameter(torch.linspace(-2.0, 2.0, palette_size))  # tanh: -0.96 .. 0.96
        self.palette = nn.Linear(in_channels, palette_size)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.logits = nn.Conv2d(in_channels, channels * palette_size, 3, 1, 1)

    def palette_of(self, h: torch.Tensor) -> torch.Tensor:
        """Each image's palette: [N, palette_size] in (-1, 1)."""
        return torch.tanh(self.base_palette + self.palette(h.mean((2, 3))))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.logits(self.upsample(h)).unflatten(1, (self.channels, self.palette_size))
        weights = logits.softmax(2)  # [N, C, P, H, W]: per channel and pixel, a distribution over the palette
        return torch.einsum("ncphw,np->nchw", weights, self.palette_of(h).to(weights.dtype))
