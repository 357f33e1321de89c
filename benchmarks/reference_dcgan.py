"""A plain reference DCGAN training step, written from the DCGAN paper (Radford et al. 2015).

This is the yardstick gankit's speed is measured against: the standard architecture for 64x64
(G: z -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3 with transposed convs, BatchNorm,
ReLU, Tanh; D: the mirror with strided convs, BatchNorm except on the input layer, LeakyReLU(0.2),
a sigmoid output), Adam(2e-4, betas (0.5, 0.999)), BCE loss, fp32, NCHW, and the textbook step:
D on a real batch, D on a detached fake batch, D update; then G through D with "real" labels,
G update; losses read back every step as most training scripts do.
"""

from __future__ import annotations

import torch
from torch import nn


def _generator(nz: int, ngf: int, nc: int, resolution: int) -> nn.Module:
    n = resolution.bit_length() - 3  # upsamplings after the 4x4 start
    widths = [ngf * 2 ** (n - 1 - i) for i in range(n)]
    layers = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(widths[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def _discriminator(ndf: int, nc: int, resolution: int) -> nn.Module:
    n = resolution.bit_length() - 3
    widths = [ndf * 2 ** i for i in range(n)]
    layers = [nn.Conv2d(nc, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
    return nn.Sequential(*layers)


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ReferenceDCGAN:
    def __init__(self, resolution: int = 64, nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3,
                 autocast_dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
        self.nz, self.device = nz, torch.device(device)
        self.G = _generator(nz, ngf, nc, resolution).to(self.device)
        self.D = _discriminator(ndf, nc, resolution).to(self.device)
        self.G.apply(_init)
        self.D.apply(_init)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.criterion = nn.BCELoss()
        self.autocast_dtype = autocast_dtype

    def _autocast(self):
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step(self, real: torch.Tensor) -> tuple[float, float]:
        b = real.shape[0]
        ones, zeros = torch.ones(b, device=self.device), torch.zeros(b, device=self.device)
        # D: maximise log D(x) + log(1 - D(G(z)))
        self.D.zero_grad()
        with self._autocast():
            out_real = self.D(real).view(-1)
        err_real = self.criterion(out_real.float(), ones)
        err_real.backward()
        noise = torch.randn(b, self.nz, 1, 1, device=self.device)
        with self._autocast():
            fake = self.G(noise)
            out_fake = self.D(fake.detach()).view(-1)
        err_fake = self.criterion(out_fake.float(), zeros)
        err_fake.backward()
        self.opt_d.step()
        # G: maximise log D(G(z))
        self.G.zero_grad()
        with self._autocast():
            out = self.D(fake).view(-1)
        err_g = self.criterion(out.float(), ones)
        err_g.backward()
        self.opt_g.step()
        return (err_real + err_fake).item(), err_g.item()
