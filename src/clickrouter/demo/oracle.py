"""What each policy would have earned on the same requests, from the world's truth.

For a request with profile x, a policy that shows campaign c expects to earn
P_true(sale | x, c) x payout(c). The live system's value is that of the
campaign it chose (logged in the click event); the baselines need no second
run, only the truth of every eligible campaign:

* random: the mean over the eligible campaigns (uniform choice);
* best single campaign: the first eligible one in a fixed global ranking by
  average expected value over the campaign's eligible traffic (ranked on an
  independent week-spread sample of the world's traffic);
* oracle: the maximum over the eligible campaigns.

Scoring every campaign is (requests x campaigns) work, so it runs in chunks
in float32 (the tables are small; the products are what costs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clickrouter.sim.world import World

_CHUNK = 1024
RANKING_SAMPLE = 10_000


class OracleScorer:
    """Expected values of every campaign for chunks of profiles (catalogue order)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.tables = {f: t.astype(np.float32) for f, t in world.truth.tables.items()}
        self.intercept = world.truth.intercept.astype(np.float32)
        self.payouts = world.payouts.astype(np.float32)

    def chunk_values(self, slots: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(expected values (m, n) float32, eligibility (m, n) bool) for m profiles."""
        logits = np.broadcast_to(self.intercept, (len(slots["country"]), len(self.intercept)))
        logits = logits + self.tables["country"][slots["country"]]
        for name, table in self.tables.items():
            if name != "country":
                logits += table[slots[name]]
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += 1.0
        values = self.payouts / logits
        return values, self.world.eligible_slots(slots)

    def chosen_values(self, profiles: list[dict[str, Any]], chosen: np.ndarray) -> np.ndarray:
        """Expected value of the chosen campaign (index) of each profile; (n,) float64."""
        if not profiles:
            return np.zeros(0)
        slots = self.world.slots_of(profiles)
        return self.world.true_proba_slots(slots, chosen) * self.world.payouts[chosen]

    def single_ranking(self, seed: int) -> np.ndarray:
        """Campaign rank (0 = best) by average expected value over its eligible traffic."""
        rng = np.random.default_rng([seed, 77])
        slots = self.world.audience.slots(self.world.draw_spread(rng, RANKING_SAMPLE))
        total = np.zeros(len(self.payouts))
        count = np.zeros(len(self.payouts))
        for lo in range(0, RANKING_SAMPLE, _CHUNK):
            values, eligible = self.chunk_values({f: v[lo : lo + _CHUNK] for f, v in slots.items()})
            total += np.where(eligible, values, 0).sum(axis=0)
            count += eligible.sum(axis=0)
        average = np.where(count > 0, total / np.maximum(count, 1), -1.0)
        rank = np.empty(len(average), dtype=np.int64)
        rank[np.argsort(-average, kind="stable")] = np.arange(len(average))
        return rank

    def baselines(self, profiles: list[dict[str, Any]], rank: np.ndarray) -> dict[str, np.ndarray]:
        """Per profile: expected value under random, best-single and oracle; (n,) each."""
        out = {k: np.zeros(len(profiles)) for k in ("random", "single", "oracle")}
        for lo in range(0, len(profiles), _CHUNK):
            part = profiles[lo : lo + _CHUNK]
            values, eligible = self.chunk_values(self.world.slots_of(part))
            n_eligible = np.maximum(eligible.sum(axis=1), 1)
            masked = np.where(eligible, values, 0)
            rows = slice(lo, lo + len(part))
            out["random"][rows] = masked.sum(axis=1) / n_eligible
            out["oracle"][rows] = masked.max(axis=1)
            first = np.where(eligible, rank[None, :], len(rank)).argmin(axis=1)
            out["single"][rows] = values[np.arange(len(part)), first]
        return out
