"""The Laplace posterior file: a logistic model's coefficient variances, beside the model.

A campaign's logistic model may come with a diagonal Gaussian posterior of
its coefficients (the trainer computes it: :mod:`clickrouter.training.posterior`);
the predictor reads it to draw each offer's logit per request
(the ``laplace-thompson`` policy). This module owns the file: its schema,
writing it, and reading it back without trusting anything in it.

A slot is keyed by the model's *input column* and *category* (``("country",
"FR")``, ``("local_hour", 7)``, ``("landing_page", "p2")``), plus the
intercept. The file is plain JSON::

    {"schema": "clickrouter.laplace-posterior", "version": 1,
     "intercept": 0.04,
     "columns": [{"column": "country", "categories": ["DE", "FR"],
                  "variances": [0.8, 0.3]}, ...]}

and lives in the model's version directory as ``<model file stem>.posterior.json``
(:func:`posterior_path`). Any shape, value or name that does not fit the
schema (or the slots it is paired with) is a
:class:`~clickrouter.errors.ModelLoadError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from clickrouter.errors import ModelLoadError

SCHEMA: Final = "clickrouter.laplace-posterior"
VERSION: Final = 1
SUFFIX: Final = ".posterior.json"
# the largest posterior file read: a model has a few hundred slots, so this is
# far above any real file and keeps a hostile one from exhausting memory
MAX_FILE_BYTES: Final = 16 * 1024 * 1024

Category = str | int
Slots = tuple[tuple[str, tuple[Category, ...]], ...]


def posterior_path(model_path: str | Path) -> Path:
    """Where the posterior of the model file ``model_path`` lives: ``<stem>.posterior.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + SUFFIX)


@dataclass(frozen=True)
class LaplacePosterior:
    """Independent Gaussian variances of a logistic model's coefficients and intercept.

    columns: per input column of the model, in its output order, the
        categories of its one-hot slots.
    variances: (n_slots,) float64, one per slot, in that order.
    intercept: the intercept's variance.
    """

    columns: Slots
    variances: np.ndarray
    intercept: float

    def __post_init__(self) -> None:
        problems = _problems(self.columns, self.variances, self.intercept)
        if problems:
            raise ValueError("; ".join(problems))

    def slot_variances(self) -> dict[tuple[str, Category], float]:
        """``{(input column, category): variance}`` of every slot."""
        keys = [(column, c) for column, categories in self.columns for c in categories]
        return dict(zip(keys, self.variances.tolist(), strict=True))

    def logit_variance(self, active: np.ndarray) -> np.ndarray:
        """Variance of the logit of each row of a 0/1 (n, n_slots) activation matrix."""
        return np.asarray(active @ self.variances).ravel() + self.intercept

    def to_json(self) -> dict[str, Any]:
        """The JSON document :func:`posterior_from_json` reads back."""
        out, start = [], 0
        for column, categories in self.columns:
            stop = start + len(categories)
            variances = self.variances[start:stop].tolist()
            out.append({"column": column, "categories": list(categories), "variances": variances})
            start = stop
        return {"schema": SCHEMA, "version": VERSION, "intercept": self.intercept, "columns": out}


def save_posterior(posterior: LaplacePosterior, path: str | Path) -> None:
    """Write the posterior as JSON (finite numbers only, so strict JSON)."""
    text = json.dumps(posterior.to_json(), allow_nan=False, separators=(",", ":"))
    Path(path).write_text(text, encoding="utf-8")


