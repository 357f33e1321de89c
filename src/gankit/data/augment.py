"""Differentiable augmentation for small datasets (DiffAugment, Zhao et al. 2020) with an adaptive
probability (the ADA heuristic of Karras et al. 2020).

The same random augmentation family is applied to every image the discriminator sees, real and
fake, in D and G phases alike, so D cannot overfit the few real images and G still gets gradients
through the augmentation. Each op runs on the whole batch on the device (no per-image Python).

- color: brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the pixel's gray), contrast
  (x U(0.5, 1.5) around the image mean);
- translation: shift by up to 1/8 of the size, zero padding;
- cutout: a zero square of half the size at a random place.

`AdaptiveP` raises the probability when D is overconfident on real images (the mean sign of its
real outputs above `target`) and lowers it otherwise, every `interval` D steps.
"""

from __future__ import annotations

import torch

from gankit import distributed

OPS = ("color", "translation", "cutout")


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """U(0, 1) per image of the batch, drawn for the global batch under DDP (distributed.per_sample)."""
    return distributed.per_sample(lambda n: torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype), x.shape[0])


def _randint(low: int, high: int, n: int, device) -> torch.Tensor:
    return distributed.per_sample(lambda m: torch.randint(low, high, (m, 1, 1), device=device), n)


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + (_per_sample(x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_per_sample(x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = _randint(-sh, sh + 1, n, x.device)
    dx = _randint(-sw, sw + 1, n, x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row for every output row
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx
    valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    ys, xs = ys.clamp(0, h - 1).expand(n, h, w), xs.clamp(0, w - 1).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    out = x.permute(0, 2, 3, 1)[batch, ys, xs].permute(0, 3, 1, 2)
    return out * valid.to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = _randint(0, h + (1 - ch % 2), n, x.device)
    cx = _randint(0, w + (1 - cw % 2), n, x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - ch // 2, cx - cw // 2
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_FUNCS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """Apply the listed ops, each to a random subset of the batch with probability `p`."""

    def __init__(self, policy: str | list[str] = "color,translation,cutout", p: float = 1.0):
        ops = policy.split(",") if isinstance(policy, str) else list(policy)
        unknown = [o for o in ops if o and o not in _FUNCS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}: choose from {', '.join(OPS)}")
        self.ops = [o for o in ops if o]
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or not self.ops:
            return x
        for op in self.ops:
            y = _FUNCS[op](x)
            if self.p >= 1:
                x = y
            else:
                keep = (_per_sample(x) < self.p).to(x.dtype)
                x = keep * y + (1 - keep) * x
        return x


class AdaptiveP:
    """ADA's controller: p moves by `speed` per `interval` D steps towards keeping E[sign D(real)] at `target`.

    The signs are summed on the device; the host reads them once per interval.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed: float = 0.01, p: float = 0.0):
        self.target, self.interval, self.speed, self.p = target, interval, speed, p
        self._sum: torch.Tensor | None = None
        self._n = 0

    def observe(self, real_out: torch.Tensor) -> None:
        s = real_out.detach().float().sign().mean()
        self._sum = s if self._sum is None else self._sum + s
        self._n += 1
        if self._n >= self.interval:
            rt = float(distributed.mean_over_ranks(self._sum)) / self._n  # all DDP ranks keep the same p
            self.p = min(1.0, max(0.0, self.p + (self.speed if rt > self.target else -self.speed)))
            self._sum, self._n = None, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "n": self._n, "sum": float(self._sum) if self._sum is not None else 0.0}

    def load_state_dict(self, state: dict) -> None:
        self.p, self._n = state["p"], state["n"]
        self._sum = torch.tensor(state["sum"]) if self._n else None
