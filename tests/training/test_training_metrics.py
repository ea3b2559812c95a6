"""Our numpy AUCs agree with sklearn's definitions, ties included."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from clickrouter.training.metrics import evaluate


@given(st.integers(0, 10_000), st.integers(2, 300), st.booleans())
def test_metrics_match_sklearn(seed: int, n: int, coarse: bool) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    y[0], y[1] = 0, 1
    p = rng.random(n)
    if coarse:  # many ties
        p = np.round(p, 1).clip(0.05, 0.95)
    got = evaluate(y, p)
    assert np.isclose(got["roc_auc"], roc_auc_score(y, p), rtol=1e-12)
    assert np.isclose(got["pr_auc"], average_precision_score(y, p), rtol=1e-12)
    assert np.isclose(got["log_loss"], log_loss(y, p), rtol=1e-12)
    assert np.isclose(got["calibration"], p.sum() / y.sum())


def test_undefined_metrics_are_none() -> None:
    got = evaluate(np.zeros(5), np.full(5, 0.1))
    assert got["roc_auc"] is None and got["pr_auc"] is None and got["calibration"] is None
    assert got["log_loss"] > 0
    assert evaluate(np.zeros(0), np.zeros(0))["log_loss"] is None
