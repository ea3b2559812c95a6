"""Held-out quality of a campaign model: log loss, ROC AUC, PR AUC, calibration.

Calibration is predicted sales / observed sales on the slice (1.0 = perfect;
undefined without a sale). AUCs are undefined when the slice holds one class;
undefined values are ``None`` so they serialise to JSON ``null``. The AUCs are
computed here with numpy (same definitions as sklearn's ``roc_auc_score`` and
``average_precision_score``, ties included): a cycle evaluates thousands of
small slices, where sklearn's per-call input validation would dominate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

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
        "roc_auc": roc_auc(y, p) if both else None,
        "pr_auc": average_precision(y, p) if both else None,
        "calibration": float(p.sum() / positives) if positives else None,
        "predicted_sales": float(p.sum()),
    }


def log_loss(labels: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 ``labels`` under ``proba``."""
    p = np.clip(proba, _EPS, 1 - _EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting half."""
    positive = labels > 0
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall step) x precision."""
    order = np.argsort(-scores, kind="stable")
    y, s = labels[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    true_pos = np.cumsum(y)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall_step = np.diff(np.r_[0.0, true_pos / true_pos[-1]])
    return float(np.sum(recall_step * precision))
