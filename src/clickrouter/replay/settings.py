"""What one replay runs: the world, its traffic, the loop's timing and its baselines.

The world's knobs, the policy's and the trainer's are the demo's
(:class:`~clickrouter.demo.config.DemoConfig`), so a replay with default
settings is the demo's loop; what is replay-specific is here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clickrouter.demo.config import DemoConfig
from clickrouter.errors import InvalidInput

HOUR = 3600.0
DAY = 86400.0
# the demo's consumer lateness (1 s) + hold (3 s) + cycle start (2 s), at its x720 speedup
DEMO_LABEL_DELAY_HOURS = 6.0 * 720.0 / HOUR
TRAFFIC_SHAPES = ("diurnal", "flat")


@dataclass(frozen=True)
class ReplaySettings:
    """One replay (every seed of it).

    demo: world, policy and trainer knobs (``out``, ``minutes``, ``rate`` and
        the processes' knobs are not used).
    world_dir: a saved world (``clickrouter simulate --out``) instead of
        generating one from ``demo.campaigns`` / ``demo.seed`` and the world knobs.
    clicks: requests served over ``days`` simulated days (None: the demo's
        rate, 288,000 a day).
    label_delay_hours: how long after a click's label settles (its sale, or
        the attribution window's close) its record is in the dataset the
        trainer reads: the consumer's lateness and hold.
    traffic: ``diurnal`` (the world's arrival process) or ``flat`` (evenly
        spread, as the demo's drivers send).
    oracle_sample: requests scored against every campaign for the baselines
        (evenly spaced; 0 = all).
    train_window_hours: the trainer reads the records of the last so many
        simulated hours (None: every record, the demo's setting).
    exploration_seed: mixed into the policy's random stream only: the same
        traffic and the same outcome draws, another path of exploration. Two
        settings whose difference is no larger than two exploration seeds'
        of one setting are not told apart by the replay (0: the stream every
        replay used before the option existed).
    propensities: the Thompson policies estimate each choice's propensity for
        the records, as the predictor logs it (~40 % of a choice's cost). False
        leaves NaN in the records and makes the same choices: for replays
        whose records only the loop's trainer reads (it ignores propensities).
    """

    demo: DemoConfig = field(default_factory=DemoConfig)
    world_dir: Path | None = None
    clicks: int | None = None
    days: float = 3.0
    label_delay_hours: float = DEMO_LABEL_DELAY_HOURS
    traffic: str = "diurnal"
    oracle_sample: int = 100_000
    bins: int = 24
    train_window_hours: float | None = None
    exploration_seed: int = 0
    propensities: bool = True

    def __post_init__(self) -> None:
        _check("--days", self.days, math.isfinite(self.days) and 0 < self.days <= 366)
        _check("--clicks", self.clicks, self.clicks is None or 1 <= self.clicks <= 10**9)
        delay = self.label_delay_hours
        _check("--label-delay", delay, math.isfinite(delay) and 0 <= delay <= 24 * 30)
        _check("--traffic", self.traffic, self.traffic in TRAFFIC_SHAPES)
        _check("--oracle-sample", self.oracle_sample, self.oracle_sample >= 0)
        _check("--bins", self.bins, 2 <= self.bins <= 500)
        window = self.train_window_hours
        _check("--train-window", window, window is None or (math.isfinite(window) and window > 0))
        _check("--clicks", self.total_clicks, self.total_clicks >= self.cycles)
        explore = self.exploration_seed
        whole = isinstance(explore, int) and not isinstance(explore, bool)
        _check("--exploration-seed", explore, whole and 0 <= explore < 2**32)
        _check("--propensities", self.propensities, isinstance(self.propensities, bool))

    @property
    def total_clicks(self) -> int:
        if self.clicks is not None:
            return self.clicks
        demo = DemoConfig()
        return round(demo.requests / demo.simulated_days * self.days)

    @property
    def cycles(self) -> int:
        """Training cycles: one at the end of every ``retrain_hours`` (the last may be shorter)."""
        return max(1, math.ceil(self.days * 24 / self.demo.retrain_hours - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        demo = self.demo.to_dict()
        for unused in ("out", "minutes", "rate", "drivers", "threads", "pipeline", "speedup"):
            demo.pop(unused)
        for unused in ("hold_seconds", "oracle_sample", "bins", "top_campaigns", "live"):
            demo.pop(unused)
        values["demo"] = demo
        values["world_dir"] = None if self.world_dir is None else str(self.world_dir)
        values["clicks"] = self.total_clicks
        return values


def _check(option: str, value: Any, ok: bool) -> None:
    if not ok:
        raise InvalidInput(f"{option}: invalid value {value!r}")
