"""The Thompson kernel that reads every candidate in every draw: the reference.

``clickrouter.serving.engine.policy`` reads only the offers that can still win
a draw (branch and bound); this is the straightforward kernel, in column
order, kept for the tests (the same winners and propensities for the same
random stream) and for ``benchmarks/bench_policy.py`` (the baseline of its
cost). It draws from numba's generator, as the library's kernel does: seed
both with ``clickrouter.serving.engine.policy._seed_kernel``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def thompson_draw(
    proba: np.ndarray,
    mask: np.ndarray,
    payouts: np.ndarray,
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    draws: int,
    budget: int,
) -> tuple[int, float]:
    """(winning column, Monte-Carlo propensity); (-1, 1.0) when no column has a score."""
    n = proba.shape[0]
    floor = 0.0
    for c in range(n):  # the best offer's worst draw: no gathers, so LLVM vectorises
        floor = max(floor, proba[c] * low[c] if mask[c] else 0.0)
    if floor <= 0.0:
        return -1, 1.0
    candidates = np.empty(n, dtype=np.int64)
    values = np.empty(n)
    k = 0
    for c in range(n):
        if mask[c] and proba[c] * high[c] >= floor:
            candidates[k] = c
            values[k] = proba[c] * payouts[c]
            k += 1
    pages = (campaign_of, page_level, page_factors)
    winner = one_draw(candidates, values, k, level, factors, pages)
    rounds = max(1, min(draws, budget // k))
    wins = 0
    for _ in range(rounds):
        if one_draw(candidates, values, k, level, factors, pages) == winner:
            wins += 1
    return candidates[winner], (wins + 1.0) / (rounds + 1.0)


@numba.njit(cache=True, nogil=True)
def thompson_many(
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
    payouts: np.ndarray,
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    draws: int,
    budget: int,
    columns: np.ndarray,
    propensity: np.ndarray,
) -> None:
    """:func:`thompson_draw` per row, in row order (so the same draws as one by one)."""
    for i in range(proba.shape[0]):
        column, p = thompson_draw(
            proba[i], mask[i], payouts, level, factors, campaign_of, page_level, page_factors,
            high, low, draws, budget,
        )  # fmt: skip
        if column < 0:
            columns[i], propensity[i] = best[i], 1.0
        else:
            columns[i], propensity[i] = column, p


@numba.njit(cache=True, nogil=True)
def one_draw(
    candidates: np.ndarray,
    values: np.ndarray,
    k: int,
    level: np.ndarray,
    factors: np.ndarray,
    pages: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> int:
    """The index in ``candidates`` of one draw's winner.

    pages: (campaign_of, page_level, page_factors); a campaign's pages share its
    draw, read at start + its index, and each has its own page draw. With one
    page per campaign (``page_factors`` a single row) the loop reads the
    campaign draw at start + column, which is the same.
    """
    campaign_of, page_level, page_factors = pages
    wrap = factors.shape[1] - 1  # the pool size is a power of two
    start = np.random.randint(0, wrap + 1)
    best, best_score = 0, -1.0
    if page_factors.shape[0] == 1:
        for i in range(k):
            c = candidates[i]
            score = values[i] * factors[level[c], (start + c) & wrap]
            if score > best_score:
                best, best_score = i, score
        return best
    for i in range(k):
        c = candidates[i]
        score = values[i] * factors[level[c], (start + campaign_of[c]) & wrap]
        score *= page_factors[page_level[c], (start + c) & wrap]
        if score > best_score:
            best, best_score = i, score
    return best
