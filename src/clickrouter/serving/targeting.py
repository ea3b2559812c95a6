"""Eligibility: which campaigns may be shown to a request.

A campaign is eligible when it is active and every targeting rule admits the
request's canonical value. Rules are compiled into one boolean table per
targeted field, shape (field vocabulary size, n_campaigns), so eligibility for
a request is a few row lookups ANDed together.
"""

from __future__ import annotations

import numpy as np

from clickrouter.catalogue import TARGETING_FIELDS, Campaign
from clickrouter.features import FeatureSpace


class Eligibility:
    """Compiled activity flags and targeting rules of a campaign list."""

    def __init__(self, space: FeatureSpace, campaigns: list[Campaign]) -> None:
        self.space = space
        self.active_ = np.array([c.active for c in campaigns], dtype=bool)
        self.tables_: dict[int, np.ndarray] = {}
        for field in TARGETING_FIELDS.values():
            table = self._table(field, campaigns)
            if table is not None:
                self.tables_[space.fields.index(field)] = table

    def _table(self, field: str, campaigns: list[Campaign]) -> np.ndarray | None:
        rules = [c.rules().get(field) for c in campaigns]
        if all(rule is None for rule in rules):
            return None
        vocab = self.space.vocabularies[field]
        table = np.ones((len(vocab), len(campaigns)), dtype=bool)
        for j, rule in enumerate(rules):
            if rule is not None:
                table[:, j] = [rule.admits(str(value)) for value in vocab]
        return table

    def one(self, slots: np.ndarray) -> np.ndarray:
        """Eligible campaigns for one request given its global slots; shape (n_campaigns,)."""
        mask = self.active_.copy()
        for i, table in self.tables_.items():
            mask &= table[slots[i] - self.space.offsets[i]]
        return mask

    def many(self, slots: np.ndarray) -> np.ndarray:
        """Eligibility for many requests; slots (n, n_fields) -> (n, n_campaigns)."""
        mask = np.repeat(self.active_[None, :], len(slots), axis=0)
        for i, table in self.tables_.items():
            mask &= table[slots[:, i] - self.space.offsets[i]]
        return mask
