"""Held-out quality of a campaign model: log loss, ROC AUC, PR AUC, calibration.

Calibration is predicted sales / observed sales on the slice (1.0 = perfect;
undefined without a sale). AUCs are undefined when the slice holds one class;
undefined values are ``None`` so they serialise to JSON ``null``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

_EPS = 1e-15


def evaluate(labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Metrics of predictions ``proba`` (shape (n,)) against 0/1 ``labels``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1 - _EPS)
    positives = int(y.sum())
    both = 0 < positives < len(y)
    return {
        "rows": len(y),
        "positives": positives,
        "log_loss": log_loss(y, p) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "calibration": float(p.sum() / positives) if positives else None,
        "predicted_sales": float(p.sum()),
    }


def log_loss(labels: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 ``labels`` under ``proba``."""
    p = np.clip(proba, _EPS, 1 - _EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))
