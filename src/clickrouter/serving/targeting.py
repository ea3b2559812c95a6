"""Eligibility: which offers (campaign, landing page) may be shown to a request.

An offer is eligible when its campaign and its page are both active and every
targeting rule of either admits the request's canonical value. Rules are
compiled into one boolean table per targeted field, shape (field vocabulary
size, n_offers), a column ANDing the campaign's rule and the page's, so
eligibility for a request is a few row lookups ANDed together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clickrouter.catalogue import TARGETING_FIELDS, Campaign, Offer, Rule, offers_of
from clickrouter.features import FeatureSpace


class Eligibility:
    """Compiled activity flags and targeting rules of an offer list.

    ``offers``: the bank's columns; a list of campaigns stands for all their
    offers (:func:`~clickrouter.catalogue.offers_of`).
    """

    def __init__(self, space: FeatureSpace, offers: Sequence[Offer] | Sequence[Campaign]) -> None:
        self.space = space
        listed = [o for o in offers if isinstance(o, Offer)]
        if len(listed) != len(offers):
            listed = offers_of([c for c in offers if isinstance(c, Campaign)])
        self.active_ = np.array([o.campaign.active and o.page.active for o in listed], dtype=bool)
        self.tables_: dict[int, np.ndarray] = {}
        for field in TARGETING_FIELDS.values():
            table = self._table(field, listed)
            if table is not None:
                self.tables_[space.fields.index(field)] = table

    def _table(self, field: str, offers: list[Offer]) -> np.ndarray | None:
        # rules() canonicalises on every call: once per campaign and page, not per offer
        campaign_rules = {id(o.campaign): o.campaign.rules().get(field) for o in offers}
        pairs = [(campaign_rules[id(o.campaign)], o.page.rules().get(field)) for o in offers]
        if all(c is None and p is None for c, p in pairs):
            return None
        vocab = [str(value) for value in self.space.vocabularies[field]]
        table = np.ones((len(vocab), len(offers)), dtype=bool)
        admitted: dict[int, np.ndarray] = {}  # by rule identity: a campaign's rule is shared
        for j, pair in enumerate(pairs):
            for rule in pair:
                if rule is not None:
                    if id(rule) not in admitted:
                        admitted[id(rule)] = _admits(rule, vocab)
                    table[:, j] &= admitted[id(rule)]
        return table

    def one(self, slots: np.ndarray) -> np.ndarray:
        """Eligible offers for one request given its global slots; shape (n_offers,)."""
        mask = self.active_.copy()
        for i, table in self.tables_.items():
            mask &= table[slots[i] - self.space.offsets[i]]
        return mask

    def many(self, slots: np.ndarray) -> np.ndarray:
        """Eligibility for many requests; slots (n, n_fields) -> (n, n_offers)."""
        mask = np.repeat(self.active_[None, :], len(slots), axis=0)
        for i, table in self.tables_.items():
            mask &= table[slots[:, i] - self.space.offsets[i]]
        return mask


def _admits(rule: Rule, vocab: list[str]) -> np.ndarray:
    return np.array([rule.admits(value) for value in vocab], dtype=bool)
