"""The sklearn objects the trainer publishes: one Pipeline per campaign.

Every campaign model is ``Pipeline([("features", ColumnTransformer), ("model",
LogisticRegression)])`` reading the profile frame: categorical fields and
``local_hour``/``local_weekday`` one-hot encoded with the cycle's FeatureSpace
vocabulary, unknown values ignored. Any sklearn user can load and call it, and
the ModelBank compiles it. The transformer is fitted once per cycle (explicit
categories make the fit data irrelevant) and shared by all of the cycle's
models; the fitted coefficients, computed on the trainer's own sparse design
matrix with the same column layout, are placed into a LogisticRegression.

The model of a campaign with several landing pages reads one more input
column, ``landing_page`` (:data:`PAGE_INPUT`, the page id), one-hot encoded
over the campaign's page ids in catalogue order, its columns after the
profile's: the pages share the profile effects and each has an effect of its
own. A page id outside those categories (a page added since) gets no column
and scores at the campaign's level. :class:`Transformers` gives the cycle's
transformer for each set of page ids.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame


def feature_transformer(space: FeatureSpace, pages: tuple[str, ...] = ()) -> ColumnTransformer:
    """Fitted one-hot transformer whose output columns follow :mod:`.design`'s layout.

    pages: the campaign's landing page ids, when its model tells them apart:
    one more input column, :data:`PAGE_INPUT`, whose one-hot columns come last.
    """

    def categories(fields: tuple[str, ...]) -> list[list[Any]]:
        return [list(space.vocabularies[f][1:]) for f in fields]

    steps: list[tuple[str, OneHotEncoder, list[str]]] = [
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
    ]
    if pages:
        encoder = OneHotEncoder(categories=[list(pages)], handle_unknown="ignore")
        steps.append(("landing_page", encoder, [PAGE_INPUT]))
    # always sparse: the same matrix type the trainer fits on
    transformer = ColumnTransformer(steps, sparse_threshold=1.0)
    sample = profile_frame([{f: space.vocabularies[f][1] for f in space.fields}])
    if pages:
        sample[PAGE_INPUT] = pd.Series([pages[0]], dtype=object)
    return transformer.fit(sample)


class Transformers:
    """The cycle's fitted transformers: one per set of page ids (``()``: no page input).

    Page ids are often the campaign's own, so a cycle would otherwise fit a
    ColumnTransformer per campaign, far slower than copying one. One is
    fitted per number of pages; another set of as many pages is a copy of it
    whose page encoder has those categories, as a parameter and as its fitted
    state: the same object a fit would give, down to its pickled bytes. The copy
    is new only along the way to its two page encoders and shares the rest (the
    profile encoders, column lists, arrays) with the fitted one, which no one
    changes: copying a transformer's whole vocabulary per campaign is the cost
    this avoids.
    """

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self._fitted: dict[tuple[str, ...], ColumnTransformer] = {}
        self._by_count: dict[int, ColumnTransformer] = {}

    def __call__(self, pages: tuple[str, ...] = ()) -> ColumnTransformer:
        fitted = self._fitted.get(pages)
        if fitted is None:
            fitted = self._fitted[pages] = self._build(pages)
        return fitted

    def _build(self, pages: tuple[str, ...]) -> ColumnTransformer:
        template = self._by_count.get(len(pages))
        if template is None or not pages:
            fitted = feature_transformer(self.space, pages)
            self._by_count[len(pages)] = fitted
            return fitted
        fitted = _shallow(template)
        # the parameter (what a clone refits with) and the fitted encoder
        fitted.transformers = [_with_pages(step, pages, False) for step in template.transformers]
        fitted.transformers_ = [_with_pages(step, pages, True) for step in template.transformers_]
        return fitted


def _with_pages(step: tuple[str, Any, Any], pages: tuple[str, ...], fitted: bool) -> Any:
    """A ColumnTransformer step, its page encoder (a copy) given the categories ``pages``."""
    name, encoder, columns = step
    if name != "landing_page":
        return step
    encoder = _shallow(encoder)
    # a list of its own, as a fit's clone makes: a shared one would pickle differently,
    # and a model file's bytes must not depend on how its transformer was made
    encoder.categories = [list(pages)]
    if fitted:
        encoder.categories_ = [np.array(pages, dtype=object)]
    return (name, encoder, columns)


def _shallow(estimator: Any) -> Any:
    """A new estimator with the same attributes, in the same order (no sklearn hooks)."""
    copied = estimator.__class__.__new__(estimator.__class__)
    copied.__dict__.update(estimator.__dict__)
    return copied


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
