"""Sale delays: how long after its click a sale's postback arrives.

The distribution is given by CDF knots (:class:`~clickrouter.sim.config.DelayConfig`)
and interpolated linearly in log(delay) between them, so the configured
quantiles hold exactly: by default a third of sales within an hour, half
within a day, the rest trailing off to 30 days.
"""

from __future__ import annotations

import numpy as np

from clickrouter.sim.config import DelayConfig


class DelayModel:
    """Inverse-CDF sampler for sale delays (seconds)."""

    def __init__(self, config: DelayConfig) -> None:
        self.config = config
        self._log_seconds = np.log(np.asarray(config.seconds, dtype=float))
        self._cdf = np.asarray(config.cdf, dtype=float)

    @property
    def max_seconds(self) -> float:
        return float(self.config.seconds[-1])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` delays in seconds, each in [first knot, last knot]."""
        return self.quantile(rng.random(n))

    def quantile(self, q: np.ndarray) -> np.ndarray:
        """Delay (s) at probability levels ``q`` in [0, 1]."""
        return np.exp(np.interp(q, self._cdf, self._log_seconds))

    def cdf(self, seconds: np.ndarray) -> np.ndarray:
        """P(delay <= seconds)."""
        logs = np.log(np.maximum(np.asarray(seconds, dtype=float), 1e-9))
        return np.interp(logs, self._log_seconds, self._cdf, left=0.0, right=1.0)
