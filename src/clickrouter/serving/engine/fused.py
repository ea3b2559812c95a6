"""One decision in one compiled pass: scores, eligibility and the top-k together.

The bank's general path calls three numba kernels and a few numpy operations per
request (probabilities, the eligibility mask, the ranking): with thousands of
offers each call re-streams arrays of the catalogue's size and pays its own
dispatch and temporaries. :class:`FusedDecider` makes one
compiled call that runs the bank's own kernels
(:func:`~clickrouter.serving.kernel.probabilities_one`,
:func:`~clickrouter.serving.kernel.top_expected_value`: the same values by
construction) around the eligibility of
:class:`~clickrouter.serving.targeting.Eligibility` (stacked rule tables).
Banks with models scored outside the compiled table (the generic pool) keep
the general path; see :func:`decider_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np

from clickrouter.errors import NoEligibleCampaign
from clickrouter.serving import kernel
from clickrouter.serving.bank import ModelBank

N_FIELDS = 7  # the canonical profile; the fused kernel reads exactly seven rows


@numba.njit(cache=True, nogil=True)
def _decide_one(
    table: np.ndarray,
    slots: np.ndarray,
    active: np.ndarray,
    targeting: np.ndarray,
    fields: np.ndarray,
    base: np.ndarray,
    payouts: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
) -> int:
    """Fill ``proba``, ``mask`` and ``best``; return how many offers are eligible.

    The columns are the bank's offers. targeting: (n_rule_rows, n_offers) bool,
    every targeted field's table stacked; the request selects row
    ``slots[fields[j]] + base[j]`` for targeted field j.
    best: the k best eligible columns, best first (the first min(k, n_eligible) are set).
    The bank's own kernels, called from compiled code: one dispatch instead of three,
    and only an int crosses back (no boxed array or tuple to build per request).
    """
    kernel.probabilities_one(table, slots, proba)
    for c in range(mask.shape[0]):
        mask[c] = active[c]
    for j in range(fields.shape[0]):
        rule = targeting[slots[fields[j]] + base[j]]
        for c in range(mask.shape[0]):
            mask[c] &= rule[c]
    order, n_eligible = kernel.top_expected_value(proba, payouts, mask, best.shape[0])
    best[: order.shape[0]] = order
    return n_eligible


@numba.njit(cache=True, nogil=True)
def _decide_many(
    table: np.ndarray,
    slots: np.ndarray,
    active: np.ndarray,
    targeting: np.ndarray,
    fields: np.ndarray,
    base: np.ndarray,
    payouts: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
    n_eligible: np.ndarray,
) -> None:
    """:func:`_decide_one` for each row of ``slots`` (n, 7); ``best`` (n, 1)."""
    for i in range(slots.shape[0]):
        n_eligible[i] = _decide_one(
            table, slots[i], active, targeting, fields, base, payouts, proba[i], mask[i], best[i]
        )


class FusedDecider:
    """The decision path of one all-compiled bank (tables laid out once per bank)."""

    def __init__(self, bank: ModelBank) -> None:
        self.bank = bank
        # a plain ndarray view of the (memory-mapped) table: numba types an exact
        # ndarray in its fast path, a subclass such as np.memmap costs ~4 us per call
        self.table = np.asarray(bank.assembly_.table)
        eligibility = bank.eligibility_
        self.active = np.ascontiguousarray(eligibility.active_)
        fields = sorted(eligibility.tables_)
        tables = [eligibility.tables_[f] for f in fields]
        n = len(bank.offers)
        self.targeting = np.ascontiguousarray(
            np.concatenate(tables) if tables else np.ones((1, n), dtype=bool)
        )
        # the row of the stacked table for field f is slots[f] + base[f]
        starts = np.cumsum([0] + [len(t) for t in tables])[:-1].astype(np.intp)
        self.fields = np.array(fields, dtype=np.intp)
        self.base = starts - bank.space.offsets[self.fields].astype(np.intp)
        self.payouts = np.ascontiguousarray(bank.payouts_)

    def decide(self, canonical: dict[str, Any], slots: np.ndarray, top: int) -> Ranking:
        """P(sale) per offer, the eligibility mask and the ``top`` best eligible columns.

        The same values as ``bank.predict_proba_slots``, ``bank.eligibility_.one``
        and ``bank.rank``.
        """
        n = len(self.payouts)
        proba = np.empty(n, dtype=np.float64)
        mask = np.empty(n, dtype=np.bool_)
        best = np.empty(max(top, 1), dtype=np.intp)
        n_eligible = _decide_one(
            self.table, slots, self.active, self.targeting, self.fields, self.base, self.payouts,
            proba, mask, best,
        )  # fmt: skip
        if n_eligible == 0:
            raise NoEligibleCampaign("no active campaign targets this request")
        return Ranking(proba, mask, best[:n_eligible].tolist(), n_eligible)

    def decide_many(
        self, slots: np.ndarray, canonical: Callable[[], list[dict[str, Any]]] | None = None
    ) -> Batch:
        """:meth:`decide` for many requests at once, without the ranking objects.

        slots: (n, 7) bank slots (``canonical``: not needed here, see
        :meth:`GeneralDecider.decide_many`). The same kernel per row as :meth:`decide`, so
        the same probabilities, eligibility and greedy column; a row with no
        eligible offer has ``n_eligible`` 0 (the live path answers it 404).
        """
        n, c = len(slots), len(self.payouts)
        proba = np.empty((n, c), dtype=np.float64)
        mask = np.empty((n, c), dtype=np.bool_)
        best = np.zeros((n, 1), dtype=np.intp)
        n_eligible = np.empty(n, dtype=np.int64)
        slots = np.ascontiguousarray(slots, dtype=np.intp)
        _decide_many(
            self.table, slots, self.active, self.targeting,
            self.fields, self.base, self.payouts, proba, mask, best, n_eligible,
        )  # fmt: skip
        return Batch(proba, mask, best[:, 0], n_eligible, slots)


class GeneralDecider:
    """The bank's own path, for banks that score some offers in the worker pool."""

    def __init__(self, bank: ModelBank) -> None:
        self.bank = bank

    def decide(self, canonical: dict[str, Any], slots: np.ndarray, top: int) -> Ranking:
        bank = self.bank
        proba = bank.predict_proba_slots([canonical], slots[None, :])[0]
        mask = bank.eligibility_.one(slots)
        columns, n_eligible = bank.rank(proba, mask, top)
        return Ranking(proba, mask, columns, n_eligible)

    def decide_many(
        self, slots: np.ndarray, canonical: Callable[[], list[dict[str, Any]]] | None = None
    ) -> Batch:
        """:meth:`decide` for many requests; ``canonical()`` gives their canonical
        profiles, which the generic pool's models read (required here)."""
        if canonical is None:
            raise ValueError("a bank with generic models needs the canonical profiles")
        bank = self.bank
        slots = np.asarray(slots, dtype=np.intp)
        proba = bank.predict_proba_slots(canonical(), slots)
        mask = bank.eligibility_.many(slots)
        best = np.zeros(len(slots), dtype=np.intp)
        n_eligible = np.zeros(len(slots), dtype=np.int64)
        for i in range(len(slots)):
            order, count = kernel.top_expected_value(proba[i], bank.payouts_, mask[i], 1)
            n_eligible[i] = count
            if count:
                best[i] = order[0]
        return Batch(proba, mask, best, n_eligible, slots)


class Ranking(NamedTuple):
    """One request's scores and its eligible offers ranked by expected value.

    proba, mask: (n_offers,) P(sale) and eligibility in bank column order;
    columns: the best eligible columns, best first (``columns[0]`` is the
    greedy choice); n_eligible: ``mask.sum()``.
    """

    proba: np.ndarray
    mask: np.ndarray
    columns: list[int]
    n_eligible: int


class Batch(NamedTuple):
    """Decisions of many requests: P(sale) and eligibility (n, offers), greedy column,
    eligible count and bank slots (n, fields) per request.

    In the order :func:`~clickrouter.serving.engine.policy.choose_many` takes
    them after the policy and the bank: ``choose_many(policy, live, *batch)``.
    """

    proba: np.ndarray
    mask: np.ndarray
    best: np.ndarray
    n_eligible: np.ndarray
    slots: np.ndarray


Decider = FusedDecider | GeneralDecider


def decider_for(bank: ModelBank) -> Decider:
    """The decision path of ``bank`` (build once per bank: it lays out tables)."""
    if bank.assembly_.all_compiled and len(bank.space.fields) == N_FIELDS:
        return FusedDecider(bank)
    return GeneralDecider(bank)
