"""Training strategies: who trains when.

A strategy turns each iteration into an explicit list of phases (the schedule is data, not nested
ifs in the loop): `Phase("D")` is one discriminator update on a fresh real batch, `Phase("G")` one
generator update. The training loop runs the phases in order and never needs editing for a new
strategy. Strategies keep their own state (counters, RNG) in `state_dict()` so resume continues
exactly.

- classic (seed 000, DCGAN paper): D then G, every iteration.
- monitored (seed 000): D is updated only when D_loss > factor * G_loss (factor 0.8), G always.
- boost (seed 000 "boost and noisy"): a k ~ U(0, 1) per iteration decides (see `Boost`).
- critic (WGAN, seeds 000/004): n_critic D steps per G step, and `boost` D steps in the first
  `boost_first` G steps and every `boost_every`-th G step (seed 004: 100, 25, 500).
- alternating (seed 001): G for a whole epoch's worth of steps, then D for all but one of them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Phase(NamedTuple):
    net: str  # "D" or "G"
    swap: bool = False  # D phase with real/fake labels swapped (noisy labels)
    gated: bool = False  # D phase whose update the strategy may refuse after seeing its loss (`allow_update`)


D, G, D_SWAP, D_GATED = Phase("D"), Phase("G"), Phase("D", swap=True), Phase("D", gated=True)


class Strategy:
    """Base: subclasses implement `plan`; gated D phases ask `allow_update` with the current losses."""

    name = "base"
    reads_losses = False  # True: the loop reads the G loss from the device every iteration (a host sync)

    def plan(self, iteration: int) -> list[Phase]:
        raise NotImplementedError

    def allow_update(self, d_loss: float, last_g_loss: float | None) -> bool:
        return True

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Classic(Strategy):
    """One D update then one G update every iteration."""

    name = "classic"

    def plan(self, iteration: int) -> list[Phase]:
        return [D, G]


class Monitored(Strategy):
    """Seed 000 "monitored": D is optimised only if D_loss > factor * G_loss, so it cannot overpower G.

    The G loss compared is the last one measured (the previous iteration's); the first D step always updates.
    The loop reads the D loss from the device for the comparison (one host sync per iteration).
    """

    name = "monitored"
    reads_losses = True

    def __init__(self, factor: float = 0.8):
        self.factor = factor

    def plan(self, iteration: int) -> list[Phase]:
        return [D_GATED, G]

    def allow_update(self, d_loss: float, last_g_loss: float | None) -> bool:
        return last_g_loss is None or d_loss > self.factor * last_g_loss


class Boost(Strategy):
    """Seed 000 "boost and noisy": each iteration draws k ~ U(0, 1) and

    - k < 1e-4:          this and the next `window - 1` iterations train only G (a G boost);
    - 1e-4 <= k < 1e-3:  this and the next `window - 1` iterations train only D, true labels (a D boost);
    - 1e-3 <= k < 0.93:  D with true labels, then G;
    - k >= 0.93:         D with swapped labels (real labelled fake, fake labelled real), then G.

    No new k is drawn during a boost. The draws come from the strategy's own seeded generator, saved
    with the checkpoint.
    """

    name = "boost"
    G_ONLY, D_ONLY, SWAP = 1e-4, 1e-3, 0.93

    def __init__(self, window: int = 100, seed: int = 0):
        self.window = window
        self.rng = torch.Generator().manual_seed(seed + 4242)
        self.boost: str | None = None  # "G" or "D" while a boost runs
        self.left = 0  # iterations left in the current boost

    def draw(self) -> float:
        return float(torch.rand((), generator=self.rng, dtype=torch.float64))

    def plan(self, iteration: int) -> list[Phase]:
        if self.left == 0:
            k = self.draw()
            if k < self.G_ONLY:
                self.boost, self.left = "G", self.window
            elif k < self.D_ONLY:
                self.boost, self.left = "D", self.window
            else:
                return [D_SWAP if k >= self.SWAP else D, G]
        self.left -= 1
        return [G] if self.boost == "G" else [D]

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "boost": self.boost, "left": self.left}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        self.boost, self.left = state["boost"], state["left"]


class Critic(Strategy):
    """WGAN schedule: `n_critic` critic steps per G step; `boost` critic steps for the first `boost_first`
    G steps and every `boost_every`-th G step (seed 004, after the WGAN paper: 100, 25, 500; 0 = no boost)."""

    name = "critic"

    def __init__(self, n_critic: int = 5, boost: int = 0, boost_first: int = 25, boost_every: int = 500):
        self.n_critic, self.boost, self.boost_first, self.boost_every = n_critic, boost, boost_first, boost_every

    def critic_steps(self, g_step: int) -> int:
        if self.boost and (g_step < self.boost_first or g_step % self.boost_every == 0):
            return self.boost
        return self.n_critic

    def plan(self, iteration: int) -> list[Phase]:
        return [D] * self.critic_steps(iteration) + [G]


class Alternating(Strategy):
    """Seed 001's loop: each epoch, `steps` G updates ("Training generator": one per batch of the epoch), then
    `steps - 1` D updates on the epoch's batches ("dataset.take(num_steps_per_epoch-1)"), and at least one (an epoch
    of one batch would otherwise never train D, nor use a real batch and end); one phase per iteration, so a cycle is
    steps + max(steps - 1, 1) iterations and consumes its D updates' real batches."""

    name = "alternating"

    def __init__(self, steps: int):
        self.steps = max(1, steps)
        self.cycle = self.steps + max(self.steps - 1, 1)

    def plan(self, iteration: int) -> list[Phase]:
        return [G] if iteration % self.cycle < self.steps else [D]


def build_strategy(cfg, steps_per_epoch: int = 1) -> Strategy:
    """The strategy `train.strategy` names; `steps_per_epoch` (batches in an epoch) sets `alternating`'s cycle."""
    t = cfg.train
    if t.strategy == "classic":
        return Classic()
    if t.strategy == "monitored":
        return Monitored(t.monitor_factor)
    if t.strategy == "boost":
        return Boost(t.boost_window, t.seed)
    if t.strategy == "critic":
        return Critic(t.n_critic, t.critic_boost, t.critic_boost_first, t.critic_boost_every)
    if t.strategy == "alternating":
        return Alternating(steps_per_epoch)
    raise ValueError(t.strategy)


def lr_factor(decay: str, start: float, progress: float) -> float:
    """Learning-rate multiplier at `progress` (0 at the start of the run, 1 at its end): 1 throughout for
    "none"; for "linear", 1 until `start`, then falling linearly to 0 at the end (the schedule that does
    best for a fixed budget of steps or time: Li et al. 2020, "Budgeted training")."""
    if decay == "none" or progress <= start:
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - start))
