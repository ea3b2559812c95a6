"""The world's requests for one replay, in time order, and their slots in a bank's space.

Clicks are spread over the cycles in proportion to the traffic's intensity
(the world's arrival process, evaluated per minute) or evenly (``flat``);
within a cycle they are drawn from the same piecewise-constant intensity and
sorted, then :meth:`World.draw_at` says who is behind each one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_DOMAINS
from clickrouter.sim.population import Draw
from clickrouter.sim.world import World

STEP_SECONDS = 60.0


class TrafficPlan:
    """How many requests each cycle gets, and where in its span they fall."""

    def __init__(self, world: World, start: float, edges: np.ndarray, clicks: int, shape: str):
        self.world = world
        self.edges = edges  # cycle boundaries, simulated epoch seconds
        grid = np.arange(start, edges[-1], STEP_SECONDS)
        self.grid = grid
        if shape == "flat":
            self.weight = np.ones(len(grid))
        else:
            self.weight = world.timeline.intensity((grid * 1000).astype(np.int64))
        cycle = np.searchsorted(edges, grid, side="right") - 1
        share = np.bincount(cycle, weights=self.weight, minlength=len(edges) - 1)
        self.counts = _apportion(clicks, share / share.sum())
        self._cycle = cycle

    def draw(self, rng: np.random.Generator, index: int) -> Draw:
        """The requests of cycle ``index``, in time order."""
        cells = np.flatnonzero(self._cycle == index)
        weight = self.weight[cells]
        n = int(self.counts[index])
        cell = rng.choice(cells, size=n, p=weight / weight.sum())
        hi = float(self.edges[index + 1])
        ts = np.minimum(self.grid[cell] + rng.random(n) * STEP_SECONDS, np.nextafter(hi, 0))
        ts_ms = np.sort((ts * 1000).astype(np.int64))
        return self.world.draw_at(rng, ts_ms)


def _apportion(total: int, share: np.ndarray) -> np.ndarray:
    """``total`` split by ``share`` in whole numbers (largest remainders, deterministic)."""
    exact = total * share
    counts = np.floor(exact).astype(np.int64)
    rest = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


class SlotMap:
    """World vocabulary slots -> a bank's FeatureSpace slots, one lookup table per field."""

    def __init__(self, world: World, space: Any) -> None:
        vocab = world.audience.vocabulary.values
        self.tables = []
        for i, name in enumerate(space.fields):
            values = vocab[name] if name in CATEGORICAL_FIELDS else range(NUMERIC_DOMAINS[name])
            offset = int(space.offsets[i])
            self.tables.append(
                (name, np.array([offset + space.local_index(name, v) for v in values], np.intp))
            )

    def bank_slots(self, slots: dict[str, np.ndarray]) -> np.ndarray:
        """(n, n_fields) bank slots of world slots (what ``space.indices_many`` gives)."""
        return np.stack([table[slots[name]] for name, table in self.tables], axis=1)


def canonical_columns(world: World, slots: dict[str, np.ndarray]) -> dict[str, Any]:
    """Canonical profile columns (numpy) of world slots: categorical strings, hour, weekday."""
    vocab = world.audience.vocabulary.values
    out: dict[str, Any] = {
        name: np.asarray(vocab[name], dtype=object)[slots[name]] for name in CATEGORICAL_FIELDS
    }
    for name in NUMERIC_DOMAINS:
        out[name] = np.asarray(slots[name], dtype=np.int8)
    return out
