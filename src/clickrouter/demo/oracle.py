"""What each policy would have earned on the same requests, from the world's truth.

For a request with profile x, a policy that shows offer o (a campaign and one
of its landing pages) expects to earn P_true(sale | x, o) x payout(o). The live
system's value is that of the offer it chose (logged in the click event); the
baselines need no second run, only the truth of every eligible offer:

* ``random``: the mean over the eligible offers (uniform choice);
* ``single``: the first eligible offer in a fixed global ranking by average
  expected value over the offer's eligible traffic (ranked on an independent
  week-spread sample of the world's traffic);
* ``campaign_first_page``: the oracle's campaign (the campaign of the best
  eligible offer), shown with its first eligible page in catalogue order;
* ``campaign_random_page``: the oracle's campaign with a uniformly random
  eligible page of it (the mean over those pages);
* ``oracle``: the maximum over the eligible offers.

The two campaign baselines separate what choosing the campaign earns from
what choosing its page adds; with one page per campaign both equal the oracle.
A request no offer is eligible for is worth 0 under every policy.

Scoring every offer is (requests x offers) work, so it runs in chunks in
float32 (the tables are small; the products are what costs): the campaign
logits once per campaign, spread to their offers, plus the page effects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clickrouter.sim.world import World

_CHUNK = 1024
RANKING_SAMPLE = 10_000
BASELINES = ("random", "single", "campaign_first_page", "campaign_random_page", "oracle")


class OracleScorer:
    """Expected values of every offer for chunks of profiles (offer order, see ``World``)."""

    def __init__(self, world: World) -> None:
        truth = world.truth
        self.world = world
        self.tables = {f: t.astype(np.float32) for f, t in truth.tables.items()}
        self.intercept = truth.intercept.astype(np.float32)
        self.offer_campaign = None if truth.one_page else truth.offer_campaign
        self.page_lift = None if truth.page_lift is None else truth.page_lift.astype(np.float32)
        self.page_tables = {f: t.astype(np.float32) for f, t in truth.page_tables.items()}
        self.payouts = world.payouts.astype(np.float32)
        self.pages_per_campaign = int(world.offer_count.max())

    def chunk_values(
        self, slots: dict[str, np.ndarray], ts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(expected values (m, n_offers) float32, eligibility (m, n_offers) bool) for m profiles.

        ``ts`` (epoch seconds per profile) applies the world's page schedule.
        """
        logits = np.broadcast_to(self.intercept, (len(slots["country"]), len(self.intercept)))
        logits = logits + self.tables["country"][slots["country"]]
        for name, table in self.tables.items():
            if name != "country":
                logits += table[slots[name]]
        if self.offer_campaign is not None:
            # take keeps rows contiguous (fancy column indexing would not: slow adds after)
            logits = np.take(logits, self.offer_campaign, axis=1)
        if self.page_lift is not None:
            logits += self.page_lift
        for name, table in self.page_tables.items():
            logits += table[slots[name]]
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += 1.0
        values = self.payouts / logits
        return values, self.world.eligible_slots(slots, ts)

    def chosen_values(self, profiles: list[dict[str, Any]], chosen: np.ndarray) -> np.ndarray:
        """Expected value of the chosen offer (index) of each profile; (n,) float64.

        An index of -1 (an offer the world does not have, see
        :meth:`World.offer_index`) is worth 0: nothing sells there.
        """
        if not profiles:
            return np.zeros(0)
        chosen = np.asarray(chosen, dtype=np.int64)
        known = chosen >= 0
        offer = np.where(known, chosen, 0)
        slots = self.world.slots_of(profiles)
        value = self.world.true_proba_slots(slots, offer) * self.world.payouts[offer]
        return np.where(known, value, 0.0)

    def single_ranking(self, seed: int) -> np.ndarray:
        """Offer rank (0 = best) by average expected value over its eligible traffic."""
        rng = np.random.default_rng([seed, 77])
        draw = self.world.draw_spread(rng, RANKING_SAMPLE)
        slots, ts = self.world.audience.slots(draw), draw.ts_ms / 1000.0
        total = np.zeros(len(self.payouts))
        count = np.zeros(len(self.payouts))
        for lo in range(0, RANKING_SAMPLE, _CHUNK):
            part = {f: v[lo : lo + _CHUNK] for f, v in slots.items()}
            values, eligible = self.chunk_values(part, ts[lo : lo + _CHUNK])
            total += np.where(eligible, values, 0).sum(axis=0)
            count += eligible.sum(axis=0)
        average = np.where(count > 0, total / np.maximum(count, 1), -1.0)
        rank = np.empty(len(average), dtype=np.int64)
        rank[np.argsort(-average, kind="stable")] = np.arange(len(average))
        return rank

    def baselines(
        self, profiles: list[dict[str, Any]], rank: np.ndarray, ts: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per profile, the expected value under each of :data:`BASELINES`; (n,) each.

        ``ts`` (epoch seconds per profile) applies the world's page schedule.
        """
        out = {k: np.zeros(len(profiles)) for k in BASELINES}
        for lo in range(0, len(profiles), _CHUNK):
            part = profiles[lo : lo + _CHUNK]
            when = None if ts is None else np.asarray(ts)[lo : lo + len(part)]
            values, eligible = self.chunk_values(self.world.slots_of(part), when)
            for name, value in self.chunk_baselines(values, eligible, rank).items():
                out[name][lo : lo + len(part)] = value
        return out

    def chunk_baselines(
        self, values: np.ndarray, eligible: np.ndarray, rank: np.ndarray
    ) -> dict[str, np.ndarray]:
        """:data:`BASELINES` for the rows of one :meth:`chunk_values` answer; (m,) each."""
        rows = np.arange(len(values))
        n_eligible = eligible.sum(axis=1)
        some = n_eligible > 0
        masked = np.where(eligible, values, 0)
        # values are > 0 (P(sale) > 0, payouts > 0): the masked maximum is an eligible offer
        best = masked.argmax(axis=1)
        first = np.where(eligible, rank[None, :], len(rank)).argmin(axis=1)
        first_page, random_page = self._campaign_pages(values, eligible, best)
        chosen = {
            "random": masked.sum(axis=1) / np.maximum(n_eligible, 1),
            "single": values[rows, first],
            "campaign_first_page": first_page,
            "campaign_random_page": random_page,
            "oracle": values[rows, best],
        }
        return {name: np.where(some, value, 0.0) for name, value in chosen.items()}

    def _campaign_pages(
        self, values: np.ndarray, eligible: np.ndarray, best: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Value of the first eligible page of each best offer's campaign, and their mean."""
        world, width = self.world, self.pages_per_campaign
        campaign = world.offer_campaign[best]
        k = np.arange(width)[None, :]
        # a campaign's offers are contiguous: columns start .. start + count - 1
        cols = np.minimum(world.offer_start[campaign][:, None] + k, values.shape[1] - 1)
        rows = np.arange(len(values))[:, None]
        ok = eligible[rows, cols] & (k < world.offer_count[campaign][:, None])
        page_values = values[rows, cols]
        first = ok.argmax(axis=1)
        mean = np.where(ok, page_values, 0).sum(axis=1, dtype=np.float64) / np.maximum(
            ok.sum(axis=1), 1
        )
        return page_values[rows[:, 0], first], mean
