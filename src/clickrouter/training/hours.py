"""A smooth daily cycle for ``local_hour``, fitted as harmonics and folded into one-hot.

Conversion tends to rise and fall smoothly over the day. Fitting one free
coefficient per hour spends 24 parameters on that curve, which a campaign with
a few dozen sales cannot pin down; a first harmonic (``cos`` and ``sin`` of
the hour angle) describes a daily bump with two. The fit therefore sees, next
to the one-hot hour columns (which keep whatever the harmonics miss, shrunk by
the same L2 penalty), ``2 * harmonics`` dense columns computed from the hour.

Any function of the hour alone is a one-hot hour coefficient vector, so after
the fit the harmonic coefficients are folded into the 24 hour columns: the
published model stays the ordinary one-hot pipeline the ModelBank compiles,
and scores exactly what was fitted.
"""

from __future__ import annotations

import numpy as np

from clickrouter.features import FeatureSpace
from clickrouter.profile import NUMERIC_DOMAINS
from clickrouter.training.design import column_offsets

HOURS = NUMERIC_DOMAINS["local_hour"]


def hour_columns(space: FeatureSpace) -> np.ndarray:
    """Feature column of each hour 0..23 (``local_hour`` is numeric: all in vocabulary)."""
    field = space.fields.index("local_hour")
    return np.arange(HOURS, dtype=np.int64) + int(column_offsets(space)[field])


def harmonic_curves(harmonics: int) -> np.ndarray:
    """Basis curves over the hours; shape (2 * harmonics, 24): cos k, sin k for k = 1.."""
    angle = 2 * np.pi * np.arange(HOURS) / HOURS
    rows = []
    for k in range(1, harmonics + 1):
        rows += [np.cos(k * angle), np.sin(k * angle)]
    return np.array(rows, dtype=np.float64).reshape(2 * harmonics, HOURS)


def harmonic_features(cols: np.ndarray, space: FeatureSpace, harmonics: int) -> np.ndarray:
    """Dense harmonic columns of encoded rows; shape (n_rows, 2 * harmonics).

    A row whose hour is out of vocabulary (only possible for a malformed
    record) gets zeros, like its all-zero one-hot block.
    """
    field = space.fields.index("local_hour")
    hour = cols[:, field] - int(column_offsets(space)[field])
    inside = (cols[:, field] >= 0) & (hour >= 0) & (hour < HOURS)
    curves = harmonic_curves(harmonics)
    return np.where(inside[:, None], curves[:, np.where(inside, hour, 0)].T, 0.0)


def fold_harmonics(harmonic_coef: np.ndarray, harmonics: int) -> np.ndarray:
    """The per-hour logit contribution of fitted harmonic coefficients; shape (24,)."""
    return np.asarray(harmonic_coef @ harmonic_curves(harmonics), dtype=np.float64)
