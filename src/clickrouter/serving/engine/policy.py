"""Decision policies: which eligible offer to show, and with what propensity.

The bank's columns are offers, (campaign, landing page) pairs, and it ranks
the eligible ones by expected value (P(sale) x payout). A policy turns that
into the offer actually shown and the probability with which the policy would
have shown it (the propensity). Logging the true propensity lets the trainer
and analysts evaluate other policies off-policy (inverse propensity scoring)
on the logged clicks.

The service calls :meth:`Policy.choose_scored` with the live bank, the
request's probabilities and its eligibility; the simple policies only need
the greedy column (:meth:`choose`), Thompson sampling needs the scores and
the evidence behind each offer's model (see :class:`Thompson` and
:class:`GammaThompson`). :func:`choose_many` is the same choice for many
requests at once (the offline replay): each policy's batch path makes the
same draws, in the same order, as its per-request path called row by row.
A policy that also reads the request's bank slots (``laplace-thompson``,
:mod:`clickrouter.serving.engine.laplace`) gets them through
:func:`choose_one` and :func:`choose_many`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import numba
import numpy as np
from scipy.special import polygamma

from clickrouter.errors import InvalidInput

if TYPE_CHECKING:
    from clickrouter.config import Settings
    from clickrouter.modelstore import CampaignRecord
    from clickrouter.serving.engine.holder import LiveBank

POLICIES = ("greedy", "epsilon-greedy", "thompson", "gamma-thompson", "laplace-thompson")


Choice = tuple[int, float]  # (bank column of the offer shown, propensity of that choice)


class Policy(Protocol):
    name: str

    def choose_scored(
        self, live: LiveBank, proba: np.ndarray, mask: np.ndarray, best: int, n_eligible: int
    ) -> Choice:
        """Pick a column of ``live.bank`` for one request.

        proba: (n_offers,) P(sale) in bank column order; mask: (n_offers,)
        bool eligibility; ``best`` is the greedy column (``mask[best]`` is True)
        and ``mask.sum() == n_eligible``.
        """
        ...


class SlotPolicy(Protocol):
    """A policy that reads the request's bank slots too (``reads_slots`` is True)."""

    name: str
    reads_slots: bool

    def choose_scored(
        self,
        live: LiveBank,
        proba: np.ndarray,
        mask: np.ndarray,
        best: int,
        n_eligible: int,
        *,
        slots: np.ndarray | None = None,
    ) -> Choice: ...


Choices = tuple[np.ndarray, np.ndarray]  # (bank column, propensity) per request


def choose_one(
    policy: Policy,
    live: LiveBank,
    proba: np.ndarray,
    mask: np.ndarray,
    best: int,
    n_eligible: int,
    slots: np.ndarray,
) -> Choice:
    """``policy.choose_scored`` for one request; ``slots`` (its bank slots) go to a
    policy that reads them (:class:`SlotPolicy`)."""
    if getattr(policy, "reads_slots", False):
        return cast("SlotPolicy", policy).choose_scored(
            live, proba, mask, best, n_eligible, slots=slots
        )
    return policy.choose_scored(live, proba, mask, best, n_eligible)


def choose_many(
    policy: Policy,
    live: LiveBank,
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
    n_eligible: np.ndarray,
    slots: np.ndarray | None = None,
) -> Choices:
    """``policy.choose_scored`` for every row (each row with an eligible offer).

    proba, mask: (n, n_offers); best, n_eligible: (n,); slots: (n, n_fields)
    the rows' bank slots, for a policy that reads them. Uses the policy's
    own ``choose_many`` when it has one (draw for draw the same as the rows
    one by one), else calls ``choose_scored`` per row.
    """
    reads_slots = getattr(policy, "reads_slots", False)
    batch = getattr(policy, "choose_many", None)
    if batch is not None:
        if reads_slots:
            columns, propensity = batch(live, proba, mask, best, n_eligible, slots)
        else:
            columns, propensity = batch(live, proba, mask, best, n_eligible)
        return columns, propensity
    return _rows(policy, live, proba, mask, best, n_eligible, slots)