def load_posterior(path: str | Path, expected: Slots | None = None) -> LaplacePosterior:
    """Read and validate a posterior file; with ``expected``, check it has exactly those slots."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from None
    return posterior_from_bytes(raw, path, expected)


def posterior_from_bytes(
    raw: bytes, path: str | Path, expected: Slots | None = None
) -> LaplacePosterior:
    """:func:`load_posterior` of bytes already read from ``path`` (named in the errors)."""
    if len(raw) > MAX_FILE_BYTES:
        raise ModelLoadError(f"{path}: posterior file larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a JSON posterior: {exc}") from None
    except RecursionError:  # arrays nested deeper than the decoder recurses
        raise ModelLoadError(f"{path}: not a JSON posterior: nested too deep") from None
    try:
        return posterior_from_json(data, expected)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: invalid posterior: {exc}", [str(exc)]) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def posterior_from_json(data: Any, expected: Slots | None = None) -> LaplacePosterior:
    """Validate a decoded posterior document; ValueError names the first problem."""
    _expect_keys(data, {"schema", "version", "intercept", "columns"}, "the document")
    if data["schema"] != SCHEMA:
        raise ValueError(f"schema {data['schema']!r}, expected {SCHEMA!r}")
    if type(data["version"]) is not int or data["version"] != VERSION:
        raise ValueError(f"schema version {data['version']!r}, this reader knows {VERSION}")
    if not isinstance(data["columns"], list):
        raise ValueError("'columns' must be a list")
    slots: list[tuple[str, tuple[Category, ...]]] = []
    variances: list[float] = []
    for entry in data["columns"]:
        column, categories, values = _column_entry(entry)
        slots.append((column, categories))
        variances.extend(values)
    posterior = LaplacePosterior(
        tuple(slots), np.array(variances, dtype=np.float64), _number(data["intercept"], "intercept")
    )
    if expected is not None:
        check_slots(posterior.columns, expected)
    return posterior


def _column_entry(entry: Any) -> tuple[str, tuple[Category, ...], list[float]]:
    _expect_keys(entry, {"column", "categories", "variances"}, "a column entry")
    column = entry["column"]
    if not isinstance(column, str) or not column:
        raise ValueError(f"column name {column!r} is not a non-empty string")
    categories, values = entry["categories"], entry["variances"]
    if not isinstance(categories, list) or not isinstance(values, list):
        raise ValueError(f"column {column!r}: categories and variances must be lists")
    if len(categories) != len(values):
        raise ValueError(
            f"column {column!r}: {len(categories)} categories but {len(values)} variances"
        )
    for c in categories:
        if isinstance(c, bool) or not isinstance(c, str | int):
            raise ValueError(f"column {column!r}: category {c!r} is not a string or integer")
    numbers = [_number(v, f"column {column!r} variance") for v in values]
    return column, tuple(categories), numbers


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} {value!r} is not a number")
    return float(value)


def _expect_keys(data: Any, keys: set[str], what: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    if set(data) != keys:
        extra, missing = sorted(set(data) - keys), sorted(keys - set(data))
        raise ValueError(f"{what}: unknown keys {extra}, missing keys {missing}")


def _problems(columns: Slots, variances: np.ndarray, intercept: float) -> list[str]:
    """Why these arrays are not a posterior (empty when they are)."""
    problems = []
    names = [column for column, _ in columns]
    if len(set(names)) != len(names):
        problems.append(f"an input column appears twice: {names}")
    for column, categories in columns:
        if len(set(categories)) != len(categories):
            problems.append(f"column {column!r} repeats a category")
    n_slots = sum(len(categories) for _, categories in columns)
    if variances.shape != (n_slots,):
        problems.append(f"variances have shape {variances.shape}, the slots are {n_slots}")
    elif not (np.isfinite(variances).all() and (variances > 0).all()):
        problems.append("every variance must be a finite positive number")
    if not (math.isfinite(intercept) and intercept > 0):
        problems.append(f"the intercept's variance {intercept!r} is not finite and positive")
    return problems


def check_slots(found: Slots, expected: Sequence[tuple[str, tuple[Category, ...]]]) -> None:
    """ValueError unless ``found`` is exactly ``expected`` (same columns, categories, order)."""
    known = dict(expected)
    for column, categories in found:
        if column not in known:
            raise ValueError(f"unknown input column {column!r} (the model reads {list(known)})")
        if categories != known[column]:
            raise ValueError(f"column {column!r}: categories differ from the model's")
    if tuple(found) != tuple(expected):
        raise ValueError("the columns differ from the model's (missing or out of order)")
