"""Helpers of the Thompson policy tests: a loaded bank, its manifest evidence, chosen scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clickrouter.modelstore.manifest import CampaignRecord, Manifest
from clickrouter.serving.engine.holder import LiveBank, load_live_bank


@pytest.fixture(scope="module")
def live(sample_models: Path) -> Iterator[LiveBank]:
    """The sample bank as the service loads it (no manifest: tests give it theirs)."""
    loaded = load_live_bank(sample_models, None)
    yield loaded
    loaded.bank.close()


def with_kinds(live: LiveBank, records: dict[int, tuple[str, int]]) -> LiveBank:
    """The same bank with a manifest giving (kind, sales) per column (others: none)."""
    ids = live.bank.campaign_ids
    evidence = {ids[c]: CampaignRecord(kind=kind, positives=k) for c, (kind, k) in records.items()}
    return dataclasses.replace(live, manifest=Manifest(campaigns=evidence))


def scores(live: LiveBank, values: dict[int, float]) -> np.ndarray:
    """P(sale) per column giving the expected values ``values`` (others: tiny)."""
    payouts = live.bank.payouts_  # per column: one per offer
    proba = np.full(len(payouts), 1e-9)
    for column, value in values.items():
        proba[column] = value / payouts[column]
    return proba