def _rows(
    policy: Policy,
    live: LiveBank,
    proba: np.ndarray,
    mask: np.ndarray,
    best: np.ndarray,
    n_eligible: np.ndarray,
    slots: np.ndarray | None = None,
) -> Choices:
    columns = np.empty(len(best), dtype=np.int64)
    propensity = np.empty(len(best), dtype=np.float64)
    reads_slots = getattr(policy, "reads_slots", False)
    for row in range(len(best)):
        args = (live, proba[row], mask[row], int(best[row]), int(n_eligible[row]))
        if reads_slots:
            if slots is None:
                raise ValueError(f"policy {policy.name!r} needs the requests' bank slots")
            columns[row], propensity[row] = choose_one(policy, *args, slots[row])
        else:
            columns[row], propensity[row] = policy.choose_scored(*args)
    return columns, propensity


class Greedy:
    """Always the best expected value: a deterministic choice, propensity 1."""

    name = "greedy"

    def choose(self, best: int, mask: np.ndarray, n_eligible: int) -> Choice:
        return best, 1.0

    def choose_scored(
        self, live: LiveBank, proba: np.ndarray, mask: np.ndarray, best: int, n_eligible: int
    ) -> Choice:
        return self.choose(best, mask, n_eligible)

    def choose_many(
        self,
        live: LiveBank,
        proba: np.ndarray,
        mask: np.ndarray,
        best: np.ndarray,
        n_eligible: np.ndarray,
    ) -> Choices:
        return np.asarray(best, dtype=np.int64).copy(), np.ones(len(best))


class EpsilonGreedy:
    """With probability ``epsilon`` a uniformly random eligible offer, else the best.

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
            return best, 1.0 - self.epsilon + explore
        column = _nth_true(mask, int(self.rng_.integers(n_eligible)))
        greedy_extra = 1.0 - self.epsilon if column == best else 0.0
        return column, greedy_extra + explore

    def choose_scored(
        self, live: LiveBank, proba: np.ndarray, mask: np.ndarray, best: int, n_eligible: int
    ) -> Choice:
        return self.choose(best, mask, n_eligible)

    def choose_many(
        self,
        live: LiveBank,
        proba: np.ndarray,
        mask: np.ndarray,
        best: np.ndarray,
        n_eligible: np.ndarray,
    ) -> Choices:
        # the per-request draws in the same order (a few us a row: not worth a kernel)
        return _rows(self, live, proba, mask, best, n_eligible)


def _nth_true(mask: np.ndarray, n: int) -> int:
    return int(np.flatnonzero(mask)[n])


def make_policy(
    name: str,
    epsilon: float,
    *,
    seed: int | None = None,
    thompson_scale: float = 1.0,
    thompson_profile_spread: float = 0.0,
) -> Policy:
    """The policy called ``name`` (see :data:`POLICIES`)."""
    if name == "greedy":
        return Greedy()
    if name == "epsilon-greedy":
        return EpsilonGreedy(epsilon, seed=seed)
    if name == "thompson":
        return Thompson(scale=thompson_scale, profile_spread=thompson_profile_spread, seed=seed)
    if name == "gamma-thompson":
        return GammaThompson(
            scale=thompson_scale, profile_spread=thompson_profile_spread, seed=seed
        )
    if name == "laplace-thompson":
        # imported here: that module builds on this one's kernels
        from clickrouter.serving.engine.laplace import LaplaceThompson

        return LaplaceThompson(
            scale=thompson_scale, profile_spread=thompson_profile_spread, seed=seed
        )
    raise InvalidInput(f"setting 'policy': expected one of {list(POLICIES)}, got {name!r}")


def policy_from_settings(settings: Settings, *, seed: int | None = None) -> Policy:
    """The policy the service's settings name, with their tunables."""
    return make_policy(
        settings.policy,
        settings.epsilon,
        seed=seed,
        thompson_scale=settings.thompson_scale,
        thompson_profile_spread=settings.thompson_profile_spread,
    )


