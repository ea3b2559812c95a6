"""The global + per-campaign deviation fit against sklearn, its limits, and what it buys.

sklearn's LogisticRegression (newton-cholesky, tight tolerance) is the
reference wherever it can fit the same problem: one campaign with no global
part is an ordinary L2 logistic regression, and so is the global stage with a
single campaign. The limits of the deviation penalty, the offset form of the
deviation, the published pipeline and a real measurement of the borrowing
(held-out log loss of campaigns with three sales, over several seeds) follow.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.training.design import build_space, design_matrix, encode_columns
from clickrouter.training.fitting import smoothed_rate
from clickrouter.training.hierarchy import (
    NO_SHARING,
    campaign_pipeline,
    choose_global_c,
    fit_campaign,
    fit_global,
    fit_hierarchy,
)
from clickrouter.training.models import feature_transformer

FIELDS, LEVELS = 4, 6


def one_hot(rng: np.random.Generator, n: int, *, reference: bool = False) -> sp.csr_matrix:
    """``FIELDS`` random one-hot fields of ``LEVELS`` values (``reference``: level 0 dropped)."""
    cols = rng.integers(0, LEVELS, (n, FIELDS)) + np.arange(FIELDS) * LEVELS
    rows = np.repeat(np.arange(n), FIELDS)
    X = sp.csr_matrix((np.ones(n * FIELDS), (rows, cols.ravel())), shape=(n, FIELDS * LEVELS))
    if reference:
        keep = np.arange(FIELDS * LEVELS) % LEVELS != 0
        X = X[:, keep]
    return X


def sklearn_fit(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, C: float) -> LogisticRegression:
    model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, sample_weight=w)


def labelled(rng: np.random.Generator, X: sp.csr_matrix, level: float) -> np.ndarray:
    beta = rng.normal(0.0, 0.8, X.shape[1])
    return (rng.random(X.shape[0]) < expit(level + X @ beta)).astype(np.float64)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    C=st.sampled_from([0.01, 0.1, 1.0, 10.0]),
    reference=st.booleans(),
)
def test_no_global_part_is_sklearn(seed: int, C: float, reference: bool) -> None:
    rng = np.random.default_rng(seed)
    X = one_hot(rng, int(rng.integers(300, 1500)), reference=reference)
    y = labelled(rng, X, float(rng.uniform(-3.0, -0.5)))
    if not 0 < y.sum() < len(y):
        y[:2] = (0.0, 1.0)
    w = np.where(y > 0, rng.uniform(0.5, 3.0), 1.0)
    fit = fit_campaign(X, y, np.zeros(X.shape[1]), C=C, weight=w)
    reference_fit = sklearn_fit(X, y, w, C)
    assert np.abs(fit.coef - reference_fit.coef_[0]).max() < 1e-4
    assert abs(fit.intercept - reference_fit.intercept_[0]) < 1e-4
    assert np.array_equal(fit.deviation, fit.coef)
    assert fit.converged


def test_vanishing_penalty_is_the_unpenalised_fit() -> None:
    """C_d -> infinity: a campaign is its own model (identifiable design, sklearn at large C)."""
    rng = np.random.default_rng(3)
    X = one_hot(rng, 4000, reference=True)
    y = labelled(rng, X, -1.5)
    prior = rng.normal(0.0, 1.0, X.shape[1])  # far from the truth: must not matter
    fit = fit_campaign(X, y, prior, C=1e6)
    reference_fit = sklearn_fit(X, y, np.ones(len(y)), 1e6)
    assert np.abs(fit.coef - reference_fit.coef_[0]).max() < 1e-4
    assert abs(fit.intercept - reference_fit.intercept_[0]) < 1e-4


def test_single_campaign_global_stage_is_sklearn() -> None:
    rng = np.random.default_rng(4)
    X = one_hot(rng, 2000)
    y = labelled(rng, X, -2.0)
    shared = fit_global(X, y, np.zeros(len(y), np.int64), 1, C=0.5)
    reference_fit = sklearn_fit(X, y, np.ones(len(y)), 0.5)
    assert np.abs(shared.coef - reference_fit.coef_[0]).max() < 1e-4
    assert abs(shared.levels[0] - reference_fit.intercept_[0]) < 1e-4


def campaigns_world(
    seed: int, n_campaigns: int = 6
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Rows of campaigns sharing profile effects, each with its own level and deviation."""
    rng = np.random.default_rng(seed)
    X = one_hot(rng, 600 * n_campaigns)
    campaign = rng.integers(0, n_campaigns, X.shape[0])
    beta = rng.normal(0.0, 0.8, X.shape[1])
    deviation = rng.normal(0.0, 0.3, (n_campaigns, X.shape[1]))
    level = rng.uniform(-3.0, -1.5, n_campaigns)
    logits = (
        level[campaign] + np.asarray(X.multiply(beta + deviation[campaign]).sum(axis=1)).ravel()
    )
    y = (rng.random(X.shape[0]) < expit(logits)).astype(np.float64)
    return X, y, campaign


