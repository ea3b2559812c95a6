"""FeatureSpace: canonical profile fields -> one-hot slot indices.

One index space shared by training (sparse design matrices) and serving (the
ModelBank's weight rows). Each canonical field owns a contiguous block of
slots; slot 0 of every block is the field's "unknown" slot, where any value
outside the vocabulary lands. Numeric fields with a small known domain
(``local_hour``, ``local_weekday``) get one slot per value, so a profile has
exactly one active slot per field.

Slot 0 of every block is "out of vocabulary" (OOV): values the space has never
seen. The literal ``"unknown"`` that profile extraction yields for a missing
value is an ordinary vocabulary value, because a fitted encoder may know it as a
category of its own while still ignoring values it has never seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from clickrouter.errors import InvalidInput
from clickrouter.profile import CANONICAL_FIELDS, NUMERIC_DOMAINS

FORMAT_VERSION = 1
OOV = "\x00oov"  # name of slot 0; no extracted value can equal it


class FeatureSpace:
    """Vocabularies per canonical field and the slot layout built from them.

    Parameters
    ----------
    vocabularies : mapping field -> sequence of known values
        Values of categorical fields (strings). Numeric fields always cover their
        whole domain. Slot 0 of each field is the OOV slot.
    """

    def __init__(self, vocabularies: Mapping[str, Sequence[Any]] | None = None) -> None:
        vocabularies = dict(vocabularies or {})
        unknown_fields = set(vocabularies) - set(CANONICAL_FIELDS)
        if unknown_fields:
            raise InvalidInput(f"unknown feature fields: {sorted(unknown_fields)}")
        self.fields: tuple[str, ...] = CANONICAL_FIELDS
        self.vocabularies: dict[str, tuple[Any, ...]] = {
            field: _vocabulary(field, vocabularies.get(field, ())) for field in self.fields
        }
        self._slot_of: list[dict[Any, int]] = []
        self.offsets: np.ndarray = np.zeros(len(self.fields) + 1, dtype=np.int64)
        for i, field in enumerate(self.fields):
            vocab = self.vocabularies[field]
            self._slot_of.append({value: j for j, value in enumerate(vocab)})
            self.offsets[i + 1] = self.offsets[i] + len(vocab)
        # (field, block offset, value -> local index): the per-request lookup
        self._lookup = [
            (f, int(self.offsets[i]), self._slot_of[i]) for i, f in enumerate(self.fields)
        ]

    @property
    def n_slots(self) -> int:
        """Total number of one-hot slots (columns of the design matrix)."""
        return int(self.offsets[-1])

    def field_slots(self, field: str) -> range:
        """Global slot range owned by ``field``."""
        i = self.fields.index(field)
        return range(int(self.offsets[i]), int(self.offsets[i + 1]))

    def local_index(self, field: str, value: Any) -> int:
        """Index of ``value`` within its field's block (0 = out of vocabulary)."""
        return self._slot_of[self.fields.index(field)].get(value, 0)

    def indices(self, profile: Mapping[str, Any]) -> np.ndarray:
        """Active global slot per field for one canonical profile; shape (n_fields,)."""
        get = profile.get
        return np.array(
            [offset + slots.get(get(field), 0) for field, offset, slots in self._lookup],
            dtype=np.intp,
        )

    def indices_many(self, profiles: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Active slots for many canonical profiles; shape (n_profiles, n_fields)."""
        rows = [
            [offset + slots.get(profile.get(field), 0) for field, offset, slots in self._lookup]
            for profile in profiles
        ]
        if not rows:
            return np.empty((0, len(self.fields)), dtype=np.intp)
        return np.array(rows, dtype=np.intp)

    def transform(self, profiles: Iterable[Mapping[str, Any]]) -> sp.csr_matrix:
        """Sparse one-hot design matrix; shape (n_profiles, n_slots), float64."""
        idx = self.indices_many(profiles)
        n, k = idx.shape
        indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
        data = np.ones(n * k, dtype=np.float64)
        return sp.csr_matrix((data, idx.ravel(), indptr), shape=(n, self.n_slots))

    def slot_names(self) -> list[str]:
        """Human-readable ``field=value`` name of every slot, in slot order."""
        return [f"{f}={v}" for f in self.fields for v in self.vocabularies[f]]

    @classmethod
    def fit(cls, profiles: Iterable[Mapping[str, Any]], *, min_count: int = 1) -> FeatureSpace:
        """Vocabularies from observed canonical profiles, keeping values seen >= min_count."""
        counts: dict[str, dict[Any, int]] = {f: {} for f in CANONICAL_FIELDS}
        for profile in profiles:
            for field, seen in counts.items():
                value = profile.get(field)
                seen[value] = seen.get(value, 0) + 1
        return cls({f: [v for v, c in counts[f].items() if c >= min_count] for f in counts})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "fields": list(self.fields),
            # slot 0 (OOV) is implicit: the document lists known values only
            "vocabularies": {f: list(v[1:]) for f, v in self.vocabularies.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpace:
        if data.get("format") != FORMAT_VERSION or not isinstance(data.get("vocabularies"), dict):
            raise InvalidInput(f"not a FeatureSpace document (format {data.get('format')!r})")
        return cls(data["vocabularies"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpace:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpace) and self.vocabularies == other.vocabularies

    def __hash__(self) -> int:
        return hash(tuple(self.vocabularies.items()))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{f}={len(v)}" for f, v in self.vocabularies.items())
        return f"FeatureSpace({sizes})"


def _vocabulary(field: str, values: Iterable[Any]) -> tuple[Any, ...]:
    """OOV first, then the distinct known values in first-seen order."""
    if field in NUMERIC_DOMAINS:
        domain = range(NUMERIC_DOMAINS[field])
        extra = [v for v in values if v not in domain]
        if extra:
            raise InvalidInput(f"field {field!r}: values outside 0..{len(domain) - 1}: {extra[:5]}")
        return (OOV, *domain)
    ordered = dict.fromkeys(str(v) for v in values if v is not None and str(v) != OOV)
    return (OOV, *ordered)