class Thompson:
    """Thompson sampling over the campaigns' expected values, per request.

    Each campaign's model estimates P(sale); how far to trust it depends on
    the sales it was fitted on. The trainer records them per campaign in the
    version's manifest (:attr:`CampaignRecord.sales
    <clickrouter.modelstore.manifest.CampaignRecord.sales>`: ``positives``,
    plus a base-rate model's ``late_positives`` when it counts late sales). With ``k`` sales and
    a Gamma(``prior_sales``) prior on the rate (the trainer's base-rate model
    is that posterior's mean), the posterior of log(rate) has standard
    deviation ``sqrt(trigamma(k + prior_sales))``: ~1.3 with no sale, 0.32 at
    ten, 0.1 at a hundred. Per request every eligible campaign's expected
    value p x payout is multiplied by a log-normal draw exp(sigma z -
    sigma^2 / 2) (mean one: the model's estimate stays the mean; ``scale``
    multiplies sigma) and the highest product wins.

    That spread is about the campaign's overall rate only. What the policy
    needs is the expected value for *this* profile, and a base-rate model
    (too few sales for a per-profile fit) says nothing about how this
    profile departs from the campaign's average: campaigns whose average is
    mediocre but which are the best choice for some profiles would never be
    shown again, and so never get the sales a per-profile model needs. So
    the log-normal also carries ``profile_spread`` (the standard deviation
    of a profile's log-deviation not yet modelled): in full for a campaign
    without a logistic model, shrinking as ``profile_sales / (profile_sales
    + k)`` for one fitted on ``k`` sales (its own per-profile estimates take
    over). 0 turns it off.

    A campaign with several landing pages has one model for all of them; its
    evidence says how well the campaign is known, not each page. So an offer's
    factor is the campaign's draw (one per campaign and request, shared by its
    pages: more pages do not buy a campaign more chances) times a page draw
    of spread ``page_spread`` (the standard deviation of a page's
    log-deviation from its campaign not yet modelled), shrinking as
    ``page_sales / (page_sales + k_p)`` with the page's own sales ``k_p``
    (:attr:`CampaignRecord.page_positives
    <clickrouter.modelstore.manifest.CampaignRecord.page_positives>`) when the
    model is logistic (it reads the page). A page without a count (added since
    the fit, or a version from before pages) keeps the campaign's evidence
    with the full page spread. So an unproven page is drawn wider than its
    campaign's proven page: at equal estimates it wins a bounded share of its
    campaign's requests (its median factor is lower, its upper tail heavier),
    and it keeps that share until its own sales narrow it. A campaign with one
    page has no page draw.

    Cost: a normal draw and an ``exp`` per campaign would be ~20x a greedy
    choice at 5,000 campaigns. So sigma is rounded to ``LEVELS`` steps and,
    once per loaded version, a pool of ``POOL`` log-normal factors is drawn
    per step; a request reads campaign c's factor at (start + c) of its
    step's pool from a random ``start``. Campaigns whose best possible
    factor cannot reach the best campaign's worst are skipped before any
    read, so once most campaigns are settled a request costs two passes of
    multiply-and-compare. Page factors come from their own pools, read at
    (start + column).

    A draw reads only the offers that can still win it (branch and bound;
    :func:`_one_draw`): the columns are cut into groups of ``GROUP``
    neighbours, and per loaded version a table holds, for every ``start``,
    each group's largest factor (campaign times page draw). Per request a
    group's bound is its best candidate's expected value; per draw, times the
    table's entry for that ``start``. The draw reads the group of the highest
    bound first, then every group whose bound can still reach the running
    best, so the winner and the ``start`` offsets are those of reading every
    candidate (ties go to the lowest column, as in one pass in column order).

    The propensity is estimated by Monte Carlo: the chosen offer's share
    of wins among ``draws`` further draws over the same candidates, smoothed
    as ``(wins + 1) / (draws + 1)`` so it is never zero (an IPS weight stays
    finite); ``draws`` shrinks when candidates are many (at most
    ``DRAW_BUDGET`` reads per request). Those draws are about 40 % of a
    choice's cost in the demo's world. With ``estimate_propensity`` False (an
    offline replay whose records nobody evaluates) the propensity is NaN and
    the draws are skipped, but the generator still advances by one number per
    skipped draw: every later choice is the one the estimate would have left.
    """

    name = "thompson"
    LEVELS = 64
    MAX_SIGMA = 2.0
    POOL = 8192  # a power of two
    DRAW_BUDGET = 8192

    def __init__(
        self,
        *,
        prior_sales: float = 1.0,
        scale: float = 1.0,
        profile_spread: float = 0.0,
        profile_sales: float = 30.0,
        page_spread: float = 0.5,
        page_sales: float = 30.0,
        draws: int = 16,
        seed: int | None = None,
    ) -> None:
        if not prior_sales > 0:
            raise InvalidInput(f"thompson prior_sales: expected > 0, got {prior_sales!r}")
        if not scale >= 0:
            raise InvalidInput(f"setting 'thompson_scale': expected >= 0, got {scale!r}")
        if not 0 <= profile_spread <= 1.5:
            raise InvalidInput(
                f"setting 'thompson_profile_spread': expected a number in [0, 1.5],"
                f" got {profile_spread!r}"
            )
        if not profile_sales > 0:
            raise InvalidInput(f"thompson profile_sales: expected > 0, got {profile_sales!r}")
        if not 0 <= page_spread <= 1.5:
            raise InvalidInput(f"thompson page_spread: expected [0, 1.5], got {page_spread!r}")
        if not page_sales > 0:
            raise InvalidInput(f"thompson page_sales: expected > 0, got {page_sales!r}")
        self.prior_sales = float(prior_sales)
        self.scale = float(scale)
        self.profile_spread = float(profile_spread)
        self.profile_sales = float(profile_sales)
        self.page_spread = float(page_spread)
        self.page_sales = float(page_sales)
        self.draws = int(draws)
        self.estimate_propensity = True
        self.rng_ = np.random.default_rng(seed)
        _seed_kernel(int(self.rng_.integers(2**31)))
        # (bank, its noise tables): one attribute, so that the loading thread's
        # warm-up of a new bank and the event loop serving the old one can never
        # leave one bank paired with the other's tables
        self._prepared: tuple[Any, DrawTables | None] = (None, None)

    def sigmas(self, live: LiveBank) -> np.ndarray:
        """Noise scale of every bank column's campaign draw (from the manifest)."""
        evidence = _evidence(live)
        sales = evidence.sales
        rate_var = self.scale**2 * polygamma(1, sales + self.prior_sales)
        unmodelled = np.where(
            evidence.logistic, self.profile_sales / (self.profile_sales + sales), 1.0
        )
        return np.sqrt(rate_var + self.profile_spread**2 * unmodelled)

    def page_sigmas(self, live: LiveBank) -> np.ndarray:
        """Noise scale of every bank column's page draw (0 for a campaign's only page)."""
        evidence = _evidence(live)
        known = evidence.logistic.astype(bool) & ~np.isnan(evidence.page_sales)
        page_sales = np.where(known, evidence.page_sales, 0.0)
        unmodelled = np.where(known, self.page_sales / (self.page_sales + page_sales), 1.0)
        return np.where(evidence.paged, self.page_spread * np.sqrt(unmodelled), 0.0)

    def _page_pools(self, live: LiveBank) -> tuple[np.ndarray, np.ndarray]:
        """Each column's page level and the page factor pools (none drawn for a bank
        of one page per campaign: its draws stay those of campaigns alone)."""
        n = len(live.bank.offers)
        if n == len(live.bank.campaigns):
            return np.zeros(n, dtype=np.int64), np.ones((1, self.POOL))
        step = self.MAX_SIGMA / (self.LEVELS - 1)
        level = np.clip(np.rint(self.page_sigmas(live) / step), 0, self.LEVELS - 1)
        sigma = np.arange(self.LEVELS)[:, None] * step
        z = self.rng_.standard_normal((self.LEVELS, self.POOL))
        return level.astype(np.int64), np.exp(sigma * z - sigma**2 / 2)

    def _prepare(self, live: LiveBank) -> DrawTables:
        # once per loaded version: the bank object changes on every reload
        bank, state = self._prepared
        if bank is not live.bank or state is None:
            state = self._tables(live)
            self._prepared = (live.bank, state)
        return state

    def _tables(self, live: LiveBank) -> DrawTables:
        """Payouts, noise levels per column, the factor pools and each column's bounds."""
        step = self.MAX_SIGMA / (self.LEVELS - 1)
        level = np.clip(np.rint(self.sigmas(live) / step), 0, self.LEVELS - 1).astype(np.int64)
        sigma = np.arange(self.LEVELS)[:, None] * step
        z = self.rng_.standard_normal((self.LEVELS, self.POOL))  # under the generator's lock
        return _with_bounds(live, level, np.exp(sigma * z - sigma**2 / 2), self._page_pools(live))

    def choose_scored(
        self, live: LiveBank, proba: np.ndarray, mask: np.ndarray, best: int, n_eligible: int
    ) -> Choice:
        t = self._prepare(live)
        column, propensity = _thompson_draw(
            proba, mask, t.payouts, t.level, t.factors, t.campaign_of, t.page_level,
            t.page_factors, t.high, t.low, t.reach, self.draws, self.DRAW_BUDGET,
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
    ) -> Choices:
        """:meth:`choose_scored` per row in one compiled loop (the same kernel and draws)."""
        t = self._prepare(live)
        columns = np.empty(len(best), dtype=np.int64)
        propensity = np.empty(len(best), dtype=np.float64)
        _thompson_many(
            proba, mask, np.asarray(best, dtype=np.int64), t.payouts, t.level, t.factors,
            t.campaign_of, t.page_level, t.page_factors, t.high, t.low, t.reach,
            self.draws, self.DRAW_BUDGET, self.estimate_propensity, columns, propensity,
        )  # fmt: skip
        return columns, propensity


