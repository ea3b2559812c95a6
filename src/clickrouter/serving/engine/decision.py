"""One decision on the live bank: the bank's ranking, the policy's choice, the outcome.

:class:`DecisionPath` holds the policy and the decider of the bank in service
(:func:`~clickrouter.serving.engine.fused.decider_for`, built once per
version). A decision ranks the eligible bank columns (offers: a campaign and
one of its landing pages) by expected value, hands the columns to the policy,
and builds the one answer type, :class:`Outcome`, that transports encode.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from clickrouter.errors import ClickrouterError
from clickrouter.profile import extract_profile
from clickrouter.serving.bank import ModelBank, RankedOffer
from clickrouter.serving.engine.fused import Decider, decider_for
from clickrouter.serving.engine.holder import LiveBank
from clickrouter.serving.engine.policy import Policy, choose_one


class Outcome(msgspec.Struct, omit_defaults=True):
    """The answer to one decision request (``ranking`` only when asked for).

    The offer chosen: ``campaign_id`` and ``landing_page_id``; ``landing_page``
    is that page's URL for this click; ``propensity`` is the offer's.
    """

    click_id: str
    campaign_id: str
    landing_page_id: str
    landing_page: str
    probability: float
    expected_value: float
    propensity: float
    payout: float
    n_eligible: int
    model_version: str
    policy: str
    ranking: list[RankedOffer] | None = None


class DecisionPath:
    """Decisions on a live bank by ``policy`` (the bank's decider laid out once per bank)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._decider: Decider | None = None  # of the live bank (one lookup per version)
        self._prepared: Decider | None = None  # built by prepare() for the incoming bank

    def decide(
        self, live: LiveBank, canonical: dict[str, Any], click_id: str, top: int | None
    ) -> Outcome:
        """The outcome for one canonical profile; with ``top``, the ``top`` best by
        expected value as its ranking."""
        bank = live.bank
        slots = bank.space.indices(canonical)
        ranking = self.decider(bank).decide(canonical, slots, top or 1)
        proba = ranking.proba
        column, propensity = choose_one(
            self.policy, live, proba, ranking.mask, ranking.columns[0], ranking.n_eligible, slots
        )
        campaign, page = bank.offers[column]
        probability = float(proba[column])
        return Outcome(
            click_id=click_id,
            campaign_id=campaign.id,
            landing_page_id=page.id,
            landing_page=page.url_for(click_id),
            probability=probability,
            expected_value=probability * campaign.payout,
            propensity=propensity,
            payout=campaign.payout,
            n_eligible=ranking.n_eligible,
            model_version=bank.version,
            policy=self.policy.name,
            ranking=None if top is None else bank.ranked(proba, ranking.columns),
        )

    def decider(self, bank: ModelBank) -> Decider:
        """The decider of ``bank``: the one :meth:`prepare` built for it, else a new one."""
        decider = self._decider
        if decider is None or decider.bank is not bank:
            prepared = self._prepared
            if prepared is None or prepared.bank is not bank:
                prepared = decider_for(bank)
            decider = self._decider = prepared
        return decider

    def prepare(self, live: LiveBank) -> None:
        """Run one unlogged decision on a freshly loaded bank, before it is swapped in.

        Called in the loading thread (see ``BankHolder``'s ``prepare``): the
        decision path's tables are laid out and the numba kernels of the
        decider and the policy are compiled (or read from numba's cache) there,
        not on the event loop, where the first request would stall every
        connection of the worker meanwhile.
        """
        decider = decider_for(live.bank)
        canonical = extract_profile({})
        # e.g. no campaign eligible for the empty profile: the tables are laid out anyway
        with contextlib.suppress(ClickrouterError):
            slots = live.bank.space.indices(canonical)
            ranking = decider.decide(canonical, slots, 1)
            choose_one(
                self.policy, live, ranking.proba, ranking.mask, ranking.columns[0],
                ranking.n_eligible, slots,
            )  # fmt: skip
        self._prepared = decider
