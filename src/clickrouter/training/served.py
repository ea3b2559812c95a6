"""Scoring the served model of a campaign on the held-out slice, for the guard.

The served model may be anything a data scientist published; the generic path
rebuilds the slice's profile frame and calls ``predict_proba``. Most served
models are the trainer's own ``Pipeline(ColumnTransformer(OneHotEncoder...),
LogisticRegression)``: for those the logit is a sum of one coefficient per
field, so the slice is scored by table look-ups on its encoded columns,
without sklearn's per-call validation and encoding, which dominate the cost
of scoring a small slice and add up over thousands of campaigns per cycle.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from clickrouter.training.design import column_offsets, decode_columns, positions


def served_proba(
    model: Any, cols: np.ndarray, space: FeatureSpace, pages: np.ndarray | None = None
) -> np.ndarray:
    """P(sale) of ``model`` for encoded rows ``cols`` (shape (n, n_fields)) of ``space``.

    pages: each row's landing page id, for a model that reads them (None: a
    page the model does not know, so every row scores as its campaign).
    """
    tables = one_hot_logistic_tables(model, space)
    if tables is None:
        return _generic(model, cols, space, pages)
    intercept, per_field, page_effects = tables
    offsets = column_offsets(space)
    logit = np.full(len(cols), intercept)
    for i, contrib in enumerate(per_field):
        local = np.where(cols[:, i] >= 0, cols[:, i] - offsets[i] + 1, 0)
        logit += contrib[local]
    if page_effects and pages is not None:
        found = positions(pd.Series(pages, dtype=object), list(page_effects))
        effects = np.append(np.fromiter(page_effects.values(), dtype=np.float64), 0.0)
        logit += effects[found]  # -1, an unknown page: the appended 0
    return np.asarray(expit(logit))


def one_hot_logistic_tables(
    model: Any, space: FeatureSpace
) -> tuple[float, list[np.ndarray], dict[str, float]] | None:
    """(intercept, per field: contribution by local index of ``space``, per
    landing page id: its contribution), or None.

    Only for Pipeline([ColumnTransformer of plain OneHotEncoders, binary
    LogisticRegression]); anything else (drop, infrequent categories, other
    steps) returns None and goes the generic way.
    """
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    transformer, final = model.steps[0][1], model.steps[1][1]
    if not (isinstance(transformer, ColumnTransformer) and isinstance(final, LogisticRegression)):
        return None
    columns = _encoder_columns(transformer)
    coef = np.asarray(final.coef_, dtype=np.float64)
    if columns is None or coef.shape != (1, sum(len(c) for c in columns.values())):
        return None
    if PAGE_INPUT in columns and list(columns)[-1] != PAGE_INPUT:
        return None  # the page's columns are not last: not a layout this reads
    pages = columns.pop(PAGE_INPUT, [])
    page_coef = coef[0][len(coef[0]) - len(pages) :]
    effects = {str(p): float(c) for p, c in zip(pages, page_coef, strict=True)}
    return float(final.intercept_[0]), _field_tables(columns, coef[0], space), effects


def _encoder_columns(transformer: ColumnTransformer) -> dict[str, list[Any]] | None:
    """Field -> categories in output-column order, when every step is a plain one-hot."""
    out: dict[str, list[Any]] = {}
    for _, encoder, fields in transformer.transformers_:
        if isinstance(encoder, str) and encoder == "drop":
            continue
        if not _plain_one_hot(encoder) or not isinstance(fields, list):
            return None
        for field, categories in zip(fields, encoder.categories_, strict=True):
            if field not in (*space_fields(), PAGE_INPUT) or field in out:
                return None
            out[field] = list(categories)
    return out


def _plain_one_hot(encoder: Any) -> bool:
    return (
        isinstance(encoder, OneHotEncoder)
        and encoder.drop_idx_ is None
        and not getattr(encoder, "_infrequent_enabled", False)
    )


def space_fields() -> tuple[str, ...]:
    return CATEGORICAL_FIELDS + NUMERIC_FIELDS


def _field_tables(
    columns: dict[str, list[Any]], coef: np.ndarray, space: FeatureSpace
) -> list[np.ndarray]:
    tables = []
    start = 0
    starts = {}
    for field, categories in columns.items():  # output order
        starts[field] = start
        start += len(categories)
    for field in space.fields:
        vocab = space.vocabularies[field]
        table = np.zeros(len(vocab), dtype=np.float64)
        if field in columns:
            where = {v: starts[field] + j for j, v in enumerate(columns[field])}
            for local, value in enumerate(vocab[1:], start=1):
                column = where.get(value)
                table[local] = coef[column] if column is not None else 0.0
        tables.append(table)
    return tables


def _generic(
    model: Any, cols: np.ndarray, space: FeatureSpace, pages: np.ndarray | None = None
) -> np.ndarray:
    values = decode_columns(cols, space)
    frame = pd.DataFrame({f: values[f] for f in CATEGORICAL_FIELDS}, dtype=object)
    for f in NUMERIC_FIELDS:  # the dtypes profile_frame gives
        frame[f] = np.asarray(values[f], dtype=np.int64)
    # no page ids: one no model knows, so each row scores as its campaign
    frame[PAGE_INPUT] = pd.Series(
        pages if pages is not None else "", dtype=object, index=frame.index
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # values it has never seen
        return np.asarray(model.predict_proba(frame[list(model.feature_names_in_)])[:, 1])
