"""Sampling from a trained run: load its generator (safetensors or checkpoint) and draw images."""

from __future__ import annotations

from pathlib import Path

import torch

from gankit.checkpoint import load_checkpoint, load_generator, load_latest_checkpoint
from gankit.config import SEED_RANGE, Config, from_dict
from gankit.device import resolve_device
from gankit.errors import GankitError, RunError
from gankit.models import build_generator, sample_z


class LoadedGenerator:
    def __init__(self, G: torch.nn.Module, cfg: Config, class_names: list[str], device: torch.device):
        self.G, self.cfg, self.class_names, self.device = G, cfg, class_names, device

    @torch.no_grad()
    def sample(self, n: int, seed: int, batch_size: int = 256) -> torch.Tensor:
        """n images in [-1, 1] (NCHW, float32, on CPU), the same for the same seed on any device."""
        check_seed(seed)
        g = torch.Generator().manual_seed(seed)
        z = sample_z(n, self.cfg, "cpu", generator=g)
        out = [self.G(chunk.to(self.device)).float().cpu() for chunk in z.split(batch_size)]
        return torch.cat(out)


def check_seed(seed: int) -> None:
    """Noise seeds share the training seed's range (config.SEED_RANGE)."""
    lo, hi = SEED_RANGE
    if not lo <= seed <= hi:
        raise GankitError(f"--seed must be a whole number from {lo} to {hi}, got {seed}")


def _config_of(d: dict) -> tuple[Config, list[str]]:
    d = dict(d)
    class_names = list(d.pop("class_names", []) or [])
    return from_dict(d), class_names


def load_run_generator(run: str | Path, checkpoint: str | Path | None = None, device: str = "auto") -> LoadedGenerator:
    """The generator of a run folder (its generator.safetensors) or of a given checkpoint / .safetensors file."""
    run = Path(run)
    state = None
    if checkpoint is None and run.is_file():
        checkpoint = run
    if checkpoint is None:
        if not run.is_dir():
            raise RunError(f"run folder '{run}' does not exist: pass a folder made by `gankit train`")
        checkpoint = run / "generator.safetensors"
        if not checkpoint.exists():
            found = load_latest_checkpoint(run / "checkpoints")
            if found is None:
                raise RunError(f"run folder '{run}' has no generator.safetensors or checkpoint yet: "
                               f"train it first (gankit train --run {run})")
            state, checkpoint = found
    checkpoint = Path(checkpoint)
    if checkpoint.suffix == ".safetensors":
        weights, meta = load_generator(checkpoint)
        cfg, class_names = _config_of(meta)
    else:
        state = state if state is not None else load_checkpoint(checkpoint)
        if "G" not in state or "config" not in state:
            raise RunError(f"'{checkpoint}' is not a gankit training checkpoint (it has no generator weights or config)")
        weights = state["G"]
        cfg, class_names = _config_of({**state["config"], "class_names": state.get("class_names", [])})
    dev = resolve_device(device)
    G = build_generator(cfg)
    try:
        G.load_state_dict(weights)
    except RuntimeError as e:
        raise RunError(f"weights in '{checkpoint}' do not fit the generator its config describes: {str(e).splitlines()[0]}") from None
    G.to(dev).eval()
    return LoadedGenerator(G, cfg, class_names, dev)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latent vectors for each t in [0, 1] (linear when they are parallel)."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    t = t[:, None]
    if omega.abs() < 1e-4:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@torch.no_grad()
def interpolate(gen: LoadedGenerator, seed_a: int, seed_b: int, steps: int) -> torch.Tensor:
    """`steps` images walking the latent sphere from seed_a's noise to seed_b's (float [-1, 1], NCHW, CPU)."""
    check_seed(seed_a)
    check_seed(seed_b)
    za = sample_z(1, gen.cfg, "cpu", generator=torch.Generator().manual_seed(seed_a))[0]
    zb = sample_z(1, gen.cfg, "cpu", generator=torch.Generator().manual_seed(seed_b))[0]
    z = slerp(za, zb, torch.linspace(0, 1, steps))
    return gen.G(z.to(gen.device)).float().cpu()
