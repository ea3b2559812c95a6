"""Labelled records -> one-hot feature columns, the layout the published models use.

The published pipeline one-hot encodes each profile field with the cycle's
:class:`~clickrouter.features.FeatureSpace` vocabulary (OOV slot excluded), so
its feature column of ``field=value`` is the value's FeatureSpace slot minus
the OOV slots before it. The trainer builds the same columns directly from the
record frame, vectorised, instead of going through the encoders row by row:
``cols[i, f]`` is row i's active column for field f, or -1 when the value is
out of vocabulary (the encoder's ``handle_unknown="ignore"`` all-zero block).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_DOMAINS, UNKNOWN


def build_space(frame: pd.DataFrame, *, min_count: int = 1) -> FeatureSpace:
    """Vocabulary of every categorical field seen >= ``min_count`` times (sorted).

    ``"unknown"`` is always a category, so no field's encoder is ever empty and
    a missing value keeps a coefficient of its own.
    """
    vocab: dict[str, list[str]] = {}
    for field in CATEGORICAL_FIELDS:
        counts = frame[field].value_counts() if len(frame) else pd.Series(dtype="int64")
        kept = {str(v) for v, c in counts.items() if c >= min_count}
        vocab[field] = sorted(kept | {UNKNOWN})
    return FeatureSpace(vocab)


def column_offsets(space: FeatureSpace) -> np.ndarray:
    """First feature column of each field; shape (n_fields + 1,), last = n_columns."""
    sizes = [len(space.vocabularies[f]) - 1 for f in space.fields]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def encode_columns(frame: pd.DataFrame, space: FeatureSpace) -> np.ndarray:
    """Active feature column per (row, field); shape (n_rows, n_fields), int32, -1 = OOV."""
    offsets = column_offsets(space)
    out = np.empty((len(frame), len(space.fields)), dtype=np.int32)
    for i, field in enumerate(space.fields):
        local = _local_index(frame[field], field, space)  # 0 = OOV, else 1-based
        out[:, i] = np.where(local > 0, offsets[i] + local - 1, -1)
    return out


def _local_index(values: pd.Series, field: str, space: FeatureSpace) -> np.ndarray:
    if field in NUMERIC_DOMAINS:
        numbers = values.to_numpy(dtype=np.int64)
        inside = (numbers >= 0) & (numbers < NUMERIC_DOMAINS[field])
        return np.where(inside, numbers + 1, 0)
    return positions(values, list(space.vocabularies[field][1:])) + 1


def positions(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Index of each value in ``categories`` (-1 when absent); shape (n,), int64.

    Done in Arrow: pandas string columns are Arrow-backed, and a hash lookup
    there avoids materialising millions of Python strings.
    """
    array = pa.array(values, type=pa.string(), from_pandas=True)
    found = pc.index_in(array, value_set=pa.array(categories, type=pa.string()))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def design_matrix(cols: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """Sparse 0/1 matrix of active columns; shape (n_rows, n_columns)."""
    rows, fields = np.nonzero(cols >= 0)
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sp.csr_matrix((data, (rows, cols[rows, fields])), shape=(len(cols), n_columns))
    return matrix


def used_columns(cols: np.ndarray) -> np.ndarray:
    """Sorted distinct active columns of ``cols``."""
    return np.unique(cols[cols >= 0])


def restrict(cols: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Re-index ``cols`` onto positions in ``used``; columns outside it become -1."""
    if len(used) == 0:
        return np.full_like(cols, -1)
    pos = np.searchsorted(used, cols).clip(0, len(used) - 1)
    return np.where((cols >= 0) & (used[pos] == cols), pos, -1).astype(np.int32)


def decode_columns(cols: np.ndarray, space: FeatureSpace) -> dict[str, list[object]]:
    """The profile values behind ``cols`` (OOV -> the OOV sentinel), per field."""
    offsets = column_offsets(space)
    decoded: dict[str, list[object]] = {}
    for i, field in enumerate(space.fields):
        vocab = np.asarray(space.vocabularies[field], dtype=object)  # slot 0 = OOV
        local = np.where(cols[:, i] >= 0, cols[:, i] - offsets[i] + 1, 0)
        decoded[field] = vocab[local].tolist()
    return decoded
