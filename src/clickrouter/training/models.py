"""The sklearn objects the trainer publishes: one Pipeline per campaign.

Every campaign model is ``Pipeline([("features", ColumnTransformer), ("model",
LogisticRegression)])`` reading the profile frame: categorical fields and
``local_hour``/``local_weekday`` one-hot encoded with the cycle's FeatureSpace
vocabulary, unknown values ignored. Any sklearn user can load and call it, and
the ModelBank compiles it. The transformer is fitted once per cycle (explicit
categories make the fit data irrelevant) and shared by all of the cycle's
models; the fitted coefficients, computed on the trainer's own sparse design
matrix with the same column layout, are placed into a LogisticRegression.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame


def feature_transformer(space: FeatureSpace) -> ColumnTransformer:
    """Fitted one-hot transformer whose output columns follow :mod:`.design`'s layout."""

    def categories(fields: tuple[str, ...]) -> list[list[Any]]:
        return [list(space.vocabularies[f][1:]) for f in fields]

    transformer = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(categories=categories(CATEGORICAL_FIELDS), handle_unknown="ignore"),
                list(CATEGORICAL_FIELDS),
            ),
            (
                "local_time",
                OneHotEncoder(categories=categories(NUMERIC_FIELDS), handle_unknown="ignore"),
                list(NUMERIC_FIELDS),
            ),
        ],
        sparse_threshold=1.0,  # always sparse: the same matrix type the trainer fits on
    )
    sample = {f: space.vocabularies[f][1] for f in space.fields}
    return transformer.fit(profile_frame([sample]))


def logistic_pipeline(
    transformer: ColumnTransformer, coef: np.ndarray, intercept: float, *, C: float = 1.0
) -> Pipeline:
    """A fitted pipeline computing ``expit(features @ coef + intercept)``."""
    width = n_columns(transformer)
    if coef.shape != (width,):
        raise ValueError(f"coef has shape {coef.shape}, the transformer emits {width}")
    model = LogisticRegression(C=C)
    model.coef_ = np.asarray(coef, dtype=np.float64).reshape(1, -1).copy()
    model.intercept_ = np.array([float(intercept)])
    model.classes_ = np.array([0, 1])
    model.n_features_in_ = width
    model.n_iter_ = np.array([0], dtype=np.int32)
    return Pipeline([("features", transformer), ("model", model)])


def base_rate_pipeline(transformer: ColumnTransformer, rate: float) -> Pipeline:
    """The same pipeline with zero coefficients: P(sale) = ``rate`` for everyone."""
    coef = np.zeros(n_columns(transformer), dtype=np.float64)
    return logistic_pipeline(transformer, coef, logit(rate))


def logit(rate: float) -> float:
    rate = min(max(rate, 1e-12), 1 - 1e-12)
    return math.log(rate / (1 - rate))


def n_columns(transformer: ColumnTransformer) -> int:
    """Width of the transformer's output (the LogisticRegression's n_features_in_)."""
    encoders = [enc for _, enc, _ in transformer.transformers_ if hasattr(enc, "categories_")]
    return int(sum(len(c) for enc in encoders for c in enc.categories_))
