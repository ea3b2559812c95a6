"""Compile one-hot logistic pipelines from their fitted state, without probing.

The models :mod:`clickrouter.training` publishes are ``Pipeline([ColumnTransformer
of OneHotEncoders, LogisticRegression])``: every output column is one category
of one input column and holds 1.0 where the input has that value. What the
:class:`~clickrouter.serving.compiler.Prober` reads off such a model by
transforming its probe frame through sklearn can be read off the encoders'
categories and the coefficients: a probe row's logit is the sum of the
coefficients of the categories its values hit, plus the intercept.

:class:`OneHotReader` is the prober's twin for these models and computes the
same numbers in the same floating-point order. The prober's sparse product
sums a row's stored entries left to right in column order, starting from 0.0
(each entry 1.0 times a coefficient, which is exact), then adds the
intercept. Here a row's terms are summed input by input in that same column
order; an input whose value the encoder does not know adds a 0.0 term, which
leaves any sum that started from 0.0 unchanged. The link is checked as the
prober checks it, once per estimator kind.

Anything else is not recognised (:meth:`OneHotReader.compile` returns None)
and goes to the prober: another estimator or transformer (or a subclass), an
encoder option that changes the encoding (``drop``, infrequent categories,
``handle_unknown`` other than ``"ignore"``, an output dtype other than
float64), transformer weights, categories whose type is not the probe
frame's for that column (strings for categorical fields and the page, sorted
integers for numeric fields), or repeated categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.features import OOV, FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from clickrouter.serving.compiler import CompiledModel, check_range, link_scale, selected_names

_TEXT_INPUTS = frozenset((*CATEGORICAL_FIELDS, PAGE_INPUT))  # object columns of strings
_CACHE_SIZE = 256


@dataclass(frozen=True)
class _Input:
    """One input column of one encoder: its categories and first output column."""

    name: str
    categories: tuple[Any, ...]
    offset: int


@dataclass(frozen=True)
class _Readable:
    """A recognised model: its inputs in output-column order and its linear part."""

    inputs: tuple[_Input, ...]
    coef: np.ndarray  # (n_outputs,)
    intercept: float
    final: LogisticRegression


class OneHotReader:
    """Compiles recognised models over one FeatureSpace exactly as the prober does.

    The probe rows are the prober's: row 0 the baseline (OOV for categorical
    fields and the page, 0 for numeric ones), then one row per slot of each
    field, in the space's order, the numeric fields' OOV slot left out.
    """

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self._rows: dict[str, tuple[int, tuple[Any, ...]]] = {}  # field -> first row, values
        slots = [-1]
        for field in space.fields:
            block = space.field_slots(field)
            values = space.vocabularies[field]
            if field in NUMERIC_FIELDS:  # extraction never yields an out-of-domain number
                block, values = block[1:], values[1:]
            self._rows[field] = (len(slots), tuple(values))
            slots.extend(block)
        self.n_rows = len(slots)
        self.slots = np.asarray(slots, dtype=np.intp)
        self._blocks = [space.field_slots(f) for f in space.fields]
        self._links: dict[tuple[Any, ...], float] = {}
        self._positions: dict[tuple[str, tuple[Any, ...]], np.ndarray] = {}
        self._hit_cache: dict[tuple[_Input, ...], np.ndarray] = {}

    def compile(self, model: Any, columns: list[str], pages: Sequence[str]) -> CompiledModel | None:
        """What ``Prober(space).compile(model, columns, pages)`` returns, or None when
        the model is not recognised; raises NotCompilable as the prober does."""
        readable = _readable(model, columns)
        if readable is None:
            return None
        hits = self._hits(readable.inputs)
        # a probe row's term of an input whose value hits no category is 0.0: index -1
        # of the coefficients with one 0.0 appended
        coef = np.append(readable.coef, 0.0)
        terms = coef[hits]
        page_terms = np.repeat(terms[:1], len(pages) + 1, axis=0)
        for k, source in enumerate(readable.inputs):
            if source.name == PAGE_INPUT:
                page_terms[:, k] = self._page_terms(source, readable.coef, pages)
        decision = _row_sums(terms, readable.intercept)
        scale = self._link_scale(readable.final, hits, decision)
        page_logits = np.zeros(len(pages), dtype=np.float64)
        if PAGE_INPUT in columns:
            page_decision = _row_sums(page_terms, readable.intercept)
            page_logits = scale * page_decision[1:] - scale * page_decision[0]
        logits = scale * decision
        contrib = np.zeros(self.space.n_slots, dtype=np.float64)
        contrib[self.slots[1:]] = logits[1:] - logits[0]
        check_range(self._blocks, logits[0], contrib, page_logits)
        return CompiledModel(intercept=float(logits[0]), contrib=contrib, pages=page_logits)

    def _hits(self, inputs: tuple[_Input, ...]) -> np.ndarray:
        """(probe row, input): the output column the row's value of the input sets
        (-1: none), computed once per distinct set of inputs."""
        found = self._hit_cache.get(inputs)
        if found is None:
            found = np.full((self.n_rows, len(inputs)), -1, dtype=np.intp)
            for k, source in enumerate(inputs):
                positions = self._positions_of(source)
                found[:, k] = np.where(positions >= 0, positions + source.offset, -1)
            if len(self._hit_cache) >= _CACHE_SIZE:
                self._hit_cache.pop(next(iter(self._hit_cache)))
            self._hit_cache[inputs] = found
        return found

    def _positions_of(self, source: _Input) -> np.ndarray:
        """Per probe row, the category its value of ``source`` hits (-1: none),
        computed once per distinct list of categories."""
        key = (source.name, source.categories)
        found = self._positions.get(key)
        if found is None:
            index = {value: i for i, value in enumerate(source.categories)}
            baseline = index.get(_baseline(source.name), -1)
            positions = np.full(self.n_rows, baseline, dtype=np.intp)
            if source.name in self._rows:
                first, values = self._rows[source.name]
                positions[first : first + len(values)] = [index.get(v, -1) for v in values]
            if len(self._positions) >= _CACHE_SIZE:
                self._positions.pop(next(iter(self._positions)))
            found = self._positions[key] = positions
        return found

    def _page_terms(self, source: _Input, coef: np.ndarray, pages: Sequence[str]) -> np.ndarray:
        """The page input's term in the baseline row, then with each page id."""
        index = {value: i for i, value in enumerate(source.categories)}
        out = np.zeros(len(pages) + 1, dtype=np.float64)
        for row, page in enumerate((OOV, *pages)):
            position = index.get(page, -1)
            if position >= 0:
                out[row] = coef[source.offset + position]
        return out

    def _link_scale(self, final: Any, hits: np.ndarray, decision: np.ndarray) -> float:
        """The prober's link check on the same probe rows, once per estimator kind."""
        kind = (type(final), getattr(final, "multi_class", None), getattr(final, "loss", None))
        if kind not in self._links:
            rows, inputs = np.nonzero(hits >= 0)
            features = sp.csr_matrix(
                (np.ones(len(rows)), (rows, hits[rows, inputs])),
                shape=(self.n_rows, final.coef_.shape[1]),
            )
            self._links[kind] = link_scale(final, features, decision)
        return self._links[kind]


