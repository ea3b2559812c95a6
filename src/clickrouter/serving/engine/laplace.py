"""Thompson sampling from the logistic models' Laplace posteriors (``laplace-thompson``).

Chapelle & Li (2011): keep a Gaussian posterior on a regularised logistic
model's weights; per request an offer's logit is then Gaussian, with mean the
model's logit and variance the sum of the variances of the slots the request
activates (:mod:`clickrouter.serving.posterior`). :class:`LaplaceThompson`
draws every eligible offer's logit from it, ``p' = expit(logit + sd z)`` with
``logit = log(p / (1 - p))`` of the bank's P(sale), and shows the offer of
highest ``p' x payout``. The spread is that of the model's
own evidence for *this* profile, tempered by the policy's one temperature
``scale`` (``--thompson-scale``): ``sd`` is ``scale`` times the posterior's, as
:class:`GammaThompson`'s evidence is divided by ``scale**2``. Thompson sampling
over thousands of offers draws the best of thousands of optimistic samples;
an untempered posterior spends most requests on the widest ones (docs/benchmarks.md,
"Learning").

A campaign's pages share every term but their page coefficient, so an offer's
draw is the campaign's shared term (one standard normal per campaign and
request, read at ``start + campaign index`` of one pool) plus its page term
(read at ``start + column`` of another pool): more pages do not buy a
campaign more chances. Offers without a posterior file (base-rate models,
models not from the trainer) draw as :class:`GammaThompson` does, with its
knobs, from the same ``start``.

Cost and exactness follow the other Thompson kernels: standard normals are
pooled (``POOL`` per pool, drawn once per loaded version) and a draw reads
them from a random ``start``; before any draw, each eligible offer's lowest
and highest possible score (at the pools' extreme normals, through the very
operations a draw computes, so the bounds hold in floating point) leave out
the offers that cannot reach the best offer's lowest score. A draw scores
every remaining offer with a posterior (an ``exp`` each) and reads the others
as :class:`Thompson` does, by groups bounded per ``start``. The propensity is
the chosen offer's smoothed share of wins among further draws, as
:class:`Thompson`'s, and skipped as its (``estimate_propensity``).
:meth:`LaplaceThompson.choose_many` runs the same compiled draw per row as
:meth:`LaplaceThompson.choose_scored`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numba
import numpy as np

from clickrouter.serving.engine.policy import (
    _SLACK,
    _TINY,
    GROUP,
    Choice,
    Choices,
    DrawTables,
    GammaThompson,
    skip,
)
from clickrouter.serving.posterior import LogitVariances, logit_variances

if TYPE_CHECKING:
    from clickrouter.serving.engine.holder import LiveBank

log = logging.getLogger(__name__)


class LaplaceTables(NamedTuple):
    """The tables of one bank: GammaThompson's, the variances and the normal pools."""

    gamma: DrawTables
    variances: np.ndarray  # (n_slots, n_offers): the shared logit terms' variances
    page_sd: np.ndarray  # (n_offers,) the page coefficient's standard deviation
    known: np.ndarray  # (n_offers,) bool: the offer's model has a posterior
    normals: np.ndarray  # (2, POOL) standard normals: the campaign's term, the page's
    extremes: np.ndarray  # (4,) lowest and highest normal of each pool


