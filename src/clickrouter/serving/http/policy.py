"""Decision policies: which eligible campaign to show, and with what propensity.

The bank ranks eligible campaigns by expected value (P(sale) x payout). A
policy turns that into the campaign actually shown and the probability with
which the policy would have shown it (the propensity). Logging the true
propensity lets the trainer and analysts evaluate other policies off-policy
(inverse propensity scoring) on the logged clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from clickrouter.errors import InvalidInput

POLICIES = ("greedy", "epsilon-greedy")


@dataclass(frozen=True)
class Choice:
    """Bank column of the campaign shown and the propensity of that choice."""

    column: int
    propensity: float


class Policy(Protocol):
    name: str

    def choose(self, best: int, mask: np.ndarray, n_eligible: int) -> Choice:
        """Pick a column given the greedy column ``best`` and the eligibility ``mask``.

        mask: (n_campaigns,) bool; ``mask[best]`` is True and ``mask.sum() == n_eligible``.
        """
        ...


class Greedy:
    """Always the best expected value: a deterministic choice, propensity 1."""

    name = "greedy"

    def choose(self, best: int, mask: np.ndarray, n_eligible: int) -> Choice:
        return Choice(best, 1.0)


class EpsilonGreedy:
    """With probability ``epsilon`` a uniformly random eligible campaign, else the best.

    Propensity of the greedy arm: (1 - epsilon) + epsilon / n_eligible; of any
    other eligible arm: epsilon / n_eligible.
    """

    name = "epsilon-greedy"

    def __init__(self, epsilon: float, *, seed: int | None = None) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidInput(f"setting 'epsilon': expected a number in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.rng_ = np.random.default_rng(seed)

    def choose(self, best: int, mask: np.ndarray, n_eligible: int) -> Choice:
        explore = self.epsilon / n_eligible
        if self.rng_.random() >= self.epsilon:
            return Choice(best, 1.0 - self.epsilon + explore)
        column = _nth_true(mask, int(self.rng_.integers(n_eligible)))
        greedy_extra = 1.0 - self.epsilon if column == best else 0.0
        return Choice(column, greedy_extra + explore)


def _nth_true(mask: np.ndarray, n: int) -> int:
    return int(np.flatnonzero(mask)[n])


def make_policy(name: str, epsilon: float, *, seed: int | None = None) -> Policy:
    """The policy called ``name`` (see :data:`POLICIES`)."""
    if name == "greedy":
        return Greedy()
    if name == "epsilon-greedy":
        return EpsilonGreedy(epsilon, seed=seed)
    raise InvalidInput(f"setting 'policy': expected one of {list(POLICIES)}, got {name!r}")
