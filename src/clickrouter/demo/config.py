"""Every knob of the demo, with the embedded defaults ``make demo`` runs on.

Simulated time runs ``speedup`` times faster than wall time. The predictor
stamps clicks (and postbacks, which carry no ``ts``) with its own wall clock,
so the consumer's attribution window and the trainer's cut-off are the
simulated durations divided by ``speedup``; the report's time axis is the
simulated time the driver stamped on each request (``raw.ts``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clickrouter.errors import InvalidInput

HOUR = 3600.0
MAX_PIPELINE = 64  # clickrouter.sim.driver.MAX_PIPELINE (without its imports)
MAX_PAGES = 16  # clickrouter.sim.config.MAX_PAGES (without its imports)
# the service's policies (clickrouter.serving.engine.policy.POLICIES, without its imports)
POLICIES = ("greedy", "epsilon-greedy", "thompson", "gamma-thompson", "laplace-thompson")
LEARNERS = ("independent", "hierarchical")  # clickrouter.training.settings.LEARNERS


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs (see docs/how-to/tune-demo.md for why each default is what it is).

    World: ``campaigns``, ``seed``, ``base_rate_min``/``base_rate_max`` (log-uniform
    range of campaign sale rates; the production-like world uses 1e-6..1e-3),
    ``payout_sigma`` (log-normal spread of payouts; 1.0 there) and
    ``effect_scale`` (spread of the per-profile logit effects; 0.8 there),
    ``shared_structure`` (share of a campaign's profile effects that its
    vertical's carry: 0 = independent campaigns, 1 = a vertical's campaigns alike),
    ``max_pages`` (landing pages a campaign runs at most: 1 plus a Poisson
    number of extra pages, mean 0.7, so half the campaigns run one page, a
    third two, a few up to five; 1 = one page per campaign),
    ``page_launch_share``/``page_retire_share`` (extra pages that go live, or
    are retired, at a whole day of the first week; replayed by
    ``clickrouter replay``, which republishes the catalogue as they change;
    the demo serves its catalogue as generated and refuses them).
    Traffic: ``minutes`` of wall-clock traffic at ``rate`` requests/s in total,
    split over ``drivers`` driver processes of ``threads`` connections each
    (the round trip, not the CPU, bounds one connection on a loaded machine),
    each connection writing ``pipeline`` decision requests at once (HTTP/1.1
    pipelining: fewer system calls per decision on both sides);
    ``speedup`` simulated seconds per wall second. Serving: ``policy`` with its
    ``epsilon`` (epsilon-greedy) or ``thompson_scale`` and
    ``thompson_profile_spread`` (either Thompson sampling; gamma-thompson
    needs a scale > 0). Ingestion:
    ``attribution_hours`` (simulated), ``hold_seconds`` (wall; how long the
    consumer may hold records for fuller files). Training: a cycle every
    ``retrain_hours`` simulated hours, ``min_positives`` sales before a campaign
    gets a logistic model, ``prior_positives`` strength of the Beta prior of
    the base-rate models, ``recent_prior_sales`` how firmly a logistic
    model's level resists the newest sales (0, the default: the window's
    average), ``late_sales`` whether base-rate models also count the sales
    that arrived after the attribution window (delayed feedback, see
    ``training/late.py``), ``cold_start_rate`` of the cold store,
    ``cold_at_prior`` (a campaign no record has reached yet scores the
    trainer's prior mean instead of ``cold_start_rate``),
    ``train_workers`` fit processes (0 = in the trainer process), ``learner``
    (the trainer's: independent or hierarchical; with hierarchical,
    ``global_c`` (None: chosen per group) and ``hierarchy_min_positives``
    are the trainer's) and ``posterior`` (publish
    each logistic model's Laplace posterior; always on for the
    laplace-thompson policy, which reads them). Report:
    ``oracle_sample`` clicks scored against every offer by the oracle
    (0 = all), ``bins`` time bins of the curves, ``top_campaigns`` in the
    model-quality table.
    """

    out: Path = Path("demo-out")
    campaigns: int = 5000
    seed: int = 0
    base_rate_min: float = 1e-3
    base_rate_max: float = 3e-2
    payout_sigma: float = 1.0
    effect_scale: float = 0.8
    shared_structure: float = 0.0
    max_pages: int = 5
    page_launch_share: float = 0.0
    page_retire_share: float = 0.0
    minutes: float = 6.0
    rate: float = 2400.0
    drivers: int = 2
    threads: int = 2
    pipeline: int = 8
    speedup: float = 720.0
    policy: str = "thompson"
    epsilon: float = 0.02
    thompson_scale: float = 0.3
    thompson_profile_spread: float = 0.5
    attribution_hours: float = 1.0
    hold_seconds: float = 3.0
    retrain_hours: float = 3.0
    min_positives: int = 5
    prior_positives: float = 1.0
    recent_prior_sales: float = 0.0
    late_sales: bool = False
    cold_start_rate: float = 1e-4
    cold_at_prior: bool = False
    train_workers: int = 0
    learner: str = "independent"
    global_c: float | None = None
    hierarchy_min_positives: int | None = None
    posterior: bool = False
    oracle_sample: int = 60_000
    bins: int = 24
    top_campaigns: int = 15
    live: bool = True

    def __post_init__(self) -> None:
        _check("campaigns", self.campaigns, self.campaigns >= 2)
        _check(
            "base_rate_min/base_rate_max",
            (self.base_rate_min, self.base_rate_max),
            0 < self.base_rate_min <= self.base_rate_max < 0.5,
        )
        _check("payout_sigma", self.payout_sigma, 0 <= self.payout_sigma <= 3)
        _check("effect_scale", self.effect_scale, 0 <= self.effect_scale <= 3)
        shared = self.shared_structure
        _check("shared_structure", shared, 0 <= shared <= 1)
        _check("max_pages", self.max_pages, 1 <= self.max_pages <= MAX_PAGES)
        launch, retire = self.page_launch_share, self.page_retire_share
        _check("page_launch_share", launch, 0 <= launch <= 1)
        _check("page_retire_share", retire, 0 <= retire <= 1)
        _check("page_launch_share + page_retire_share", launch + retire, launch + retire <= 1)
        _check("minutes", self.minutes, 0 < self.minutes <= 24 * 60)
        _check("rate", self.rate, self.rate > 0)
        _check("drivers", self.drivers, 1 <= self.drivers <= 16)
        _check("threads", self.threads, 1 <= self.threads <= 64)
        _check("pipeline", self.pipeline, 1 <= self.pipeline <= MAX_PIPELINE)
        _check("speedup", self.speedup, self.speedup > 0)
        _check("policy", self.policy, self.policy in POLICIES)
        scale, gamma = self.thompson_scale, self.policy in ("gamma-thompson", "laplace-thompson")
        _check("thompson_scale", scale, 0 <= scale <= 3 and (scale > 0 or not gamma))
        spread = self.thompson_profile_spread
        _check("thompson_profile_spread", spread, 0 <= spread <= 1.5)
        _check("epsilon", self.epsilon, 0 <= self.epsilon <= 1)
        _check("attribution_hours", self.attribution_hours, self.attribution_hours > 0)
        _check("hold_seconds", self.hold_seconds, self.hold_seconds >= 0)
        _check("retrain_hours", self.retrain_hours, self.retrain_hours > 0)
        _check("min_positives", self.min_positives, self.min_positives >= 1)
        _check("prior_positives", self.prior_positives, self.prior_positives > 0)
        prior = self.recent_prior_sales
        _check("recent_prior_sales", prior, math.isfinite(prior) and prior >= 0)
        _check("cold_start_rate", self.cold_start_rate, 0 < self.cold_start_rate < 1)
        _check("train_workers", self.train_workers, self.train_workers >= 0)
        _check("learner", self.learner, self.learner in LEARNERS)
        c = self.global_c
        _check("global_c", c, c is None or (math.isfinite(c) and c > 0))
        low = self.hierarchy_min_positives
        _check("hierarchy_min_positives", low, low is None or 1 <= low <= self.min_positives)
        _check("oracle_sample", self.oracle_sample, self.oracle_sample >= 0)
        _check("bins", self.bins, 2 <= self.bins <= 500)
        _check("top_campaigns", self.top_campaigns, self.top_campaigns >= 1)

    # -- derived wall-clock durations -------------------------------------------------
    @property
    def traffic_seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def requests(self) -> int:
        """Total requests over all drivers."""
        return max(self.drivers, round(self.rate * self.traffic_seconds))

    @property
    def attribution_wall(self) -> float:
        return self.attribution_hours * HOUR / self.speedup

    @property
    def retrain_wall(self) -> float:
        return self.retrain_hours * HOUR / self.speedup

    @property
    def lateness_wall(self) -> float:
        """Allowed lateness behind the newest event: covers the sink's and drivers' skew."""
        return 1.0

    @property
    def label_delay_wall(self) -> float:
        """How old a click must be (wall s) before its label is surely in the dataset."""
        return self.attribution_wall + self.lateness_wall + self.hold_seconds + 2.0

    @property
    def simulated_days(self) -> float:
        return self.traffic_seconds * self.speedup / 86400.0

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        return values


def _check(name: str, value: Any, ok: bool) -> None:
    if not ok:
        raise InvalidInput(f"demo setting {name!r}: invalid value {value!r}")