class GammaThompson(Thompson):
    """Thompson sampling with exact Gamma posterior draws, the evidence tempered.

    :class:`Thompson` draws a log-normal with the Gamma posterior's log-sd and
    multiplies all of it by ``scale``, the prior's spread included. Here a
    campaign's rate factor is drawn from the posterior itself, Gamma(a) / a
    (mean one) with ``a = prior_sales + sales / scale**2``: ``scale`` tempers
    the evidence, not the prior. A campaign without a sale draws from the
    untempered prior (an exponential: an upper tail much thinner than the
    log-normal's at the same log-sd, and no deep lower one), a campaign with
    many sales about as narrowly as :class:`Thompson` at the same ``scale``.
    In replays (docs/benchmarks.md, "Exact Gamma draws") this ended with
    better models than :class:`Thompson` on every traffic seed, but in the
    demo's runs it earned less (docs/how-to/tune-demo.md, "Gamma Thompson sampling
    in the demo"): an option, not the demo's default.

    The profile spread is :class:`Thompson`'s (a log-normal, in full without a
    logistic model, shrinking with a logistic model's sales). Factors are
    pooled per (model kind, shape level): ``SHAPE_LEVELS`` shapes ~25 % apart
    from the prior's up, and the same kernel chooses, with :class:`Thompson`'s
    page draws.
    """

    name = "gamma-thompson"
    SHAPE_LEVELS = 48
    MAX_SHAPE = 30_000.0  # beyond it a spread under 0.6 %: pooled with the last level

    def __init__(self, *, scale: float = 1.0, **knobs: Any) -> None:
        if not scale > 0:  # the evidence is divided by scale**2
            raise InvalidInput(f"setting 'thompson_scale': expected > 0, got {scale!r}")
        super().__init__(scale=scale, **knobs)  # the other knobs are Thompson's

    def shapes(self) -> np.ndarray:
        """The pooled Gamma shapes: the prior's, then ~25 % steps up to ``MAX_SHAPE``."""
        top = max(self.MAX_SHAPE, 2 * self.prior_sales)
        return np.geomspace(self.prior_sales, top, self.SHAPE_LEVELS)

    def _tables(self, live: LiveBank) -> DrawTables:
        evidence = _evidence(live)
        shapes = self.shapes()
        shape = self.prior_sales + evidence.sales / self.scale**2
        step = np.interp(np.log(shape), np.log(shapes), np.arange(len(shapes)))
        level = evidence.logistic * len(shapes) + np.rint(step).astype(np.int64)
        factors = np.array([self._pool(kind, a) for kind in (False, True) for a in shapes])
        return _with_bounds(live, level, factors, self._page_pools(live))

    def _pool(self, logistic: bool, shape: float) -> np.ndarray:
        """``POOL`` factors of mean one: the rate's Gamma draw times the profile's log-normal."""
        sales = max(0.0, (shape - self.prior_sales) * self.scale**2)  # what the shape stands for
        unmodelled = self.profile_sales / (self.profile_sales + sales) if logistic else 1.0
        spread = self.profile_spread * np.sqrt(unmodelled)
        rate = self.rng_.gamma(shape, 1.0 / shape, self.POOL)
        z = self.rng_.standard_normal(self.POOL)
        return rate * np.exp(spread * z - spread**2 / 2)