def test_global_stage_is_sklearn_with_nearly_free_levels() -> None:
    """sklearn penalises every coefficient; a campaign's level column scaled by 1,000
    makes its penalty a millionth, a reference for the free levels to 1e-4."""
    X, y, campaign = campaigns_world(9)
    shared = fit_global(X, y, campaign, 6, C=0.5)
    levels = sp.csr_matrix((np.full(len(y), 1000.0), (np.arange(len(y)), campaign)))
    model = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12, fit_intercept=False)
    model.fit(sp.hstack([X, levels], format="csr"), y)
    width = X.shape[1]
    assert np.abs(shared.coef - model.coef_[0, :width]).max() < 1e-4
    assert np.abs(shared.levels - 1000.0 * model.coef_[0, width:]).max() < 1e-4


def test_infinite_penalty_keeps_the_global_effects_and_level() -> None:
    """C_d -> 0: coefficients are the global ones; the intercept, free, solves its own
    score equation, which is the global stage's equation for the campaign's level."""
    X, y, campaign = campaigns_world(5)
    fitted = fit_hierarchy(X, y, campaign, 6, global_C=1.0, deviation_C=1e-10)
    for c, fit in enumerate(fitted.campaigns):
        assert fit is not None
        assert np.abs(fit.coef - fitted.shared.coef).max() < 1e-6
        rows = campaign == c
        residual = expit(X[rows] @ fit.coef + fit.intercept) - y[rows]
        assert abs(residual.sum()) < 1e-6 * rows.sum()
        assert abs(fit.intercept - fitted.shared.levels[c]) < 1e-5


def test_deviation_form_with_offset_is_the_same_fit() -> None:
    """Pulling towards beta equals fitting the deviation with offset x . beta towards 0."""
    X, y, campaign = campaigns_world(6)
    rows = campaign == 2
    beta = fit_global(X, y, campaign, 6, C=1.0).coef
    pulled = fit_campaign(X[rows], y[rows], beta, C=0.3)
    offset = X[rows] @ beta
    deviation = fit_campaign(X[rows], y[rows], np.zeros(len(beta)), C=0.3, offset=offset)
    assert np.abs(pulled.coef - (beta + deviation.coef)).max() < 1e-5
    assert abs(pulled.intercept - deviation.intercept) < 1e-5


def test_one_class_campaigns_are_left_out() -> None:
    """A campaign without a sale has no finite level and teaches the shared effects nothing."""
    X, y, campaign = campaigns_world(7, n_campaigns=4)
    rng = np.random.default_rng(0)
    extra = one_hot(rng, 500)
    X2 = sp.vstack([X, extra], format="csr")
    y2 = np.concatenate([y, np.zeros(500)])
    campaign2 = np.concatenate([campaign, np.full(500, 4)])
    alone = fit_hierarchy(X, y, campaign, 5, global_C=1.0, deviation_C=0.5)
    both = fit_hierarchy(X2, y2, campaign2, 5, global_C=1.0, deviation_C=0.5)
    assert both.campaigns[4] is None and both.shared.levels[4] == -np.inf
    assert np.abs(both.shared.coef - alone.shared.coef).max() < 1e-6
    with pytest.raises(ValueError, match="both classes"):
        fit_campaign(extra, np.zeros(500), both.shared.coef, C=1.0)


