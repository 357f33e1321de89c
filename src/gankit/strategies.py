"""Training strategies: who trains when.

A strategy turns each iteration into an explicit list of phases (the schedule is data, not nested
ifs in the loop): `Phase("D")` is one discriminator update on a fresh real batch, `Phase("G")` one
generator update. The training loop runs the phases in order and never needs editing for a new
strategy. Strategies keep their own state (counters, RNG) in `state_dict()` so resume continues
exactly.
"""

from __future__ import annotations

from typing import NamedTuple


class Phase(NamedTuple):
    net: str  # "D" or "G"
    swap: bool = False  # D phase with real/fake labels swapped (noisy labels)


class Strategy:
    """Base: subclasses implement `plan`. `observe` receives losses when the strategy asked for them."""

    name = "base"
    needs_losses = False  # True -> the loop passes D/G losses (a host sync) to `observe` every iteration

    def plan(self, iteration: int) -> list[Phase]:
        raise NotImplementedError

    def observe(self, d_loss: float | None, g_loss: float | None) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Classic(Strategy):
    """One D update then one G update every iteration (seed 000 "classic", DCGAN paper)."""

    name = "classic"

    def plan(self, iteration: int) -> list[Phase]:
        return [Phase("D"), Phase("G")]


def build_strategy(cfg) -> Strategy:
    if cfg.train.strategy == "classic":
        return Classic()
    raise ValueError(cfg.train.strategy)