class LaplaceThompson(GammaThompson):
    """Per-request Thompson draws of each offer's logit from its Laplace posterior.

    The knobs are :class:`GammaThompson`'s; ``scale`` also tempers the
    posteriors (their standard deviations times ``scale``), the others apply to
    offers without a posterior only. The request's bank slots are required
    (``slots``).
    """

    name = "laplace-thompson"
    reads_slots = True

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        # (bank, its tables), one attribute: see Thompson._prepared
        self._laplace: tuple[Any, LaplaceTables | None] = (None, None)
        self.problems: list[str] = []  # the posterior files of the last bank refused

    def variances(self, live: LiveBank) -> LogitVariances:
        """The logit variance tables of ``live``'s bank, read from its version directory."""
        return logit_variances(live.bank, live.directory, dict(live.manifest.files))

    def prepare_laplace(self, live: LiveBank) -> LaplaceTables:
        """The tables of ``live`` (built once per loaded version)."""
        bank, state = self._laplace
        if bank is not live.bank or state is None:
            gamma = self._tables(live)
            found = self.variances(live)
            normals = self.rng_.standard_normal((2, self.POOL))
            extremes = np.array(
                [normals[0].min(), normals[0].max(), normals[1].min(), normals[1].max()]
            )
            # the temperature: variances times scale**2, standard deviations times scale
            state = LaplaceTables(
                gamma,
                found.table * self.scale**2,
                self.scale * np.sqrt(found.page),
                found.known,
                normals,
                extremes,
            )
            self.problems = found.problems
            if found.problems:  # those campaigns draw as GammaThompson's
                log.warning(
                    "version %s: %d posterior file(s) refused, e.g. %s",
                    live.version, len(found.problems), found.problems[0],
                )  # fmt: skip
            self._laplace = (live.bank, state)
        return state

    def choose_scored(
        self,
        live: LiveBank,
        proba: np.ndarray,
        mask: np.ndarray,
        best: int,
        n_eligible: int,
        *,
        slots: np.ndarray | None = None,
    ) -> Choice:
        if slots is None:
            raise ValueError("laplace-thompson needs the request's bank slots")
        t = self.prepare_laplace(live)
        g = t.gamma
        column, propensity = _laplace_draw(
            proba, mask, np.asarray(slots, dtype=np.intp), t.variances, t.page_sd, t.known,
            t.normals, t.extremes, g.payouts, g.level, g.factors, g.campaign_of, g.page_level,
            g.page_factors, g.high, g.low, g.reach, self.draws, self.DRAW_BUDGET,
            self.estimate_propensity,
        )  # fmt: skip
        if column < 0:  # no positive expected value anywhere: the greedy choice
            return best, 1.0
        return int(column), float(propensity)

    def choose_many(
        self,
        live: LiveBank,
        proba: np.ndarray,
        mask: np.ndarray,
        best: np.ndarray,
        n_eligible: np.ndarray,
        slots: np.ndarray | None = None,
    ) -> Choices:
        """:meth:`choose_scored` per row in one compiled loop (the same kernel and draws)."""
        if slots is None:
            raise ValueError("laplace-thompson needs the requests' bank slots")
        t = self.prepare_laplace(live)
        g = t.gamma
        columns = np.empty(len(best), dtype=np.int64)
        propensity = np.empty(len(best), dtype=np.float64)
        _laplace_many(
            proba, mask, np.asarray(best, dtype=np.int64), np.asarray(slots, dtype=np.intp),
            t.variances, t.page_sd, t.known, t.normals, t.extremes, g.payouts, g.level,
            g.factors, g.campaign_of, g.page_level, g.page_factors, g.high, g.low, g.reach,
            self.draws, self.DRAW_BUDGET, self.estimate_propensity, columns, propensity,
        )  # fmt: skip
        return columns, propensity


