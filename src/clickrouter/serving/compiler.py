"""Compile a fitted linear sklearn model into per-slot contributions.

A model whose preprocessing acts on each input column separately (one-hot
encoders, scalers, passthrough) followed by a logistic link is additive in the
profile fields::

    logit(profile) = L0 + sum_f T_f[profile[f]]

so it is fully described by one number per FeatureSpace slot. Rather than
re-implement the encoders' rules (unknown handling, infrequent categories,
dropped columns), we *probe* the fitted model: score a frame that varies one
field at a time away from a baseline row and read each contribution off the
model's own ``decision_function``. Whatever sklearn does, the table does too.

A model may also read the offer's landing page (:data:`~clickrouter.catalogue.PAGE_INPUT`,
the page id). Per-column preprocessing keeps the logit additive in it too, so
the page adds one number per page id: the probe frame holds the OOV sentinel
in that column, and the baseline row is scored once more with each of the
campaign's page ids. The bank folds each page's number into its offer's column.

Models outside this family get a :class:`NotCompilable` reason and are served
by the generic worker pool instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from clickrouter.catalogue import DEFAULT_PAGE_ID, PAGE_INPUT
from clickrouter.features import OOV, FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame

# transformers whose every output column depends on exactly one input column
_COLUMNWISE = (
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    MinMaxScaler,
    MaxAbsScaler,
    RobustScaler,
    KBinsDiscretizer,
    SimpleImputer,
)
# exp(-logit) of a partial product must stay finite: |logit| bound per model
_MAX_LOGIT_RANGE = 700.0
_LINK_TOLERANCE = 1e-12
_FEATURE_CACHE_SIZE = 64


class NotCompilable(Exception):
    """The model is valid but outside the compiled family; the message says why."""


@dataclass(frozen=True)
class CompiledModel:
    """Contributions of one model: ``logit = intercept + pages[p] + sum(contrib[active slots])``
    for the offer of its campaign's page ``p``.

    ``contrib`` has shape (n_slots,) in the FeatureSpace's slot order; ``pages``
    one number per page of the campaign, in catalogue order (zeros for a model
    that does not read the page).
    """

    intercept: float
    contrib: np.ndarray
    pages: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1))


def categories_by_field(model: Any) -> dict[str, set[str]]:
    """Categorical values each profile field's encoders know, across the whole model."""
    found: dict[str, set[str]] = {}
    for columns, estimator in _column_scopes(model, None):
        categories = getattr(estimator, "categories_", None)
        names = getattr(estimator, "feature_names_in_", None)
        names = list(names) if names is not None else columns
        if categories is None or names is None or len(names) != len(categories):
            continue
        for name, values in zip(names, categories, strict=True):
            if name in CATEGORICAL_FIELDS:
                found.setdefault(str(name), set()).update(map(str, values))
    return found


def page_categories(model: Any) -> set[str] | None:
    """The page ids the model's encoders know for :data:`PAGE_INPUT` (None: not found)."""
    found: set[str] | None = None
    for columns, estimator in _column_scopes(model, None):
        categories = getattr(estimator, "categories_", None)
        names = getattr(estimator, "feature_names_in_", None)
        names = list(names) if names is not None else columns
        if categories is None or names is None or len(names) != len(categories):
            continue
        for name, values in zip(names, categories, strict=True):
            if name == PAGE_INPUT:
                found = (found or set()) | set(map(str, values))
    return found


def has_imputer(model: Any) -> bool:
    """Whether an imputer may rewrite values before the model's encoders see them."""
    return any(isinstance(est, SimpleImputer) for _, est in _column_scopes(model, None))


def _column_scopes(est: Any, columns: list[str] | None) -> Iterator[tuple[list[str] | None, Any]]:
    """Every estimator in the tree, with the profile columns it is fed when known."""
    yield columns, est
    if isinstance(est, Pipeline):
        for _, step in est.steps:
            yield from _column_scopes(step, columns)
    elif isinstance(est, ColumnTransformer):
        for _, trans, cols in est.transformers_:
            selected = selected_names(est, cols)
            if not isinstance(trans, str):
                yield from _column_scopes(trans, selected)


def selected_names(ct: ColumnTransformer, cols: Any) -> list[str] | None:
    """The profile columns a ColumnTransformer selection names (None: not by name)."""
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, slice) or not hasattr(cols, "__iter__"):
        return None
    picked = list(cols)
    if all(isinstance(c, str) for c in picked):
        return [str(c) for c in picked]
    names = [str(n) for n in getattr(ct, "feature_names_in_", [])]
    if names and all(isinstance(c, int | np.integer) for c in picked):
        return [names[int(c)] for c in picked]
    if names and len(picked) == len(names) and all(isinstance(c, bool | np.bool_) for c in picked):
        return [n for n, keep in zip(names, picked, strict=True) if keep]
    return None


