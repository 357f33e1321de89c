"""The DCGAN family (Radford et al. 2015; seeds 000-004): one generator and one discriminator whose
resolution, upsampling, normalisation, conditioning and tricks are parameters, not files.

Layout. Any square resolution from 16 px: D halves the image with stride-2 4x4 convolutions (`kernel` 5: 5x5,
the DCGAN paper's) (ceil sizes, e.g. 300 -> 150 -> 75 -> 38 -> 19 -> 10 -> 5) until at most 7 px are left, and its head
is a convolution whose kernel covers what is left. G mirrors it: from z it makes that base map
(4..7 px), doubles it as often as D halved, and center-crops to the resolution (5 -> 320 -> 300).
Widths double towards the small end, capped by `max_channels`. For powers of two this is exactly
the classic DCGAN (4x4 base, 4x4 head, same module indices), so older checkpoints keep loading.

Paper rules kept by default: no pooling, no fully connected hidden layers, a norm in every block except G's
output and D's input layer, ReLU in G (Tanh at the output), LeakyReLU(0.2) in D, conv biases only
where no norm follows. The seeds that depart from them are options: LeakyReLU in G (`act`, seeds 001 and
002), max-pooling in D (`downsample`, seed 001). D returns raw scores: the sigmoid, if any, lives in the loss.
So are the framework values a Keras write-up (seeds 001, 004) keeps differently, PyTorch's (and the paper's) by
default: the LeakyReLU slope (`leaky_slope`), BatchNorm's momentum and epsilon (`bn_momentum`, `bn_eps`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from gankit.models.layers import (ColorPicker, Conv2d, ConvTranspose2d, MinibatchDiscrimination, MinibatchStdDev,
                                  NearestUpsample, SelfModulatedBatchNorm, norm_layer)


def layout(resolution: int) -> tuple[int, int]:
    """(base, n): the size of D's last / G's first feature map (4..7 px) and the 2x steps to the resolution.

    64 -> (4, 4); 100 -> (7, 4): G makes 112 px and crops; 300 -> (5, 6): G makes 320 px and crops.
    """
    if not isinstance(resolution, int) or resolution < 16:
        raise ValueError(f"resolution must be a whole number of pixels >= 16, got {resolution!r}")
    size, n = resolution, 0
    while size > 7:
        size, n = (size + 1) // 2, n + 1
    return size, n


def block_widths(n: int, width: int, max_channels: int) -> list[int]:
    """Channels of the n feature maps from the base map up to half the resolution: n=4, width 64 -> [512, 256, 128, 64]."""
    return [min(width * 2 ** (n - 1 - i), max_channels) for i in range(n)]


def _after_conv(width: int, norm: str, activation: nn.Module, dropout: float, z_dim: int = 0,
                bn_momentum: float = 0.1, bn_eps: float = 1e-5) -> list[nn.Module]:
    """What follows every hidden convolution: its norm (unless "none"; "selfmod": BatchNorm modulated by the
    z_dim latent; a BatchNorm's momentum and epsilon `bn_momentum`, `bn_eps`), the activation, dropout (if > 0)."""
    if norm == "selfmod":
        layers: list[nn.Module] = [SelfModulatedBatchNorm(width, z_dim, bn_momentum=bn_momentum, bn_eps=bn_eps)]
    else:
        layers = [] if norm == "none" else [norm_layer(norm, width, bn_momentum, bn_eps)]
    layers.append(activation)
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def _doubling(cin: int, cout: int, upsample: str, bias: bool, size: int, kernel: int = 4) -> list[nn.Module]:
    """A 2x upsampling convolution of a size x size map: transposed, stride 2, `kernel` 4 (PyTorch's DCGAN) or 5
    (the DCGAN paper's; one output_padding row and column make the map exactly twice as large), or nearest x2 then
    a 3x3 conv (seed 002)."""
    if upsample == "convtranspose":
        return [ConvTranspose2d(cin, cout, kernel, 2, (kernel - 1) // 2, output_padding=kernel % 2, bias=bias)]
    if upsample in ("upsample", "colorpicker"):
        return [NearestUpsample(), Conv2d(cin, cout, 3, 1, 1, bias=bias)]
    raise ValueError(f"unknown upsample {upsample!r}: choose convtranspose, upsample or colorpicker")


class Generator(nn.Module):
    """z [N, nz] (+ class labels [N] when conditional) -> images [N, channels, R, R] in [-1, 1].

    upsample: convtranspose (DCGAN; `kernel` 4 or 5) | upsample (nearest x2 + 3x3 conv) | colorpicker (upsample
    blocks, then a `ColorPicker` output layer with `palette_size` colours instead of conv + Tanh).
    num_classes > 0 makes it conditional (ACGAN, seed 002): an embedding of the label, of size
    `embed_dim`, is concatenated to z; labels are then required (an unconditional G ignores them).
    norm: batch | none | selfmod (BatchNorm with scale and shift computed from z, `SelfModulatedBatchNorm`).
    act: the hidden blocks' activation, relu (DCGAN paper) or leaky_relu (slope `leaky_slope`, seeds 001 and 002).
    bn_momentum, bn_eps: its BatchNorms' (PyTorch's convention and defaults).
    """

    def __init__(self, resolution: int, nz: int = 100, ngf: int = 64, channels: int = 3, max_channels: int = 512,
                 upsample: str = "convtranspose", kernel: int = 4, palette_size: int = 16, norm: str = "batch", act: str = "relu",
                 dropout: float = 0.0,
                 num_classes: int = 0, embed_dim: int = 50, init: str = "normal", init_std: float = 0.02,
                 leaky_slope: float = 0.2, bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        base, n = layout(resolution)
        widths = block_widths(n, ngf, max_channels)
        self.nz, self.num_classes, self.resolution = nz, num_classes, resolution
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes > 0 else None
        z_dim = nz + (embed_dim if num_classes > 0 else 0)
        bias = norm == "none"

        layers: list[nn.Module] = [ConvTranspose2d(z_dim, widths[0], base, 1, 0, bias=bias)]  # 1x1 -> base
        def activation() -> nn.Module:
            return nn.LeakyReLU(leaky_slope, inplace=True) if act == "leaky_relu" else nn.ReLU(inplace=True)

        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        layers += _after_conv(widths[0], norm, activation(), dropout, z_dim, **bn)
        size = base
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += _doubling(cin, cout, upsample, bias, size, kernel)
            layers += _after_conv(cout, norm, activation(), dropout, z_dim, **bn)
            size *= 2
        if upsample == "colorpicker":
            layers.append(ColorPicker(widths[-1], channels, palette_size))
        else:
            layers += [*_doubling(widths[-1], channels, upsample, bias=False, size=size, kernel=kernel), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self, init, init_std, leaky_slope)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = z.flatten(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError(f"this generator is conditional ({self.num_classes} classes): "
                                 "call G(z, labels) with int64 labels of shape [N]")
            z = torch.cat([z, self.embed(labels).to(z.dtype)], 1)
        h = z[:, :, None, None]
        for layer in self.net:  # as nn.Sequential, except that self-modulated norms also take z
            h = layer(h, z) if isinstance(layer, SelfModulatedBatchNorm) else layer(h)
        return _center_crop(h, self.resolution)


class Discriminator(nn.Module):
    """images [N, channels, R, R] -> (adv [N] raw scores, aux [N, num_classes] class logits or None).

    norm: batch | layer | instance | none (no norm on the input layer, DCGAN rule); dropout after
    every block; mbd_features > 0 concatenates minibatch-discrimination features (seeds 000/003)
    to the flattened last features, and the head becomes a linear layer over both; mbstd_group > 0
    gives the head one more input map, the features' spread over groups of that many images
    (`MinibatchStdDev`, ProGAN/StyleGAN); spectral_norm wraps every conv and linear layer (Miyato et al. 2018); num_classes > 0 adds
    the ACGAN auxiliary classifier head (logits, no softmax: cross-entropy takes logits). downsample: stride (4x4
    stride-2 convolutions, DCGAN; `kernel` 5: 5x5, the DCGAN paper's) | maxpool (3x3 convolutions, each followed by 2x2 max-pooling; seed 001).
    leaky_slope: its LeakyReLUs' negative slope (0.2, the DCGAN paper's); bn_momentum, bn_eps: its BatchNorms'.
    """

    def __init__(self, resolution: int, ndf: int = 64, channels: int = 3, max_channels: int = 512,
                 norm: str = "batch", dropout: float = 0.0, mbd_features: int = 0, mbd_kernel_dim: int = 5,
                 mbstd_group: int = 0, spectral_norm: bool = False, num_classes: int = 0, init: str = "normal", init_std: float = 0.02,
                 downsample: str = "stride", kernel: int = 4,
                 leaky_slope: float = 0.2, bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        base, n = layout(resolution)
        widths = block_widths(n, ndf, max_channels)[::-1]  # e.g. 64 px: [64, 128, 256, 512]

        layers: list[nn.Module] = []
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        cin, size = channels, resolution
        for i, cout in enumerate(widths):
            block_norm = norm if i > 0 else "none"  # the input layer has no norm, and no bias (classic)
            bias = i > 0 and norm == "none"
            if downsample == "maxpool":  # seed 001: a 3x3 convolution, then 2x2 max-pooling (ceil: odd sizes too)
                layers.append(Conv2d(cin, cout, 3, 1, 1, bias=bias))
                layers += _after_conv(cout, block_norm, nn.LeakyReLU(leaky_slope, inplace=True), 0.0, **bn)
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                layers += [nn.Dropout(dropout)] if dropout > 0 else []
            else:  # DCGAN: a 4x4 (or 5x5) stride-2 convolution whose output is ceil(size / 2) (4x4: odd sizes get one
                # more pixel of padding)
                padding = (kernel - 1) // 2 + (size % 2 if kernel % 2 == 0 else 0)
                layers.append(Conv2d(cin, cout, kernel, 2, padding, bias=bias))
                layers += _after_conv(cout, block_norm, nn.LeakyReLU(leaky_slope, inplace=True), dropout, **bn)
            size = (size + 1) // 2
            cin = cout
        self.features = nn.Sequential(*layers)

        self.mbstd = MinibatchStdDev(mbstd_group) if mbstd_group > 0 else None
        head_in = widths[-1] + (self.mbstd is not None)
        flat = head_in * base * base
        self.mbd = MinibatchDiscrimination(flat, mbd_features, mbd_kernel_dim) if mbd_features > 0 else None
        if self.mbd is None:
            self.head = Conv2d(head_in, 1, base, 1, 0, bias=False)  # base x base -> 1x1 score
        else:
            self.head = nn.Linear(flat + mbd_features, 1)
        self.aux = Conv2d(widths[-1], num_classes, base, 1, 0) if num_classes > 0 else None  # class logits

        init_weights(self, init, init_std, leaky_slope)  # before spectral norm, which starts its power iteration from these weights
        if spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    add_spectral_norm(m)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.features(x)
        h_head = self.mbstd(h) if self.mbstd is not None else h
        if self.mbd is None:
            adv = self.head(h_head)
        else:
            flat = h_head.flatten(1)
            adv = self.head(torch.cat([flat, self.mbd(flat)], 1))
        aux = self.aux(h).flatten(1) if self.aux is not None else None
        return adv.flatten(), aux


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    offset = (images.shape[-1] - size) // 2
    return images[..., offset:offset + size, offset:offset + size]


INIT_SCHEMES = ("normal", "xavier", "xavier_uniform", "kaiming", "orthogonal", "default")


def init_weights(module: nn.Module, scheme: str = "normal", std: float = 0.02, leaky_slope: float = 0.2) -> None:
    """Initialise every conv / linear weight and norm scale of `module` in place.

    normal: weights ~ N(0, std), norm scales ~ N(1, std) (DCGAN paper); xavier: Glorot normal; xavier_uniform:
    Glorot uniform (Keras' default kernel initializer, seeds 001 and 004);
    kaiming: He normal for LeakyReLU(leaky_slope) (fan-in; G's too, whatever its activation); orthogonal: (semi-)orthogonal weight matrices;
    default: PyTorch's own init, untouched. Biases and norm shifts start at 0 and norm scales at 1
    (except normal). Label embeddings keep PyTorch's N(0, 1), the scale of z. Under spectral
    norm the raw (un-normalised) weight is the one initialised.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}: choose {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            if scheme == "normal":
                nn.init.normal_(weight, 0.0, std)
            elif scheme == "xavier":
                nn.init.xavier_normal_(weight)
            elif scheme == "xavier_uniform":
                nn.init.xavier_uniform_(weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(weight, a=leaky_slope, nonlinearity="leaky_relu")
            else:
                nn.init.orthogonal_(weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            if scheme == "normal":
                nn.init.normal_(m.weight, 1.0, std)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