class Evidence(NamedTuple):
    """Per bank column, from the manifest: what its campaign's model rests on."""

    sales: np.ndarray  # the sales the campaign's model was fitted on
    logistic: np.ndarray  # 1 when that model is logistic (per profile, reads the page)
    page_sales: np.ndarray  # the sales of the column's page; NaN when not counted
    paged: np.ndarray  # whether the column's campaign has several pages in the bank


def _evidence(live: LiveBank) -> Evidence:
    records = live.manifest.campaigns
    bank = live.bank
    found = [records.get(cid) for cid in bank.campaign_ids]
    sales = np.array([0 if r is None else r.sales for r in found], dtype=np.float64)
    logistic = [r is not None and r.is_logistic for r in found]
    page_sales = [_page_count(r, page) for r, page in zip(found, bank.page_ids, strict=True)]
    pages_per_campaign = np.bincount(bank.offer_campaign_, minlength=len(bank.campaigns))
    return Evidence(
        sales,
        np.array(logistic, dtype=np.int64),
        np.array(page_sales, dtype=np.float64),
        pages_per_campaign[bank.offer_campaign_] > 1,
    )


def _page_count(record: CampaignRecord | None, page_id: str) -> float:
    # getattr: a manifest type from before pages has no such field
    counts = getattr(record, "page_positives", None) or {}
    count = counts.get(page_id)
    return float("nan") if count is None else float(count)