def consumed_fields(model: Any, columns: list[str]) -> set[str]:
    """Profile columns the model actually reads (a ColumnTransformer may drop some)."""
    first = model.steps[0][1] if isinstance(model, Pipeline) else model
    if not isinstance(first, ColumnTransformer):
        return set(columns)
    used: set[str] = set()
    for _, trans, cols in first.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        names = selected_names(first, cols)
        if names is None:
            return set(columns)
        used.update(names)
    return used


def linear_parts(model: Any) -> tuple[Any | None, Any]:
    """(preprocessing or None, final linear estimator), or raise NotCompilable."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    _check_linear(final)
    if not isinstance(model, Pipeline) or len(model.steps) == 1:
        return None, final
    preprocessing = model[:-1]
    _check_columnwise(preprocessing)
    return preprocessing, final


def _check_linear(final: Any) -> None:
    if isinstance(final, LogisticRegression):
        pass
    elif isinstance(final, SGDClassifier):
        if final.loss != "log_loss":
            raise NotCompilable(f"SGDClassifier(loss={final.loss!r}) is not a logistic model")
    else:
        raise NotCompilable(f"{type(final).__name__} is not a supported linear classifier")
    if np.asarray(final.coef_).shape[0] != 1:
        raise NotCompilable("linear model is not binary (coef_ has several rows)")


def _check_columnwise(est: Any) -> None:
    if isinstance(est, Pipeline):
        for _, step in est.steps:
            _check_columnwise(step)
    elif isinstance(est, ColumnTransformer):
        for _, trans, _cols in est.transformers_:
            if not (isinstance(trans, str) and trans in ("passthrough", "drop")):
                _check_columnwise(trans)
    elif isinstance(est, _COLUMNWISE):
        _check_encoder_options(est)
    elif isinstance(est, FunctionTransformer) and est.func is None:
        pass  # identity: how ColumnTransformer stores remainder="passthrough"
    elif not (isinstance(est, str) and est in ("passthrough", "drop")):
        raise NotCompilable(
            f"{type(est).__name__} mixes columns; only per-column transforms compile"
        )


def tolerate_unknown(model: Any) -> None:
    """Serve unseen values of handle_unknown="error" encoders as all-zero rows.

    sklearn itself would raise on such a value; a request must never fail for
    an unseen device name, so the bank reads it as "ignore" (documented).
    """
    for _, est in _column_scopes(model, None):
        if isinstance(est, OneHotEncoder) and est.handle_unknown == "error":
            est.handle_unknown = "ignore"


def _check_encoder_options(est: Any) -> None:
    if isinstance(est, SimpleImputer) and est.add_indicator:
        raise NotCompilable("SimpleImputer(add_indicator=True) is not supported")
    if isinstance(est, OrdinalEncoder) and est.handle_unknown == "error":
        raise NotCompilable("OrdinalEncoder(handle_unknown='error') fails on unseen values")


class Prober:
    """Builds, once per FeatureSpace, the probe frame every model is scored on.

    Row 0 is the baseline (OOV for categorical fields and the page, 0 for
    numeric ones); every other row differs from it in exactly one field, one
    row per slot. The page rows of a model reading the page are the baseline
    with each of its campaign's page ids.
    """

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self.sentinel = OOV
        rows, slots = self._rows()
        self.frame = profile_frame(rows)
        self.frame[PAGE_INPUT] = pd.Series([self.sentinel] * len(rows), dtype=object)
        self.slots = np.asarray(slots, dtype=np.intp)  # slot of probe row i (row 0: -1)
        self._cache: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._page_cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._links: dict[tuple[Any, ...], float] = {}
        self._blocks = [self.space.field_slots(f) for f in self.space.fields]

    def _rows(self) -> tuple[list[dict[str, Any]], list[int]]:
        baseline: dict[str, Any] = {f: self.sentinel for f in CATEGORICAL_FIELDS}
        baseline.update({f: 0 for f in NUMERIC_FIELDS})
        rows, slots = [baseline], [-1]
        for field in self.space.fields:
            block = self.space.field_slots(field)
            for slot, value in zip(block, self.space.vocabularies[field], strict=True):
                if value == OOV and field in NUMERIC_FIELDS:
                    continue  # extraction never yields an out-of-domain number
                rows.append({**baseline, field: value})
                slots.append(slot)
        return rows, slots

    def compile(
        self, model: Any, columns: list[str], pages: Sequence[str] = (DEFAULT_PAGE_ID,)
    ) -> CompiledModel:
        """Contributions of ``model`` over this space for a campaign with ``pages``
        (its page ids, in catalogue order); raise NotCompilable."""
        preprocessing, final = linear_parts(model)
        self._check_vocabulary(model, columns)
        reads_page = PAGE_INPUT in columns
        if reads_page and preprocessing is None:
            raise NotCompilable(f"{PAGE_INPUT!r} is a page id: it needs an encoder")
        with warnings.catch_warnings():
            # probing feeds values on purpose that the encoders have never seen
            warnings.simplefilter("ignore", UserWarning)
            if preprocessing is not None:
                tolerate_unknown(preprocessing)
            key = (_fingerprint(preprocessing) if preprocessing is not None else "", tuple(columns))
            features = self._features(key, preprocessing, columns)
            decision = _decision(features, final)
            scale = self._link_scale(final, features, decision)
            page_logits = np.zeros(len(pages), dtype=np.float64)
            if reads_page:
                page_decision = _decision(self._page_features(key, preprocessing, pages), final)
                page_logits = scale * page_decision[1:] - scale * page_decision[0]
        logits = scale * decision
        contrib = np.zeros(self.space.n_slots, dtype=np.float64)
        contrib[self.slots[1:]] = logits[1:] - logits[0]
        check_range(self._blocks, logits[0], contrib, page_logits)
        return CompiledModel(intercept=float(logits[0]), contrib=contrib, pages=page_logits)

    def _features(
        self, key: tuple[str, tuple[str, ...]], preprocessing: Any | None, columns: list[str]
    ) -> Any:
        """The probe frame through the model's preprocessing, cached by its content.

        Campaigns trained by one pipeline often share identical fitted encoders
        (same categories); transforming the probe frame pays sklearn's per-call
        overhead, hashing the encoders' pickle costs a small fraction of it.
        """
        if key not in self._cache:
            if len(self._cache) >= _FEATURE_CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            frame = self.frame[columns]
            if preprocessing is None:
                features = frame.to_numpy(dtype=np.float64)
            else:
                features = preprocessing.transform(frame)
            self._cache[key] = sp.csr_matrix(features)
        return self._cache[key]

    def _page_features(
        self, key: tuple[str, tuple[str, ...]], preprocessing: Any, pages: Sequence[str]
    ) -> Any:
        """The baseline row, then one row per page id, through the preprocessing (cached)."""
        page_key = (*key, tuple(pages))
        if page_key not in self._page_cache:
            if len(self._page_cache) >= _FEATURE_CACHE_SIZE:
                self._page_cache.pop(next(iter(self._page_cache)))
            frame = self.frame.iloc[[0] * (len(pages) + 1)][list(key[1])].reset_index(drop=True)
            frame[PAGE_INPUT] = pd.Series([self.sentinel, *pages], dtype=object)
            self._page_cache[page_key] = sp.csr_matrix(preprocessing.transform(frame))
        return self._page_cache[page_key]

    def _link_scale(self, final: Any, features: Any, decision: np.ndarray) -> float:
        """Checked once per estimator kind: the link does not depend on the coefficients."""
        kind = (type(final), getattr(final, "multi_class", None), getattr(final, "loss", None))
        if kind not in self._links:
            self._links[kind] = link_scale(final, features, decision)
        return self._links[kind]

    def _check_vocabulary(self, model: Any, columns: list[str]) -> None:
        known = categories_by_field(model)
        for field in consumed_fields(model, columns):
            if field in CATEGORICAL_FIELDS and field not in known:
                raise NotCompilable(f"cannot find the categories the model knows for {field!r}")


def check_range(
    blocks: list[range], intercept: float, contrib: np.ndarray, pages: np.ndarray
) -> None:
    """Raise NotCompilable when a logit's partial sums could overflow exp(-logit)."""
    bound = abs(intercept) + float(np.abs(pages).max(initial=0.0))
    for block in blocks:
        bound += float(np.abs(contrib[block.start : block.stop]).max(initial=0.0))
    if not np.isfinite(bound) or bound > _MAX_LOGIT_RANGE:
        raise NotCompilable(f"logit range {bound:.3g} too wide for the compiled path")


