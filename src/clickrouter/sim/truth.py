"""The hidden conversion functions: one sparse logistic model per campaign, plus its pages.

``logit P(sale | profile, c) = intercept[c] + sum over fields f of T_f[value_f, c]``

and an offer (campaign c, page p) adds its page's effect to that logit (see
:mod:`clickrouter.sim.pages`); with one page per campaign, offers are campaigns.

Each campaign has a handful of effects (Poisson-many) on particular countries,
carriers, devices, browsers, the OS or weekday, and optionally a smooth bump
over the local hour; values are picked by (square-rooted) popularity so the
effects touch traffic that exists. The intercept is calibrated so that the
campaign's mean P(sale) over its eligible traffic equals its base rate, which
is log-uniform between ``base_rate_min`` and ``base_rate_max``.

Campaigns of one vertical share structure: with ``s = shared_structure > 0``
each vertical draws effects of its own by the same process, and a campaign's
profile effects are ``sqrt(s) * vertical's + sqrt(1 - s) * own``. Both parts
are independent draws of one distribution, so the variance of a campaign's
effects is that of ``s = 0`` and two campaigns of one vertical have effects
correlated by ``s``. The vertical effects come from a random stream of their
own and ``s = 0`` draws none: that world is the one of independent campaigns.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import numpy as np

from clickrouter.profile import CANONICAL_FIELDS, NUMERIC_DOMAINS
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.pages import PageSpec

# how a campaign's sparse effects spread over the fields (local_hour: see bumps)
EFFECT_FIELDS = {
    "country": 0.25,
    "provider": 0.2,
    "device": 0.25,
    "browser": 0.1,
    "os": 0.1,
    "local_weekday": 0.1,
}
HOUR_BUMP_SHARE = 0.4  # share of campaigns whose conversion depends on the hour
_CLIP = 2.5


class TruthSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Serialisable hidden truth, effects stored column-wise.

    Effect k adds ``effect_coef[k]`` to the logit of campaign
    ``effect_campaign[k]`` when field ``effect_field[k]`` has the value of index
    ``effect_value[k]`` in the world's vocabulary (numeric fields: the value).
    Shared effect k adds ``vertical_effect_coef[k]`` (weight included) the same
    way to every campaign ``c`` with ``campaign_vertical[c] ==
    vertical_effect_vertical[k]``; ``campaign_vertical`` is empty when no
    campaign shares anything, and empty columns are not written (the file of
    an independent world is the one written before verticals existed).
    """

    base_rate: list[float]
    intercept: list[float]
    effect_campaign: list[int]
    effect_field: list[str]
    effect_value: list[int]
    effect_coef: list[float]
    campaign_vertical: list[int] = msgspec.field(default_factory=list)
    vertical_effect_vertical: list[int] = msgspec.field(default_factory=list)
    vertical_effect_field: list[str] = msgspec.field(default_factory=list)
    vertical_effect_value: list[int] = msgspec.field(default_factory=list)
    vertical_effect_coef: list[float] = msgspec.field(default_factory=list)

    @property
    def n_verticals(self) -> int:
        """Verticals the columns name: one past the highest index (0 when none)."""
        return max([-1, *self.campaign_vertical, *self.vertical_effect_vertical]) + 1

    def problem(self, sizes: dict[str, int]) -> str | None:
        """Why these effects do not fit a world of these vocabulary sizes (None: they do)."""
        n = len(self.intercept)
        if len(self.base_rate) != n:
            return f"{len(self.base_rate)} base rates for {n} campaigns"
        if len(self.campaign_vertical) not in (0, n):
            return f"{len(self.campaign_vertical)} campaign verticals for {n} campaigns"
        own = (self.effect_campaign, self.effect_field, self.effect_value, self.effect_coef)
        shared = (
            self.vertical_effect_vertical,
            self.vertical_effect_field,
            self.vertical_effect_value,
            self.vertical_effect_coef,
        )
        for name, columns, owners in (
            ("effect", own, n),
            ("vertical effect", shared, self.n_verticals),
        ):
            problem = _columns_problem(columns, sizes, owners)
            if problem is not None:
                return f"{name}s: {problem}"
        if min(self.campaign_vertical, default=0) < 0:
            return "a negative campaign vertical"
        return None


