"""A replay candidate, not a served policy: Thompson sampling with exact Gamma draws.

The service's :class:`~clickrouter.serving.http.policy.Thompson` draws each
campaign's rate factor from a log-normal whose log-sd matches the Gamma
posterior's (``sqrt(trigamma(sales + prior))``) and tempers all of it by
``scale``. Two things differ here:

* the factor is drawn from the Gamma posterior itself, Gamma(a) / a (mean
  one), whose upper tail is much thinner than the log-normal's at the same
  log-sd when ``a`` is small;
* ``scale`` tempers the evidence, not the prior: ``a = prior + sales /
  scale^2``. A campaign without a sale draws from the untempered prior
  (an exponential), one with many sales about as narrowly as the service's
  policy at the same ``scale``.

The profile spread is the service's (log-normal, shrinking with a logistic
model's sales). Factors are pooled per (model kind, shape level) the way the
service pools them per sigma level, and the same numba kernel chooses.
``bench_policy.py replay --candidate gamma-thompson:SCALE:SPREAD:PROFILE_SALES``.
"""

from __future__ import annotations

import numpy as np

from clickrouter.serving.http.models import LiveBank
from clickrouter.serving.http.policy import Thompson, _is_logistic, _sales

SHAPE_LEVELS = np.geomspace(1.0, 30_000.0, 48)  # ~25 % apart


class GammaThompson(Thompson):
    name = "gamma-thompson"

    def _tables(self, live: LiveBank) -> tuple[np.ndarray, ...]:
        records = live.manifest.get("campaigns")
        records = records if isinstance(records, dict) else {}
        found = [records.get(cid) for cid in live.bank.campaign_ids]
        sales = np.array([_sales(record) for record in found])
        logistic = np.array([_is_logistic(record) for record in found], dtype=np.int64)
        shape = self.prior_sales + sales / self.scale**2
        steps = np.interp(np.log(shape), np.log(SHAPE_LEVELS), np.arange(len(SHAPE_LEVELS)))
        level = logistic * len(SHAPE_LEVELS) + np.rint(steps).astype(np.int64)
        factors = np.array([self._pool(kind, a) for kind in (0, 1) for a in SHAPE_LEVELS])
        payouts = np.array([c.payout for c in live.bank.campaigns], dtype=np.float64)
        return (
            payouts,
            level,
            factors,
            payouts * factors.max(axis=1)[level],
            payouts * factors.min(axis=1)[level],
        )

    def _pool(self, logistic: int, shape: float) -> np.ndarray:
        """POOL factors of mean one: the rate's Gamma draw times the profile's log-normal."""
        sales = max(0.0, (shape - self.prior_sales) * self.scale**2)  # what the shape stands for
        unmodelled = self.profile_sales / (self.profile_sales + sales) if logistic else 1.0
        spread = self.profile_spread * np.sqrt(unmodelled)
        rate = self.rng_.gamma(shape, 1.0 / shape, self.POOL)
        z = self.rng_.standard_normal(self.POOL)
        return rate * np.exp(spread * z - spread**2 / 2)