def _decision(features: Any, final: Any) -> np.ndarray:
    """The linear decision function of probe rows.

    sklearn's decision_function computes the same product but re-validates its
    input (milliseconds a call). A CSR product sums each row's stored entries
    one after the other, so a probe row's logit depends on its content only,
    not on its position in the frame (BLAS may round rows differently by
    position): the compile memo relies on this to reuse contributions in a
    grown space, and the page rows' baseline equals the probe frame's.
    """
    decision = np.asarray(features @ final.coef_.ravel(), dtype=np.float64)
    decision += float(np.ravel(final.intercept_)[0])
    return decision


def _fingerprint(obj: Any) -> str:
    """Content hash of a fitted object: equal bytes mean equal fitted state."""
    return hashlib.blake2b(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


def link_scale(final: Any, features: Any, decision: np.ndarray) -> float:
    """1.0 for the usual logistic link; 2.0 for a binary multinomial fit."""
    sample = np.linspace(0, decision.shape[0] - 1, num=min(decision.shape[0], 32)).astype(np.intp)
    proba = final.predict_proba(features[sample])[:, 1]
    for scale in (1.0, 2.0):
        if np.allclose(expit(scale * decision[sample]), proba, rtol=0, atol=_LINK_TOLERANCE):
            return scale
    raise NotCompilable("predict_proba is not a logistic function of decision_function")
