"""Training tricks that change what D sees or which labels it is given (seeds 000, 002, 004; Salimans et al.).

Each trick is off by default and driven by one `train.*` key; the training loop applies them in its
D and G phases. Label smoothing lives in the BCE loss (`losses.BCELoss.real_target`).

- instance noise: Gaussian noise on every D input (real and fake), its std annealed linearly from
  `train.instance_noise` to 0 over `train.instance_noise_epochs` epochs;
- noisy labels: with probability `train.label_swap` a D step uses swapped real/fake labels;
- top-k G updates (Sinha et al. 2020): G's loss counts only the k fakes D scores as most real, k
  shrinking from the whole batch by `train.topk_gamma` per epoch to the fraction `train.topk`;
- EMA: an exponential moving average of G's weights, used for samples and FID, with BatchNorm statistics
  measured on the EMA generator's own activations (`standing_stats`).
"""

from __future__ import annotations

import copy
import math

import torch

from gankit import distributed


def instance_noise_std(start: float, epochs_done: float, anneal_epochs: int) -> float:
    """Std of the instance noise after `epochs_done` (fractional) epochs: linear decay to 0."""
    if start <= 0:
        return 0.0
    return start * max(0.0, 1.0 - epochs_done / anneal_epochs)


def add_instance_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """x + N(0, std^2) per pixel, drawn for the global batch under DDP (distributed.per_sample)."""
    if std <= 0:
        return x
    noise = distributed.per_sample(lambda n: torch.randn(n, *x.shape[1:], device=x.device, dtype=x.dtype), x.shape[0])
    return x + std * noise


class NoisyLabels:
    """Decides, with probability `p`, that a D step swaps its real/fake labels; seeded and resumable."""

    def __init__(self, p: float, seed: int = 0):
        self.p = p
        self.rng = torch.Generator().manual_seed(seed + 777)

    def swap(self) -> bool:
        return self.p > 0 and float(torch.rand((), generator=self.rng)) < self.p

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])


def topk_count(batch: int, fraction: float, gamma: float, epochs_done: int) -> int:
    """k of a top-k G update after `epochs_done` epochs: the whole batch at first, x gamma per epoch, never
    below `fraction` of the batch (fraction 1: every fake counts, the classic update)."""
    return min(batch, max(math.ceil(batch * fraction), math.ceil(batch * gamma ** epochs_done)))


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor | None:
    """Indices of the k fakes D scores as most real (highest logit or critic value); None when k keeps all."""
    if k >= scores.shape[0]:
        return None
    return scores.detach().float().flatten().topk(k).indices


def ema_decay(decay: float, num_averaged: int) -> float:
    """The decay actually applied at the n-th update: ramped up as min(decay, (1 + n) / (10 + n)), so an EMA
    of a young run follows the model instead of staying at its random initialisation (0.999 would need
    thousands of steps to forget it)."""
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An EMA copy of `model` (weights and BatchNorm buffers), or None when decay is 0."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
        d = ema_decay(decay, int(num_averaged))
        return averaged * d + current * (1 - d)

    ema = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    ema.requires_grad_(False)
    return ema


def ema_weights(state: dict) -> dict:
    """The averaged generator's own state dict from `make_ema(...).state_dict()` (keys "module.*", "n_averaged")."""
    return {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}


def ema_sampler(G: torch.nn.Module, cfg) -> torch.nn.Module:
    """The EMA generator `G` as samples, FID and generator.safetensors use it: with `standing_stats` measured on
    the same seeded draws wherever it is built (train.seed + 4242, train.batch_size images a batch: its training
    and a checkpoint loaded later give the same network), or as it is with train.ema_standing_stats false."""
    if not cfg.train.ema_standing_stats:
        return G
    from gankit.models import sample_z

    g = torch.Generator().manual_seed(cfg.train.seed + 4242)  # its own stream: training's is untouched
    n, classes = cfg.train.batch_size, cfg.model.num_classes if cfg.model.arch == "acgan" else 0
    device = next(G.parameters()).device

    def draw():
        z = sample_z(n, cfg, "cpu", generator=g).to(device)
        labels = torch.randint(0, classes, (n,), generator=g).to(device) if classes else None
        return z, labels

    # G's dropout draws from the global streams in those passes: forked and seeded, so that training's streams are
    # untouched (a checkpoint's random state, saved before the sampler was built, resumed to other weights) and the
    # sampler is the same network wherever it is built; on an Apple GPU its one stream (index 0) is forked
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    mps = device.type == "mps"
    with torch.random.fork_rng(devices=[0] if mps else cuda, device_type="mps" if mps else "cuda"):
        torch.default_generator.manual_seed(cfg.train.seed + 4242)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(cfg.train.seed + 4242)
        if mps:
            torch.mps.manual_seed(cfg.train.seed + 4242)
        return standing_stats(G, draw)


def standing_stats(G: torch.nn.Module, draw, batches: int = 8) -> torch.nn.Module:
    """A frozen eval-mode copy of `G` whose BatchNorm statistics are those of its own activations: the
    running statistics are reset, then `batches` forward passes in train mode on `draw()` (the positional
    arguments of G) accumulate their plain average (BigGAN's "standing statistics", Brock et al. 2019).

    An EMA generator needs this: its averaged weights never ran, so the running statistics it carries
    (an average of the raw G's, which moved with it) describe a different network. `G` itself is not
    touched, so training and its checkpoints do not depend on when samples were drawn. Without
    BatchNorm, G is returned as it is.
    """
    def batch_norms(module: torch.nn.Module) -> list[torch.nn.Module]:
        return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    if not any(m.track_running_stats for m in batch_norms(G)):
        return G
    out = copy.deepcopy(G)
    norms = batch_norms(out)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    out.train()
    with torch.no_grad():
        for _ in range(batches):
            out(*draw())
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return out.eval().requires_grad_(False)