def _columns_problem(columns: EffectColumns, sizes: dict[str, int], owners: int) -> str | None:
    owner, fields, values, coefs = columns
    if len({len(c) for c in columns}) > 1:
        return "columns of different lengths"
    if any(not 0 <= o < owners for o in owner):
        return f"an effect names an owner outside 0..{owners - 1}"
    for field in set(fields):
        if field not in sizes:
            return f"unknown field {field!r}"
    value = np.array(values, dtype=np.int64)
    limit = np.array([sizes[f] for f in fields], dtype=np.int64)
    if len(value) and not ((value >= 0) & (value < limit)).all():
        return "an effect on a value outside its field's vocabulary"
    if not np.isfinite(np.array(coefs, dtype=np.float64)).all():
        return "a coefficient that is not finite"
    return None


class Truth:
    """Dense effect tables compiled from a :class:`TruthSpec` and a :class:`PageSpec`.

    ``tables[f]`` has shape (vocabulary size of f, n_campaigns); row 0 of a
    categorical field is its "unknown" value, which carries no campaign effect.
    ``offer_campaign`` maps each offer to its campaign; ``page_lift`` (n_offers,)
    and ``page_tables[f]`` (vocabulary size of f, n_offers) hold the page
    effects, only for the fields some page reads (none without pages).
    """

    def __init__(
        self,
        spec: TruthSpec,
        sizes: dict[str, int],
        pages: PageSpec | None = None,
        offer_campaign: np.ndarray | None = None,
    ) -> None:
        self.spec = spec
        self.n_campaigns = len(spec.intercept)
        self.intercept = np.array(spec.intercept, dtype=np.float64)
        own = (spec.effect_campaign, spec.effect_field, spec.effect_value, spec.effect_coef)
        self.tables = _effect_tables(own, sizes, self.n_campaigns)
        # the verticals' effects, (vocabulary size of f, n_verticals) per field,
        # and each campaign's vertical; empty in an independent world
        self.vertical_tables: dict[str, np.ndarray] = {}
        self.campaign_vertical = np.array(spec.campaign_vertical, dtype=np.int64)
        if spec.campaign_vertical:
            self.vertical_tables = _effect_tables(
                (
                    spec.vertical_effect_vertical,
                    spec.vertical_effect_field,
                    spec.vertical_effect_value,
                    spec.vertical_effect_coef,
                ),
                sizes,
                spec.n_verticals,
            )
            for field, table in self.tables.items():
                table += self.vertical_tables[field][:, self.campaign_vertical]
        if offer_campaign is None:
            offer_campaign = np.arange(self.n_campaigns)
        self.offer_campaign = np.asarray(offer_campaign, dtype=np.int64)
        self.n_offers = len(self.offer_campaign)
        # one page per campaign: offer columns are campaign columns, nothing to expand
        self.one_page = self.n_offers == self.n_campaigns
        self.page_lift, self.page_tables = _page_tables(pages or PageSpec(), sizes, self.n_offers)

    def campaign_logits(self, slots: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of every campaign's own model; slots (n,) per field -> (n, n_campaigns)."""
        out = self.intercept[None, :] + self.tables["country"][slots["country"]]
        for field, table in self.tables.items():
            if field != "country":
                out += table[slots[field]]
        return out

    def vertical_logits(self, slots: dict[str, np.ndarray]) -> np.ndarray:
        """The part of :meth:`campaign_logits` each campaign shares with its vertical
        (no level); slots (n,) per field -> (n, n_campaigns), zeros when none."""
        n = len(next(iter(slots.values())))
        if not self.vertical_tables:
            return np.zeros((n, self.n_campaigns))
        out = np.zeros((n, self.vertical_tables["country"].shape[1]))
        for field, table in self.vertical_tables.items():
            out += table[slots[field]]
        return np.take(out, self.campaign_vertical, axis=1)

    def logits(self, slots: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for every offer; slots (n,) per field -> (n, n_offers)."""
        out = self.campaign_logits(slots)
        if not self.one_page:
            # take keeps rows contiguous (fancy column indexing would not: slow adds after)
            out = np.take(out, self.offer_campaign, axis=1)
        if self.page_lift is not None:
            out += self.page_lift
        for field, table in self.page_tables.items():
            out += table[slots[field]]
        return out

    def logits_for(self, slots: dict[str, np.ndarray], offer: np.ndarray) -> np.ndarray:
        """Logit of one offer per row; ``offer`` (n,) -> (n,)."""
        campaign = self.offer_campaign[offer]
        out = self.intercept[campaign].copy()
        for field, table in self.tables.items():
            out += table[slots[field], campaign]
        if self.page_lift is not None:
            out += self.page_lift[offer]
        for field, table in self.page_tables.items():
            out += table[slots[field], offer]
        return out


def _effect_tables(
    columns: EffectColumns, sizes: dict[str, int], n_owners: int
) -> dict[str, np.ndarray]:
    """Dense (vocabulary size, n_owners) tables per canonical field of effect columns."""
    tables = {f: np.zeros((sizes[f], n_owners)) for f in CANONICAL_FIELDS}
    fields = np.array(columns[1], dtype=object)
    owner, value = np.array(columns[0], dtype=np.int64), np.array(columns[2], dtype=np.int64)
    coef = np.array(columns[3], dtype=np.float64)
    for field, table in tables.items():
        rows = np.flatnonzero(fields == field)
        np.add.at(table, (value[rows], owner[rows]), coef[rows])
    return tables


def _page_tables(
    pages: PageSpec, sizes: dict[str, int], n_offers: int
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    lift = np.array(pages.lift, dtype=np.float64) if any(pages.lift) else None
    tables: dict[str, np.ndarray] = {}
    offer, value = np.array(pages.effect_offer), np.array(pages.effect_value)
    coef = np.array(pages.effect_coef, dtype=np.float64)
    fields = np.array(pages.effect_field, dtype=object)
    for field in dict.fromkeys(pages.effect_field):
        rows = np.flatnonzero(fields == field)
        tables[field] = np.zeros((sizes[field], n_offers))
        np.add.at(tables[field], (value[rows], offer[rows]), coef[rows])
    return lift, tables


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_truth(
    rng: np.random.Generator,
    config: WorldConfig,
    sample: dict[str, np.ndarray],
    eligible: np.ndarray,
    sizes: dict[str, int],
    shared: SharedDraw | None = None,
) -> TruthSpec:
    """Draw sparse effects and calibrate intercepts on a traffic ``sample``.

    ``sample`` holds vocabulary indices per field (m,); ``eligible`` is the
    (m, n_campaigns) eligibility of those rows. With ``config.shared_structure``
    above 0, ``shared`` gives each campaign's vertical and the random stream
    the verticals' effects are drawn from.
    """
    n = eligible.shape[1]
    base = np.exp(rng.uniform(np.log(config.base_rate_min), np.log(config.base_rate_max), n))
    columns = _concat(_sparse_effects(rng, n, config, sample, sizes), _hour_bumps(rng, n, config))
    vertical: list[int] = []
    shared_columns: EffectColumns = ([], [], [], [])
    s = config.shared_structure
    if s > 0:
        if shared is None:
            raise ValueError("shared_structure > 0 needs the campaigns' verticals")
        columns = _weighted(columns, math.sqrt(1.0 - s))
        drawn = _concat(
            _sparse_effects(shared.rng, shared.n_verticals, config, sample, sizes),
            _hour_bumps(shared.rng, shared.n_verticals, config),
        )
        vertical, shared_columns = shared.vertical.tolist(), _weighted(drawn, math.sqrt(s))

    def spec(intercept: list[float]) -> TruthSpec:
        return TruthSpec(
            base.tolist(),
            intercept,
            *columns,
            campaign_vertical=vertical,
            vertical_effect_vertical=shared_columns[0],
            vertical_effect_field=shared_columns[1],
            vertical_effect_value=shared_columns[2],
            vertical_effect_coef=shared_columns[3],
        )

    draft = Truth(spec([0.0] * n), sizes)
    intercept = np.log(base) - np.log(_mean_exp_effects(draft, sample, eligible))
    return spec(intercept.tolist())


class SharedDraw(NamedTuple):
    """What drawing the verticals' effects needs: a stream, and each campaign's vertical."""

    rng: np.random.Generator
    vertical: np.ndarray  # (n_campaigns,) int: the vertical of each campaign
    n_verticals: int


EffectColumns = tuple[list[int], list[str], list[int], list[float]]


def _weighted(columns: EffectColumns, weight: float) -> EffectColumns:
    return columns[0], columns[1], columns[2], [weight * c for c in columns[3]]


def _sparse_effects(
    rng: np.random.Generator,
    n: int,
    config: WorldConfig,
    sample: dict[str, np.ndarray],
    sizes: dict[str, int],
) -> EffectColumns:
    """Poisson-many effects per campaign, on values picked by popularity."""
    names = list(EFFECT_FIELDS)
    share = np.array(list(EFFECT_FIELDS.values()))
    campaign = np.repeat(np.arange(n), rng.poisson(config.effects_per_campaign, n))
    field = rng.choice(len(names), size=len(campaign), p=share / share.sum())
    value = np.zeros(len(campaign), dtype=np.int64)
    for f, name in enumerate(names):
        rows = np.flatnonzero(field == f)
        p = _popularity(sample[name], sizes[name], name in NUMERIC_DOMAINS)
        value[rows] = rng.choice(len(p), size=len(rows), p=p)
    coef = np.clip(
        rng.normal(config.effect_mean, config.effect_scale, len(campaign)), -_CLIP, _CLIP
    )
    return campaign.tolist(), [names[f] for f in field], value.tolist(), coef.tolist()


def _hour_bumps(rng: np.random.Generator, n: int, config: WorldConfig) -> EffectColumns:
    """A smooth daily cycle of conversion for some campaigns (24 effects each)."""
    campaign = np.flatnonzero(rng.random(n) < HOUR_BUMP_SHARE)
    amplitude = rng.uniform(0.2, 1.0, len(campaign)) * config.hour_effect_amplitude
    peak = rng.uniform(0, 24, len(campaign))
    hours = np.arange(24)
    coef = amplitude[:, None] * np.cos(2 * np.pi * (hours[None, :] - peak[:, None]) / 24)
    return (
        np.repeat(campaign, 24).tolist(),
        ["local_hour"] * (24 * len(campaign)),
        np.tile(hours, len(campaign)).tolist(),
        coef.ravel().tolist(),
    )


def _concat(a: EffectColumns, b: EffectColumns) -> EffectColumns:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


def _popularity(observed: np.ndarray, size: int, numeric: bool) -> np.ndarray:
    """P(an effect lands on each value): square root of the value's traffic share."""
    weights = np.sqrt(np.bincount(observed, minlength=size).astype(float))
    if not numeric:
        weights[0] = 0.0  # "unknown" never carries an effect
    return weights / weights.sum()


def _mean_exp_effects(
    truth: Truth, sample: dict[str, np.ndarray], eligible: np.ndarray, chunk: int = 1000
) -> np.ndarray:
    """Per campaign: mean of exp(effects) over its eligible sample rows (all rows if none).

    exp(sum of effects) is the product of per-field factors exp(T_f), gathered
    in float32 (half the memory traffic of the float64 logits; the intercepts
    it calibrates need nowhere near float64 precision).
    """
    factors = {f: np.exp(t).astype(np.float32) for f, t in truth.tables.items()}
    total = np.zeros(truth.n_campaigns)
    count = np.zeros(truth.n_campaigns)
    total_all = np.zeros(truth.n_campaigns)
    for lo in range(0, len(eligible), chunk):
        fields = iter(factors.items())
        field, table = next(fields)
        weight = table[sample[field][lo : lo + chunk]]
        for field, table in fields:
            weight *= table[sample[field][lo : lo + chunk]]
        mask = eligible[lo : lo + chunk]
        total += np.where(mask, weight, 0.0).sum(axis=0, dtype=np.float64)
        count += mask.sum(axis=0)
        total_all += weight.sum(axis=0, dtype=np.float64)
    fallback = total_all / len(eligible)
    return np.where(count > 0, total / np.maximum(count, 1), fallback)