def test_bad_inputs_are_refused() -> None:
    X = one_hot(np.random.default_rng(0), 10)
    y = np.array([0.0, 1.0] * 5)
    with pytest.raises(ValueError, match="range"):
        fit_global(X, y, np.full(10, 3), 2, C=1.0)
    with pytest.raises(ValueError, match="0 or 1"):
        fit_campaign(X, y * 2, np.zeros(X.shape[1]), C=1.0)
    with pytest.raises(ValueError, match="weight"):
        fit_campaign(X, y, np.zeros(X.shape[1]), C=1.0, weight=np.zeros(10))
    with pytest.raises(ValueError, match="prior"):
        fit_campaign(X, y, np.zeros(3), C=1.0)


def test_published_pipeline_scores_the_fit_with_pages() -> None:
    """The campaign's pipeline (trainer's encoder layout, page columns of its own) scores
    exactly the fitted logit, shifted by the sampling correction."""
    rng = np.random.default_rng(8)
    n = 3000
    frame = pd.DataFrame(
        {
            "country": rng.choice(["FR", "DE", "ES"], n).astype(object),
            "device": rng.choice(["mobile", "desktop"], n).astype(object),
            "os": rng.choice(["android", "ios", "unknown"], n).astype(object),
            "browser": np.full(n, "chrome", dtype=object),
            "provider": rng.choice(["a", "b"], n).astype(object),
            "local_hour": rng.integers(0, 24, n),
            "local_weekday": rng.integers(0, 7, n),
        }
    )
    pages = ("p1", "p2", "p3")
    page = rng.integers(0, 3, n)
    space = build_space(frame)
    cols = encode_columns(frame, space)
    width = int(space.n_slots) - len(space.fields)
    X = design_matrix(cols, width)
    own = sp.csr_matrix((np.ones(n), (np.arange(n), page)), shape=(n, 3))
    y = (rng.random(n) < expit(-2.0 + 0.5 * (page == 1) + X @ rng.normal(0, 0.5, width))).astype(
        float
    )
    fit = fit_campaign(X, y, rng.normal(0, 0.3, width), C=0.5, own=own)
    frame[PAGE_INPUT] = np.asarray(pages, dtype=object)[page]
    pipeline = campaign_pipeline(
        feature_transformer(space, pages), fit, C=0.5, intercept_shift=-0.7
    )
    expected = expit(sp.hstack([X, own]) @ fit.coef + fit.intercept - 0.7)
    np.testing.assert_allclose(pipeline.predict_proba(frame)[:, 1], expected, rtol=1e-12)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def borrowing_world(seed: int) -> dict[str, float]:
    """Held-out log loss of 15 campaigns with 3 sales each, next to 30 with ~100 sales.

    Profile effects are shared (sd 0.8 per slot) up to small per-campaign
    deviations (sd 0.15); levels lie between logit -4.5 and -3. A small
    campaign's rows stop at its third sale. Each small campaign is scored on
    20,000 fresh rows by: the hierarchy (global C 1, deviation C 0.1), its own
    sklearn fit at the best C of the trainer's grid *in hindsight* (the
    strongest own fit), and the trainer's smoothed base rate; ``oracle`` is
    the truth's own loss.
    """
    rng = np.random.default_rng(seed)
    n_big, n_small, width = 30, 15, FIELDS * LEVELS
    beta = rng.normal(0.0, 0.8, width)
    level = rng.uniform(-4.5, -3.0, n_big + n_small)
    deviation = rng.normal(0.0, 0.15, (n_big + n_small, width))
    parts: list[tuple[sp.csr_matrix, np.ndarray]] = []
    for c in range(n_big + n_small):
        X = one_hot(rng, 3000 if c < n_big else 20000)
        y = (rng.random(X.shape[0]) < expit(level[c] + X @ (beta + deviation[c]))).astype(float)
        if c >= n_big:  # a campaign with three sales: its rows up to the third
            stop = int(np.flatnonzero(y)[2]) + 1
            X, y = X[:stop], y[:stop]
        parts.append((X, y))
    X_all = sp.vstack([X for X, _ in parts], format="csr")
    y_all = np.concatenate([y for _, y in parts])
    campaign = np.concatenate([np.full(len(y), c) for c, (_, y) in enumerate(parts)])
    fitted = fit_hierarchy(X_all, y_all, campaign, len(parts), global_C=1.0, deviation_C=0.1)
    pooled = float(y_all.mean())
    losses: dict[str, list[float]] = {"hierarchy": [], "own": [], "base_rate": [], "oracle": []}
    for c in range(n_big, n_big + n_small):
        X, y = parts[c]
        X_hold = one_hot(rng, 20000)
        truth = expit(level[c] + X_hold @ (beta + deviation[c]))
        y_hold = (rng.random(20000) < truth).astype(float)
        fit = fitted.campaigns[c]
        assert fit is not None
        losses["hierarchy"].append(log_loss(y_hold, expit(X_hold @ fit.coef + fit.intercept)))
        own = [
            sklearn_fit(X, y, np.ones(len(y)), C).predict_proba(X_hold)[:, 1]
            for C in (0.01, 0.1, 1.0)
        ]
        losses["own"].append(min(log_loss(y_hold, p) for p in own))
        rate = smoothed_rate(float(y.sum()), float(len(y)), pooled, 2.0)
        losses["base_rate"].append(log_loss(y_hold, np.full(20000, rate)))
        losses["oracle"].append(log_loss(y_hold, truth))
    return {name: float(np.mean(values)) for name, values in losses.items()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_campaigns_with_three_sales_borrow_strength(seed: int) -> None:
    """Over seeds 0-15 the hierarchy's mean held-out log loss was at most 0.987 times the
    better of the two baselines and left at most 0.89 of that baseline's excess loss over
    the truth; asserted here with margins: below 0.99 times, and below 0.95 of the excess."""
    loss = borrowing_world(seed)
    baseline = min(loss["own"], loss["base_rate"])
    assert loss["hierarchy"] < 0.99 * baseline
    excess = (loss["hierarchy"] - loss["oracle"]) / (baseline - loss["oracle"])
    assert excess < 0.95


GLOBAL_GRID = (0.001, 0.01, 0.1, 1.0)


def sharing_world(seed: int, shared: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """20 campaigns of 1,500-4,000 rows whose profile effects are ``sqrt(shared)``
    times common ones plus ``sqrt(1 - shared)`` times their own (sd 0.8 in all)."""
    rng = np.random.default_rng(seed)
    n, width = 20, FIELDS * LEVELS
    common = rng.normal(0.0, 0.8, width)
    parts, labels, owner = [], [], []
    for c in range(n):
        effects = np.sqrt(shared) * common + np.sqrt(1 - shared) * rng.normal(0.0, 0.8, width)
        X = one_hot(rng, int(rng.integers(1500, 4000)))
        p = expit(rng.uniform(-3.5, -2.0) + X @ effects)
        parts.append(X)
        labels.append((rng.random(X.shape[0]) < p).astype(np.float64))
        owner.append(np.full(X.shape[0], c))
    return sp.vstack(parts, format="csr"), np.concatenate(labels), np.concatenate(owner)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_shared_effects_are_chosen_when_campaigns_share_nothing(seed: int) -> None:
    X, y, campaign = sharing_world(seed, shared=0.0)
    chosen, scores = choose_global_c(X, y, campaign, 20, GLOBAL_GRID)
    assert chosen == NO_SHARING, scores  # another campaign's effects only mislead
    assert scores[1.0] > scores[NO_SHARING]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_c_is_chosen_large_when_campaigns_share_their_effects(seed: int) -> None:
    X, y, campaign = sharing_world(seed, shared=0.8)
    chosen, scores = choose_global_c(X, y, campaign, 20, GLOBAL_GRID)
    assert chosen >= 0.1, scores  # the shared effects predict campaigns they never saw
    assert scores[chosen] < min(scores[NO_SHARING], scores[min(GLOBAL_GRID)])


def test_global_c_needs_a_campaign_per_fold() -> None:
    rng = np.random.default_rng(0)
    X = one_hot(rng, 500)
    y = labelled(rng, X, -2.0)
    campaign = np.zeros(500, dtype=np.int64)  # one campaign: nothing to hold out
    assert choose_global_c(X, y, campaign, 1, GLOBAL_GRID) == (NO_SHARING, {})
    with pytest.raises(ValueError, match="C must be"):
        choose_global_c(X, y, campaign, 1, (0.0, 1.0))
