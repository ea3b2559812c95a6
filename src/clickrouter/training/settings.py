"""Tunables of a training cycle (one frozen object; the CLI and the demo build it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from clickrouter.errors import InvalidInput


@dataclass(frozen=True)
class TrainingSettings:
    """How campaigns are fitted, judged and published.

    negative_rate: fraction of negatives kept for fitting (positives are all
        kept); the intercept is corrected by ``log(rate)``. A campaign keeps at
        least ``min_negatives`` negatives (rate raised up to 1 for small ones).
    positive_weight: optional class weight on positives (corrected exactly like
        sampling negatives at ``1 / positive_weight``).
    min_positives: fewer sales than this -> smoothed base-rate model.
    prior_positives: strength of the Beta prior (in sales) centred on the
        pooled rate of the thin campaigns.
    cold_start_rate: the rate every campaign scores in the cold start (the
        first version, before any record).
    cold_at_prior: a campaign no record has reached yet scores the prior
        mean, the pooled rate a base-rate model of it would shrink to, written
        again each cycle that rate has moved (``plan.drifted_cold``). False:
        it keeps ``cold_start_rate`` until its first record, so a campaign the
        first cycles' traffic missed can stay far below every clicked one.
    c_grid: inverse L2 strengths tried on the time-ordered validation split.
    c_regrid_growth: a campaign whose served logistic model chose its C on
        ``k`` sales keeps that C (one fit on the training part for the guard
        and one on everything, instead of one per grid value plus one) until
        it has more than ``k * (1 + c_regrid_growth)`` sales; then the grid is
        tried again. 0 = try the whole grid every cycle.
    hour_harmonics: daily-cycle harmonics fitted for ``local_hour`` next to its
        one-hot columns (0 = one-hot only); folded into the hour coefficients,
        so the published model is the same one-hot pipeline (see ``hours.py``).
    holdout_fraction: newest share of each campaign's rows held out.
    recent_prior_sales: a logistic model's level is set on the newest rows:
        its intercept moves by ``log((observed + k) / (predicted + k))`` sales
        on the held-out slice, ``k`` this many (0 = off). Fitted on the whole
        window, the level is the window's average; when conversion drifts
        (a weekday effect on the first day) the model is off by that drift
        on exactly the traffic that comes next. Off by default: it fixes the
        level under drift, but it brings no revenue gain in the offline
        replay (docs/benchmarks.md).
    learner: "independent" fits each campaign on its own rows, its coefficients
        shrunk towards 0; "hierarchical" first fits profile effects shared by
        the logistic campaigns of a group (``shared_by``; a free level per
        campaign, inverse L2 strength ``global_c``), then each campaign's
        coefficients shrunk towards its group's, with C still chosen on
        ``c_grid`` (see ``shared.py`` and ``hierarchy.py``).
    global_c: the shared stage's inverse L2 strength (hierarchical only);
        None (the default): chosen per group among ``global_c_grid`` by how
        well the shared effects fitted on some of the group's campaigns
        predict the others (``hierarchy.choose_global_c``); a group where no
        value predicts them reliably better than no shared effect shares
        nothing, and its campaigns are fitted as the independent learner's.
    global_c_grid: the values tried when ``global_c`` is None.
    shared_by: which campaigns share effects (hierarchical only): "vertical",
        the campaigns of one catalogue vertical (those without one together);
        "all", every campaign.
    hierarchy_min_positives: with the hierarchical learner, campaigns with at
        least this many sales get a logistic model (None: ``min_positives``;
        at most ``min_positives``): below ``min_positives`` it starts from the
        shared effects instead of a flat base rate.
    posterior: publish each new logistic model's diagonal Laplace posterior
        as ``<model stem>.posterior.json`` beside it (``posterior.py``).
    guard_tolerance: keep the served model when the new log loss exceeds its
        log loss by more than this relative margin...
    guard_min_positives: ...judged only on a held-out slice with at least this
        many sales (below, log loss differences are noise: the new model wins).
    window_seconds: train on records of the last ``window_seconds`` (None = all).
    attribution_seconds: the consumer's attribution window. When set, base-rate
        models also count the sales that arrived after it (the dataset's
        late-sales sidecar), each click weighted by the share of its sales its
        age has had time to show (see ``late.py``); None = window labels only.
    """

    negative_rate: float = 0.1
    min_negatives: int = 2000
    positive_weight: float = 1.0
    min_positives: int = 20
    prior_positives: float = 2.0
    cold_start_rate: float = 1e-4
    cold_at_prior: bool = False
    c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    c_regrid_growth: float = 0.5
    holdout_fraction: float = 0.2
    recent_prior_sales: float = 0.0
    guard_tolerance: float = 0.02
    guard_min_positives: int = 10
    min_count: int = 1
    window_seconds: float | None = None
    attribution_seconds: float | None = None
    keep_versions: int = 5
    workers: int | None = None
    max_iter: int = 300
    seed: int = 0
    hour_harmonics: int = 1
    learner: str = "independent"
    global_c: float | None = None
    global_c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    shared_by: str = "vertical"
    hierarchy_min_positives: int | None = None
    posterior: bool = False

    def __post_init__(self) -> None:
        _check("negative_rate", self.negative_rate, 0 < self.negative_rate <= 1)
        _check("positive_weight", self.positive_weight, self.positive_weight > 0)
        _check("min_positives", self.min_positives, self.min_positives >= 1)
        _check("prior_positives", self.prior_positives, self.prior_positives > 0)
        _check("cold_start_rate", self.cold_start_rate, 0 < self.cold_start_rate < 1)
        _check("c_grid", self.c_grid, bool(self.c_grid) and all(c > 0 for c in self.c_grid))
        _check("c_regrid_growth", self.c_regrid_growth, self.c_regrid_growth >= 0)
        harmonics = self.hour_harmonics
        _check("hour_harmonics", harmonics, isinstance(harmonics, int) and 0 <= harmonics <= 11)
        _check("holdout_fraction", self.holdout_fraction, 0 < self.holdout_fraction < 1)
        prior = self.recent_prior_sales
        _check("recent_prior_sales", prior, math.isfinite(prior) and prior >= 0)
        _check("guard_tolerance", self.guard_tolerance, self.guard_tolerance >= 0)
        _check("keep_versions", self.keep_versions, self.keep_versions >= 1)
        window = self.window_seconds
        _check("window_seconds", window, window is None or window > 0)
        late = self.attribution_seconds
        _check("attribution_seconds", late, late is None or (math.isfinite(late) and late > 0))
        _check("workers", self.workers, self.workers is None or self.workers >= 0)
        _check("learner", self.learner, self.learner in LEARNERS)
        c = self.global_c
        _check("global_c", c, c is None or (_is_number(c) and math.isfinite(c) and c > 0))
        grid = self.global_c_grid
        positive = all(_is_number(g) and math.isfinite(g) and g > 0 for g in grid)
        _check("global_c_grid", grid, bool(grid) and positive)
        _check("shared_by", self.shared_by, self.shared_by in ("all", "vertical"))
        low = self.hierarchy_min_positives
        fits = low is None or (_is_int(low) and 1 <= low <= self.min_positives)
        _check("hierarchy_min_positives", low, fits)
        _check("posterior", self.posterior, isinstance(self.posterior, bool))
        _check("cold_at_prior", self.cold_at_prior, isinstance(self.cold_at_prior, bool))

    @property
    def logistic_min_positives(self) -> int:
        """The fewest sales a campaign needs for a logistic model under this learner."""
        low = self.hierarchy_min_positives
        if self.learner == "hierarchical" and low is not None:
            return low
        return self.min_positives

    def to_dict(self) -> dict[str, Any]:
        """Every setting, except the opt-in learner's left at their defaults: a version
        published with the defaults records what versions before them recorded, so
        the cycle after an upgrade sees the same settings and retrains nothing."""
        data = asdict(self)
        for name, default in _OPT_IN.items():
            if data[name] == default and type(data[name]) is type(default):
                del data[name]
        return data


LEARNERS = ("independent", "hierarchical")
_OPT_IN: dict[str, Any] = {
    "learner": "independent",
    "global_c": None,
    "global_c_grid": (0.001, 0.01, 0.1, 1.0),
    "shared_by": "vertical",
    "hierarchy_min_positives": None,
    "posterior": False,
    "cold_at_prior": False,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(name: str, value: Any, ok: bool) -> None:
    if not ok:
        raise InvalidInput(f"training setting {name!r}: invalid value {value!r}")