class DrawTables(NamedTuple):
    """The Thompson kernel's tables of one bank, per column unless said otherwise."""

    payouts: np.ndarray
    level: np.ndarray  # the campaign draw's pool
    factors: np.ndarray  # (levels, POOL) the campaign draw's pools
    high: np.ndarray  # best possible value per unit P(sale)
    low: np.ndarray  # worst possible
    campaign_of: np.ndarray  # the campaign's index: its draw is read at start + that
    page_level: np.ndarray  # the page draw's pool
    page_factors: np.ndarray  # (levels, POOL) the page draw's pools; (1, POOL) of ones: none
    reach: np.ndarray  # (POOL, groups) float32 per start, a group's largest factor (rounded up):
    # ~1 KB per column at GROUP = 32


GROUP = 32  # bank columns per group of the draws' bounds
_LANES = 8  # running maxima of _floor

# A bound prunes a group only when it is below the running best by more than the
# rounding of the products compared (a few ulps, or an underflow's absolute error).
_SLACK = 1.0 + 2.0**-40
_TINY = 1e-300


def _with_bounds(
    live: LiveBank, level: np.ndarray, factors: np.ndarray, pages: tuple[np.ndarray, np.ndarray]
) -> DrawTables:
    page_level, page_factors = pages
    payouts = np.ascontiguousarray(live.bank.payouts_, dtype=np.float64)
    campaign_of = np.asarray(live.bank.offer_campaign_, dtype=np.int64)
    return DrawTables(
        payouts,
        level,
        factors,
        payouts * factors.max(axis=1)[level] * page_factors.max(axis=1)[page_level],
        payouts * factors.min(axis=1)[level] * page_factors.min(axis=1)[page_level],
        campaign_of,
        page_level,
        page_factors,
        group_reach(level, factors, campaign_of, page_level, page_factors),
    )


def group_reach(
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
) -> np.ndarray:
    """(POOL, groups) float32: per ``start``, the largest factor a draw from it
    gives any column of each group of ``GROUP`` columns, rounded up (a bound)."""
    exact = _group_reach(level, factors, campaign_of, page_level, page_factors, GROUP)
    reach = exact.astype(np.float32)
    below = reach.astype(np.float64) < exact
    reach[below] = np.nextafter(reach[below], np.float32(np.inf))
    return np.ascontiguousarray(reach.T)