def _baseline(name: str) -> Any:
    """The probe baseline's value of an input column."""
    return 0 if name in NUMERIC_FIELDS else OOV


def _row_sums(terms: np.ndarray, intercept: float) -> np.ndarray:
    """Each row's terms summed left to right from 0.0, then the intercept added."""
    total = np.zeros(terms.shape[0], dtype=np.float64)
    for k in range(terms.shape[1]):
        total += terms[:, k]
    total += intercept
    return total


def _readable(model: Any, columns: list[str]) -> _Readable | None:
    """The model's inputs and linear part when it is a recognised one-hot pipeline."""
    if type(model) is not Pipeline or len(model.steps) != 2:
        return None
    transformer, final = model.steps[0][1], model.steps[1][1]
    if type(transformer) is not ColumnTransformer or transformer.transformer_weights:
        return None
    linear = _linear(final)
    if linear is None:
        return None
    inputs = _inputs(transformer, set(columns))
    if inputs is None:
        return None
    width = inputs[-1].offset + len(inputs[-1].categories) if inputs else 0
    if width != linear[0].shape[0]:
        return None
    return _Readable(tuple(inputs), linear[0], linear[1], final)


def _linear(final: Any) -> tuple[np.ndarray, float] | None:
    """(coefficients, intercept) of a binary float64 LogisticRegression."""
    if type(final) is not LogisticRegression or len(getattr(final, "classes_", ())) != 2:
        return None
    coef, intercept = final.coef_, final.intercept_
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
        return None
    if coef.shape[0] != 1 or not isinstance(intercept, np.ndarray):
        return None
    if intercept.dtype != np.float64 or intercept.shape != (1,):
        return None
    return coef[0], float(intercept[0])


def _inputs(transformer: ColumnTransformer, columns: set[str]) -> list[_Input] | None:
    """Every encoded input column, in output-column order (None: not recognised)."""
    inputs: list[_Input] = []
    offset = 0
    for _, encoder, selection in transformer.transformers_:
        if isinstance(encoder, str) and encoder == "drop":
            continue
        if not _plain_encoder(encoder):
            return None
        names = selected_names(transformer, selection)
        if names is None or len(names) != len(encoder.categories_):
            return None
        for name, categories in zip(names, encoder.categories_, strict=True):
            values = _plain_categories(name, categories) if name in columns else None
            if values is None:
                return None
            inputs.append(_Input(name, values, offset))
            offset += len(values)
    return inputs


def _plain_encoder(encoder: Any) -> bool:
    """A fitted OneHotEncoder emitting 1.0 per known category and nothing else."""
    return (
        type(encoder) is OneHotEncoder
        and encoder.handle_unknown == "ignore"
        and encoder.drop is None
        and getattr(encoder, "drop_idx_", None) is None
        and not getattr(encoder, "_infrequent_enabled", True)
        and np.dtype(encoder.dtype) == np.float64
    )


def _plain_categories(name: str, categories: Any) -> tuple[Any, ...] | None:
    """The categories, when of the probe frame's type for ``name`` and each listed once."""
    if not isinstance(categories, np.ndarray) or categories.ndim != 1:
        return None
    values = tuple(categories.tolist())
    if name in _TEXT_INPUTS:
        plain = categories.dtype == object and set(map(type, values)) <= {str}
        return values if plain and len(set(values)) == len(values) else None
    if name in NUMERIC_FIELDS:  # sklearn looks numbers up by bisection: sorted, once each
        plain = categories.dtype.kind in "iu" and all(a < b for a, b in pairwise(values))
        return values if plain else None
    return None
