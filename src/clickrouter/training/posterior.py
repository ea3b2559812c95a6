"""The diagonal Laplace posterior of a fitted logistic model (Chapelle & Li 2011).

The trainer's logistic fit minimises sklearn's L2-penalised objective

    F(b, w) = sum_i s_i l(y_i, b + x_i . w) + |w|^2 / (2 C),
    l(y, z) = log(1 + e^z) - y z,

with ``s_i`` the trainer's sample weights (``positive_weight`` on sales, 1
otherwise) and the intercept ``b`` not penalised (sklearn's lbfgs and
newton-cholesky solvers leave it out of the penalty). Read as a negative log
posterior, the penalty is a Gaussian prior ``w_j ~ N(0, C)`` (prior
precision ``1 / C``) and a flat prior on ``b``. Its Hessian at any point is

    d2F / dw_j2 = 1 / C + sum_i s_i p_i (1 - p_i) x_ij^2,
    d2F / db2   =         sum_i s_i p_i (1 - p_i),        p_i = expit(b + x_i . w),

and the *diagonal* Laplace approximation keeps the posterior Gaussian around
the fitted point with independent coordinates of variance one over those
diagonal entries. Dropping the off-diagonal terms underestimates each
marginal variance (``1 / H_jj <= (H^-1)_jj`` for a positive definite ``H``),
by a factor that stays modest when the one-hot fields are roughly
independent; in return the variance of a request's logit is the sum of the
variances of the slots it activates plus the intercept's, which the bank can
add up from one more table exactly as it adds the coefficients.

The curvature depends only on the probabilities, not the labels, and must be
taken at the probabilities the fit saw: the published intercept carries the
negative-sampling correction ``log(rate / positive_weight)`` (and any level
shift), which :func:`laplace_posterior` takes back out (``intercept_shift``).
Centring a field's coefficients leaves every probability unchanged, so the
published (centred) model gives the same curvature as the raw fit. The hour
harmonics the trainer fits beside the one-hot hours are folded into the hour
coefficients and are not separate slots here: their share of the hour's
uncertainty is left out, like every other correlation.

A slot is keyed by the pipeline's *input column* and *category* (``("country",
"FR")``, ``("local_hour", 7)``, ``("landing_page", "p2")``), the names the bank
reads from the same encoders, plus the intercept. The file format
(:func:`save_posterior`, :func:`load_posterior`) belongs to the core,
:mod:`clickrouter.posteriors`; :func:`load_posterior` here checks a file
against the fitted transformer it is paired with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from clickrouter.posteriors import Category, LaplacePosterior, Slots, save_posterior
from clickrouter.posteriors import load_posterior as load_posterior_file

__all__ = [
    "LaplacePosterior",
    "diagonal_precision",
    "encoder_slots",
    "laplace_posterior",
    "load_posterior",
    "posterior_from_precision",
    "save_posterior",
]


def diagonal_precision(
    X: Any, logits: np.ndarray, weight: np.ndarray | None, C: float
) -> tuple[np.ndarray, float]:
    """The diagonal of the penalised objective's Hessian: (per column, intercept).

    X: (n, d) design (sparse or dense); logits: (n,) ``b + X w`` at the fit;
    weight: (n,) sample weights (None: all 1); C: sklearn's inverse penalty.
    """
    if not C > 0 or not math.isfinite(C):
        raise ValueError(f"C must be a positive finite number, got {C!r}")
    p = expit(np.asarray(logits, dtype=np.float64))
    curvature = p * (1.0 - p)
    if weight is not None:
        curvature = curvature * np.asarray(weight, dtype=np.float64)
    squared = X.multiply(X) if sp.issparse(X) else np.square(np.asarray(X, dtype=np.float64))
    data = np.asarray(squared.T @ curvature, dtype=np.float64).ravel()
    return 1.0 / C + data, float(curvature.sum())


def laplace_posterior(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    *,
    sample_weight: np.ndarray | None = None,
    intercept_shift: float = 0.0,
) -> LaplacePosterior:
    """The diagonal Laplace posterior of a published pipeline on its training rows.

    frame: the rows the model was fitted on (the pipeline's input columns).
    sample_weight: the weights the fit gave those rows (None: all 1).
    intercept_shift: how far the published intercept was moved after the fit
        (the trainer's ``log(rate / positive_weight)`` plus any level shift);
        it is taken back out so the curvature is that of the fitted objective.
    The prior precision is ``1 / C`` of the pipeline's LogisticRegression.
    """
    transformer, model = pipeline.steps[0][1], pipeline.steps[-1][1]
    X = transformer.transform(frame)
    logits = X @ model.coef_[0] + float(model.intercept_[0]) - intercept_shift
    precision, intercept = diagonal_precision(X, logits, sample_weight, float(model.C))
    return posterior_from_precision(transformer, precision, intercept)


def posterior_from_precision(
    transformer: ColumnTransformer, precision: np.ndarray, intercept_precision: float
) -> LaplacePosterior:
    """The posterior keyed by ``transformer``'s slots, from per-column precisions."""
    if not intercept_precision > 0:
        raise ValueError("the intercept's precision is 0: no row carries curvature")
    slots = encoder_slots(transformer)
    return LaplacePosterior(slots, 1.0 / np.asarray(precision, np.float64), 1 / intercept_precision)


def encoder_slots(transformer: ColumnTransformer) -> Slots:
    """Per input column of a fitted one-hot ColumnTransformer, its categories, in output order."""
    slots: list[tuple[str, tuple[Category, ...]]] = []
    for _name, encoder, columns in transformer.transformers_:
        categories = getattr(encoder, "categories_", None)
        if categories is None:
            continue  # "drop" / "passthrough" of nothing: no output columns
        for column, values in zip(columns, categories, strict=True):
            slots.append((str(column), tuple(_category(v) for v in values)))
    return tuple(slots)


def _category(value: Any) -> Category:
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    return str(value)


def load_posterior(
    path: str | Path, transformer: ColumnTransformer | None = None
) -> LaplacePosterior:
    """Read and validate a posterior file; with ``transformer``, check it is that model's."""
    expected = None if transformer is None else encoder_slots(transformer)
    return load_posterior_file(path, expected)