@numba.njit(cache=True, nogil=True, inline="always")
def _gaussian_score(payout: float, mean: float, sd: float, z: float, page: float) -> float:
    """``payout x expit(mean + sd z + page)``: the bounds and the draws share this rounding."""
    return payout / (1.0 + math.exp(-((mean + sd * z) + page)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _laplace_draw(
    proba: np.ndarray,
    mask: np.ndarray,
    slots: np.ndarray,
    variances: np.ndarray,
    page_sd: np.ndarray,
    known: np.ndarray,
    normals: np.ndarray,
    extremes: np.ndarray,
    payouts: np.ndarray,
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    reach: np.ndarray,
    draws: int,
    budget: int,
    estimate: bool,
) -> tuple[int, float]:
    """(winning column, Monte-Carlo propensity); (-1, 1.0) when no column has a score.

    Not ``estimate``: NaN for the propensity, the generator advanced as by its draws.
    ``error_model="numpy"``: P(sale) 0 or 1 gives an infinite logit, not an exception.
    """
    n = proba.shape[0]
    mean = np.empty(n)
    sd = np.empty(n)
    z_lo, z_hi, page_lo, page_hi = extremes[0], extremes[1], extremes[2], extremes[3]
    # the floor: a lower bound of the best offer's lowest score (any lower bound
    # keeps the draws exact; a tighter one leaves fewer candidates)
    floor = 0.0
    for c in range(n):
        if not mask[c]:
            continue
        if known[c]:
            p = proba[c]
            variance = 0.0
            for j in range(slots.shape[0]):  # the shared terms: the request's slots
                variance += variances[slots[j], c]
            mean[c] = math.log(p / (1.0 - p))
            sd[c] = math.sqrt(variance)
            # its lowest score is below payout x P(sale) (the extreme normals are
            # negative): only then worth an exp
            if payouts[c] * p > floor:
                page = page_sd[c] * page_lo
                floor = max(floor, _gaussian_score(payouts[c], mean[c], sd[c], z_lo, page))
        else:
            floor = max(floor, proba[c] * low[c])
    if floor <= 0.0:
        return -1, 1.0
    # the candidates: eligible offers whose highest score reaches the floor; the
    # slack covers GammaThompson's bounds, rounded apart from its draws (see _SLACK)
    gaussian = np.empty(n, dtype=np.int64)  # offers with a posterior, in column order
    others = np.empty(n, dtype=np.int64)  # the others, in column order
    group = np.empty(n, dtype=np.int64)  # the groups of GROUP columns holding others
    first = np.empty(n + 1, dtype=np.int64)  # where each group's others start
    top = np.empty(n)  # each group's highest P(sale) x payout
    n_gaussian, k, n_groups = 0, 0, 0
    for c in range(n):
        if not mask[c]:
            continue
        if known[c]:
            if payouts[c] * _SLACK + _TINY < floor:  # no score exceeds the payout
                continue
            highest = _gaussian_score(payouts[c], mean[c], sd[c], z_hi, page_sd[c] * page_hi)
            if highest * _SLACK + _TINY >= floor:
                gaussian[n_gaussian] = c
                n_gaussian += 1
        elif proba[c] * high[c] * _SLACK + _TINY >= floor:
            value = proba[c] * payouts[c]
            if n_groups == 0 or group[n_groups - 1] != c // GROUP:
                group[n_groups], first[n_groups], top[n_groups] = c // GROUP, k, value
                n_groups += 1
            top[n_groups - 1] = max(top[n_groups - 1], value)
            others[k] = c
            k += 1
    first[n_groups] = k
    request = (gaussian[:n_gaussian], others[:k], group[:n_groups], first[: n_groups + 1])
    scratch = (top[:n_groups], np.empty(n_groups))
    posterior = (proba, mean, sd, page_sd)
    tables = (normals, payouts, level, factors, campaign_of, page_level, page_factors, reach)
    pool = normals.shape[1]
    start = np.random.randint(0, pool)
    winner = _one_draw(start, request, scratch, posterior, tables)
    rounds = max(1, min(draws, budget // (n_gaussian + k)))
    if not estimate:
        skip(rounds, pool)
        return winner, np.nan
    wins = 0
    for _ in range(rounds):
        start = np.random.randint(0, pool)
        if _one_draw(start, request, scratch, posterior, tables) == winner:
            wins += 1
    return winner, (wins + 1.0) / (rounds + 1.0)


@numba.njit(cache=True, nogil=True)
def _one_draw(
    start: int,
    request: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    scratch: tuple[np.ndarray, np.ndarray],
    posterior: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tables: tuple[
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
    ],
) -> int:
    """The column of the highest score of the draw read at ``start`` (the lowest
    column among equals).

    request: (offers with a posterior, the others, the others' groups and where
    each starts); scratch: (each group's highest value, room for its bound).
    An offer with a posterior scores ``payout x expit(mean + sd z_campaign +
    page_sd z_page)``, each one read; the others GammaThompson's ``P(sale) x
    payout x factor x page factor``, read as :class:`Thompson` reads them: the
    group of the highest bound first, then every group whose bound can still
    reach the running best (its ``reach`` table, per ``start``).
    """
    gaussian, others, group, first = request
    top, bound = scratch
    proba, mean, sd, page_sd = posterior
    normals, payouts, level, factors, campaign_of, page_level, page_factors, reach = tables
    wrap = normals.shape[1] - 1  # the pool size is a power of two
    best, best_score = -1, -1.0  # every score is >= 0: the first read replaces it
    for i in range(gaussian.shape[0]):
        c = gaussian[i]
        at, page_at = (start + campaign_of[c]) & wrap, (start + c) & wrap
        page = page_sd[c] * normals[1, page_at]
        score = _gaussian_score(payouts[c], mean[c], sd[c], normals[0, at], page)
        if score > best_score:  # in column order: an equal score stays with the first
            best, best_score = c, score
    if group.shape[0] == 0:
        return best
    reach_now = reach[start]
    lead = 0
    for j in range(group.shape[0]):
        bound[j] = top[j] * reach_now[group[j]]
        if bound[j] > bound[lead]:
            lead = j
    for j in range(-1, group.shape[0]):
        g = lead if j < 0 else j
        if j == lead or (j >= 0 and bound[j] * _SLACK + _TINY < best_score):
            continue
        for i in range(first[g], first[g + 1]):
            c = others[i]
            at, page_at = (start + campaign_of[c]) & wrap, (start + c) & wrap
            score = proba[c] * payouts[c] * factors[level[c], at]
            score *= page_factors[page_level[c], page_at]
            if score > best_score or (score == best_score and c < best):
                best, best_score = c, score
    return best


@numba.njit(cache=True, nogil=True)
def _laplace_many(
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
    slots: np.ndarray,
    variances: np.ndarray,
    page_sd: np.ndarray,
    known: np.ndarray,
    normals: np.ndarray,
    extremes: np.ndarray,
    payouts: np.ndarray,
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    reach: np.ndarray,
    draws: int,
    budget: int,
    estimate: bool,
    columns: np.ndarray,
    propensity: np.ndarray,
) -> None:
    """:func:`_laplace_draw` per row, in row order (so the same draws as one by one)."""
    for i in range(proba.shape[0]):
        column, p = _laplace_draw(
            proba[i], mask[i], slots[i], variances, page_sd, known, normals, extremes, payouts,
            level, factors, campaign_of, page_level, page_factors, high, low, reach, draws,
            budget, estimate,
        )  # fmt: skip
        if column < 0:
            columns[i], propensity[i] = best[i], 1.0
        else:
            columns[i], propensity[i] = column, p
