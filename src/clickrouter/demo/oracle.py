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

Scoring every offer is (requests x offers) work, so it runs in float32 (the
tables are small; the products are what costs): the campaign logits once per
campaign, spread to their offers, plus the page effects. :meth:`chunk_values`
returns the whole (requests x offers) matrices; :meth:`baseline_values`
computes the same values a few rows at a time with compiled kernels and
reduces them while they are in cache, which is what the reports use.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from clickrouter.sim.world import World

_CHUNK = 1024
# rows whose values are built, exponentiated and reduced together: (_BLOCK, n_offers)
# float32 stays in a core's cache between the three passes
_BLOCK = 16
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
        self._fused_tables()
        self._order_cache: tuple[np.ndarray, np.ndarray] | None = None

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
        when = None if ts is None else np.asarray(ts, dtype=np.float64)[: len(profiles)]
        return self.baseline_values(self.world.slots_of(profiles), when, rank)

    def baseline_values(
        self,
        slots: dict[str, np.ndarray],
        ts: np.ndarray | None,
        rank: np.ndarray,
        among: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """:data:`BASELINES` of m rows of world vocabulary slots; (m,) float64 each.

        The same floats as reducing :meth:`chunk_values`' matrices (the same
        float32 operations in the same order, the same numpy reductions), computed
        a block of rows at a time by compiled kernels while the block is in cache.
        ``among`` (bool per offer) adds ``oracle_reached``: the oracle's choice
        restricted to those offers (0 where none of them is eligible).
        """
        m = len(slots["country"])
        rows = _stacked_rows(slots, self._fields, self._row_offset, self._row_limit)
        page_rows = _stacked_rows(slots, self._page_fields, self._page_offset, self._page_limit)
        when = np.zeros(m) if ts is None else np.ascontiguousarray(ts, dtype=np.float64)
        if when.shape != (m,):
            raise ValueError(f"expected {m} times, got shape {when.shape}")
        order = self._rank_order(rank)
        n_offers = len(self.payouts)
        out = np.zeros((len(BASELINES), m))
        restricted = np.zeros(m)
        keep = None if among is None else np.asarray(among, dtype=np.float32)
        block = np.empty((min(_BLOCK, m), n_offers), dtype=np.float32)
        eligible = np.empty(block.shape, dtype=np.bool_)
        counts = np.empty(len(block), dtype=np.int64)
        world = self.world
        for lo in range(0, m, _BLOCK):
            hi = min(lo + _BLOCK, m)
            values, ok, n = block[: hi - lo], eligible[: hi - lo], counts[: hi - lo]
            _negated_logits(
                rows[lo:hi], self.intercept, self._stacked, self._offer_campaign,
                self._lift, page_rows[lo:hi], self._page_stacked, values,
            )  # fmt: skip
            np.exp(values, out=values)
            _masked_values(
                values, slots["country"][lo:hi], slots["os"][lo:hi], when[lo:hi], ts is not None,
                self._active, self._country_ok, self._os_ok, self._schedule, self.payouts,
                order, ok, n, out[1, lo:hi],
            )  # fmt: skip
            # numpy's own reductions of the masked values: chunk_values' sums and maxima
            out[0, lo:hi] = values.sum(axis=1) / np.maximum(n, 1)
            best = values.argmax(axis=1)
            out[4, lo:hi] = values[np.arange(hi - lo), best]
            _campaign_pages(
                values, ok, best, world.offer_campaign, world.offer_start, world.offer_count,
                out[2, lo:hi], out[3, lo:hi],
            )  # fmt: skip
            if keep is not None:
                restricted[lo:hi] = (values * keep).max(axis=1) * (n > 0)
            out[:, lo:hi] *= n > 0  # no eligible offer: worth 0 under every policy
        found = dict(zip(BASELINES, out, strict=True))
        if keep is not None:
            found["oracle_reached"] = restricted
        return found

    def _rank_order(self, rank: np.ndarray) -> np.ndarray:
        """Offers by rank (ties by index): the first eligible one is the ``single`` choice."""
        rank = np.asarray(rank)
        if rank.shape != (len(self.payouts),):
            raise ValueError(f"a rank per offer expected, got shape {rank.shape}")
        cached = self._order_cache
        if cached is None or not np.array_equal(cached[0], rank):
            cached = (rank.copy(), np.argsort(rank, kind="stable").astype(np.int64))
            self._order_cache = cached
        return cached[1]

    def _fused_tables(self) -> None:
        """The float32 tables stacked for the kernels, in :meth:`chunk_values`' order."""
        world = self.world
        self._fields = ["country", *(f for f in self.tables if f != "country")]
        sizes = [len(self.tables[f]) for f in self._fields]
        self._stacked = np.ascontiguousarray(np.concatenate([self.tables[f] for f in self._fields]))
        self._row_offset = np.cumsum([0, *sizes[:-1]])
        self._row_limit = np.array(sizes)
        n_offers = len(self.payouts)
        self._page_fields = list(self.page_tables)
        page_sizes = [len(self.page_tables[f]) for f in self._page_fields]
        parts = [self.page_tables[f] for f in self._page_fields]
        self._page_stacked = np.ascontiguousarray(
            np.concatenate(parts) if parts else np.zeros((0, n_offers), dtype=np.float32)
        )
        self._page_offset = np.cumsum([0, *page_sizes[:-1]]).astype(np.int64)
        self._page_limit = np.array(page_sizes, dtype=np.int64)
        # one page per campaign: no take, no lift (an empty lift adds nothing)
        self._offer_campaign = (
            np.arange(0, dtype=np.int64) if self.offer_campaign is None else self.offer_campaign
        )
        self._lift = np.zeros(0, np.float32) if self.page_lift is None else self.page_lift
        # the world's targeting tables, row-major: a row per country (os) is read per request
        self._active = np.ascontiguousarray(world.active)
        self._country_ok = np.ascontiguousarray(world.country_ok)
        self._os_ok = np.ascontiguousarray(world.os_ok)
        pages = world.pages
        self._schedule = (
            np.array(pages.launch_offer, dtype=np.int64),
            np.array(pages.launch_ts, dtype=np.float64),
            np.array(pages.retire_offer, dtype=np.int64),
            np.array(pages.retire_ts, dtype=np.float64),
        )


def _stacked_rows(
    slots: dict[str, np.ndarray], fields: list[str], offset: np.ndarray, limit: np.ndarray
) -> np.ndarray:
    """(m, len(fields)) rows of a stacked table; a slot outside its field's table is refused
    (the kernels do not check bounds)."""
    m = len(slots["country"])
    out = np.empty((m, len(fields)), dtype=np.int64)
    for k, name in enumerate(fields):
        column = np.asarray(slots[name])
        if len(column) != m:
            raise ValueError(f"slots of {name!r}: {len(column)} rows, expected {m}")
        if m and (column.min() < 0 or column.max() >= limit[k]):
            raise ValueError(f"slots of {name!r} outside the world's vocabulary")
        out[:, k] = column
        out[:, k] += offset[k]
    return out


# error_model="numpy": no zero-division check per division (the divisors are >= 1), which
# is what lets LLVM vectorise the loops that divide
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _negated_logits(
    rows: np.ndarray,
    intercept: np.ndarray,
    stacked: np.ndarray,
    offer_campaign: np.ndarray,
    lift: np.ndarray,
    page_rows: np.ndarray,
    page_stacked: np.ndarray,
    out: np.ndarray,
) -> None:
    """Minus every offer's logit for each row, in float32, adding in the order
    :meth:`OracleScorer.chunk_values` adds (so the results are the same floats).

    rows: (m, n_fields) rows of ``stacked`` (country's first); offer_campaign:
    each offer's campaign, or empty when offers are campaigns; lift: (n_offers,)
    or empty; page_rows: (m, n_page_fields) rows of ``page_stacked``; out: (m, n_offers).
    """
    campaign = np.empty(intercept.shape[0], dtype=np.float32)
    expand = offer_campaign.shape[0] > 0
    for i in range(rows.shape[0]):
        line = out[i]
        _campaign_logits(rows[i], intercept, stacked, campaign if expand else line)
        if expand:
            for j in range(line.shape[0]):
                line[j] = campaign[offer_campaign[j]]
        if lift.shape[0] > 0:
            for j in range(line.shape[0]):
                line[j] += lift[j]
        last = page_rows.shape[1] - 1
        for k in range(last):
            table = page_stacked[page_rows[i, k]]
            for j in range(line.shape[0]):
                line[j] += table[j]
        if last < 0:
            for j in range(line.shape[0]):
                line[j] = -line[j]
        else:  # the last page field and the sign in one pass
            table = page_stacked[page_rows[i, last]]
            for j in range(line.shape[0]):
                line[j] = -(line[j] + table[j])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _campaign_logits(
    rows: np.ndarray, intercept: np.ndarray, stacked: np.ndarray, out: np.ndarray
) -> None:
    """intercept + each field's row of ``stacked``, added in field order; out: (n_campaigns,)."""
    if rows.shape[0] == 7:
        # the canonical profile: one pass reading the seven rows (the same sums in the
        # same order as field by field, left to right)
        r0, r1, r2, r3 = stacked[rows[0]], stacked[rows[1]], stacked[rows[2]], stacked[rows[3]]
        r4, r5, r6 = stacked[rows[4]], stacked[rows[5]], stacked[rows[6]]
        for c in range(out.shape[0]):
            out[c] = intercept[c] + r0[c] + r1[c] + r2[c] + r3[c] + r4[c] + r5[c] + r6[c]
        return
    first = stacked[rows[0]]
    for c in range(out.shape[0]):
        out[c] = intercept[c] + first[c]
    for k in range(1, rows.shape[0]):
        table = stacked[rows[k]]
        for c in range(out.shape[0]):
            out[c] += table[c]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _masked_values(
    exp_neg: np.ndarray,
    country: np.ndarray,
    os_slot: np.ndarray,
    ts: np.ndarray,
    timed: bool,
    active: np.ndarray,
    country_ok: np.ndarray,
    os_ok: np.ndarray,
    schedule: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    payouts: np.ndarray,
    order: np.ndarray,
    eligible: np.ndarray,
    counts: np.ndarray,
    single: np.ndarray,
) -> None:
    """Turn exp(-logit) (m, n_offers) into the expected values of eligible offers, 0
    elsewhere (in place), with each row's eligibility, eligible count, and the value
    of its first eligible offer in ``order`` (0 if none).

    Eligibility is :meth:`World.eligible_slots`' (active, both targetings, and
    with ``timed`` the page schedule, whose pages a world lists once each).
    """
    launch_offer, launch_ts, retire_offer, retire_ts = schedule
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in range(exp_neg.shape[0]):
        ok, row = eligible[i], exp_neg[i]
        ok_country, ok_os = country_ok[country[i]], os_ok[os_slot[i]]
        for j in range(row.shape[0]):
            ok[j] = active[j] & ok_country[j] & ok_os[j]
        if timed:
            for k in range(launch_offer.shape[0]):
                if not ts[i] >= launch_ts[k]:
                    ok[launch_offer[k]] = False
            for k in range(retire_offer.shape[0]):
                if not ts[i] < retire_ts[k]:
                    ok[retire_offer[k]] = False
        n = 0
        for j in range(row.shape[0]):
            value = payouts[j] / (row[j] + one)
            row[j] = value if ok[j] else zero
            n += ok[j]
        counts[i] = n
        single[i] = 0.0
        for j in order:
            if ok[j]:
                single[i] = row[j]
                break


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _campaign_pages(
    values: np.ndarray,
    eligible: np.ndarray,
    best: np.ndarray,
    offer_campaign: np.ndarray,
    offer_start: np.ndarray,
    offer_count: np.ndarray,
    first: np.ndarray,
    mean: np.ndarray,
) -> None:
    """Per row, the value of the first eligible page of the best offer's campaign and
    the mean over its eligible pages (summed in float64, in page order); 0 if none."""
    for i in range(values.shape[0]):
        c = offer_campaign[best[i]]
        total, pages = 0.0, 0
        first[i] = 0.0
        for j in range(offer_start[c], offer_start[c] + offer_count[c]):
            if eligible[i, j]:
                if pages == 0:
                    first[i] = values[i, j]
                total += values[i, j]
                pages += 1
        mean[i] = total / max(pages, 1)