@numba.njit(cache=True, nogil=True)
def _group_reach(
    level: np.ndarray,
    factors: np.ndarray,
    campaign_of: np.ndarray,
    page_level: np.ndarray,
    page_factors: np.ndarray,
    group: int,
) -> np.ndarray:
    n = level.shape[0]
    pool = factors.shape[1]
    wrap = pool - 1
    paged = page_factors.shape[0] != 1  # as _one_draw reads: see _score
    out = np.zeros(((n + group - 1) // group, pool))
    for c in range(n):
        row, page_row = factors[level[c]], page_factors[page_level[c]]
        at = campaign_of[c] if paged else c
        best = out[c // group]
        for start in range(pool):
            factor = row[(start + at) & wrap] * page_row[(start + c) & wrap]
            best[start] = max(best[start], factor)
    return out


@numba.njit(cache=True)
def _seed_kernel(seed: int) -> None:
    np.random.seed(seed)  # numba's own generator (the pool offsets)


@numba.njit(cache=True, nogil=True)
def _thompson_draw(
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
    reach: np.ndarray,
    draws: int,
    budget: int,
    estimate: bool,
) -> tuple[int, float]:
    """(winning column, Monte-Carlo propensity); (-1, 1.0) when no column has a score.

    Not ``estimate``: NaN for the propensity, the generator advanced as by its draws.
    """
    floor = _floor(proba, mask, low)  # the best offer's worst draw
    if floor <= 0.0:
        return -1, 1.0
    k, candidates, values, groups = _candidates(proba, mask, payouts, high, floor)
    request = (candidates, values, *groups, np.empty(len(groups[0])))
    pages = (campaign_of, page_level, page_factors)
    winner = _one_draw(request, level, factors, pages, reach)
    rounds = max(1, min(draws, budget // k))
    if not estimate:
        skip(rounds, factors.shape[1])
        return candidates[winner], np.nan
    wins = 0
    for _ in range(rounds):
        if _one_draw(request, level, factors, pages, reach) == winner:
            wins += 1
    return candidates[winner], (wins + 1.0) / (rounds + 1.0)


@numba.njit(cache=True, nogil=True)
def skip(draws: int, pool: int) -> None:
    """Advance numba's generator as ``draws`` draws from a pool of ``pool`` would (one
    ``start`` each), so that the choices after a skipped estimate are unchanged."""
    for _ in range(draws):
        np.random.randint(0, pool)


@numba.njit(cache=True, nogil=True)
def _candidates(
    proba: np.ndarray, mask: np.ndarray, payouts: np.ndarray, high: np.ndarray, floor: float
) -> tuple[int, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(k, candidates, values, (group, first, top)) of one request.

    The k candidates: the eligible columns whose best draw reaches ``floor``
    (the best eligible offer's worst), in column order, with their values
    (P(sale) x payout). The groups of ``GROUP``
    columns that hold a candidate, in order: ``group`` their index, ``first``
    where their candidates start (and ``first[-1] == k``), ``top`` their
    highest value.

    Which columns qualify is computed first, in a loop the compiler
    vectorises; they are then kept without a branch (whether one is kept is
    not predictable): a column not kept is overwritten by the next one.
    """
    n = proba.shape[0]
    qualifies = np.empty(n, dtype=np.uint8)
    for c in range(n):
        qualifies[c] = mask[c] & (proba[c] * high[c] >= floor)
    kept = np.empty(n, dtype=np.int64)
    k = 0
    for c in range(n):
        kept[k] = c
        k += qualifies[c]
    values = np.empty(k)
    group = np.empty(k, dtype=np.int64)
    first = np.empty(k + 1, dtype=np.int64)
    top = np.empty(k)
    n_groups = 0
    current, running = -1, 0.0  # the current group and its top, in registers
    for j in range(k):
        c = kept[j]
        if c // GROUP != current:
            if n_groups > 0:
                top[n_groups - 1] = running
            current, running = c // GROUP, 0.0
            group[n_groups], first[n_groups] = current, j
            n_groups += 1
        values[j] = proba[c] * payouts[c]
        running = max(running, values[j])
    if n_groups > 0:
        top[n_groups - 1] = running
    first[n_groups] = k
    return k, kept, values, (group[:n_groups], first[: n_groups + 1], top[:n_groups])


@numba.njit(cache=True, nogil=True)
def _floor(proba: np.ndarray, mask: np.ndarray, low: np.ndarray) -> float:
    """The best eligible offer's worst draw, ``max(proba * low)`` over ``mask`` and 0.

    Eight running maxima of ``proba * low * mask``, without a branch: what
    lets the compiler keep the loop in vector registers (three times faster
    than a select per column). The same value as one chain of maxima over
    the eligible columns: an ineligible product is 0 or, from an infinite or
    NaN score, NaN, and a maximum starting at 0 is only replaced by a greater
    value (numba's ``max(a, nan)`` is ``a``).
    """
    n = proba.shape[0]
    running = np.zeros(_LANES)
    whole = n - n % _LANES
    for j in range(0, whole, _LANES):
        for lane in range(_LANES):
            c = j + lane
            running[lane] = max(running[lane], proba[c] * low[c] * mask[c])
    best = 0.0
    for c in range(whole, n):
        best = max(best, proba[c] * low[c] * mask[c])
    for lane in range(_LANES):
        best = max(best, running[lane])
    return best


@numba.njit(cache=True, nogil=True)
def _thompson_many(
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
    reach: np.ndarray,
    draws: int,
    budget: int,
    estimate: bool,
    columns: np.ndarray,
    propensity: np.ndarray,
) -> None:
    """:func:`_thompson_draw` per row, in row order (so the same draws as one by one)."""
    for i in range(proba.shape[0]):
        column, p = _thompson_draw(
            proba[i], mask[i], payouts, level, factors, campaign_of, page_level, page_factors,
            high, low, reach, draws, budget, estimate,
        )  # fmt: skip
        if column < 0:
            columns[i], propensity[i] = best[i], 1.0
        else:
            columns[i], propensity[i] = column, p


@numba.njit(cache=True, nogil=True)
def _one_draw(
    request: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    level: np.ndarray,
    factors: np.ndarray,
    pages: tuple[np.ndarray, np.ndarray, np.ndarray],
    reach: np.ndarray,
) -> int:
    """The index in ``candidates`` of one draw's winner.

    request: (candidates, values, group, first, top, bound), the candidates in
    column order, the groups holding them (see :func:`_candidates`) and a
    scratch row for the draw's group bounds. The group of the highest bound is
    read first, then every other group whose bound can reach the running best:
    a skipped group's every score is below it, so the winner is that of
    :func:`_score` over all candidates in column order (the first strict maximum),
    which is what the draw runs when the groups hold two candidates or fewer
    on average.
    """
    group, first, top, bound = request[2], request[3], request[4], request[5]
    start = np.random.randint(0, factors.shape[1])
    k = first[-1]
    if 2 * group.shape[0] >= k:  # few candidates a group: the bounds would cost more
        return _score(request, 0, k, start, level, factors, pages, 0, -1.0)[0]
    reach_now = reach[start]
    lead = 0
    for j in range(group.shape[0]):
        bound[j] = top[j] * reach_now[group[j]]
        if bound[j] > bound[lead]:
            lead = j
    best, best_score = 0, -1.0  # every score is >= 0: the first read replaces it
    best, best_score = _score(
        request, first[lead], first[lead + 1], start, level, factors, pages, best, best_score
    )
    for j in range(group.shape[0]):
        if j != lead and bound[j] * _SLACK + _TINY >= best_score:
            best, best_score = _score(
                request, first[j], first[j + 1], start, level, factors, pages, best, best_score
            )
    return best


@numba.njit(cache=True, nogil=True, inline="always")
def _score(
    request: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    lo: int,
    hi: int,
    start: int,
    level: np.ndarray,
    factors: np.ndarray,
    pages: tuple[np.ndarray, np.ndarray, np.ndarray],
    best: int,
    best_score: float,
) -> tuple[int, float]:
    """The running (winner, score) after candidates ``lo:hi`` of this draw.

    pages: (campaign_of, page_level, page_factors); a campaign's pages share its
    draw, read at start + its index, and each has its own page draw. With one
    page per campaign (``page_factors`` a single row) the campaign draw is read
    at start + column, which is the same. An equal score wins only from a lower
    candidate index (the groups are not read in column order).
    """
    candidates, values = request[0], request[1]
    campaign_of, page_level, page_factors = pages
    wrap = factors.shape[1] - 1  # the pool size is a power of two
    if page_factors.shape[0] == 1:
        for i in range(lo, hi):
            c = candidates[i]
            score = values[i] * factors[level[c], (start + c) & wrap]
            if score > best_score or (score == best_score and i < best):
                best, best_score = i, score
        return best, best_score
    for i in range(lo, hi):
        c = candidates[i]
        score = values[i] * factors[level[c], (start + campaign_of[c]) & wrap]
        score *= page_factors[page_level[c], (start + c) & wrap]
        if score > best_score or (score == best_score and i < best):
            best, best_score = i, score
    return best, best_score
