"""The replay's batch decision path against the service's per-request path, draw for draw.

The service decides one request at a time (``decider.decide`` then
``policy.choose_scored``, as ``DecisionPath.decide`` does); the replay
decides many (``decider.decide_many`` then ``choose_many``). Given the same
bank, manifest evidence, profiles and policy seed, both must show the same
campaigns with the same propensities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from clickrouter.errors import NoEligibleCampaign
from clickrouter.modelstore.manifest import CampaignRecord, Manifest
from clickrouter.serving.engine.fused import FusedDecider, GeneralDecider, decider_for
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import (
    GammaThompson,
    Greedy,
    Policy,
    Thompson,
    choose_many,
    make_policy,
)
from reference.sample_models import make_sample_directory, random_profiles

CAMPAIGNS = 120
REQUESTS = 400


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBank]:
    """A real sklearn bank; a manifest where a few campaigns have logistic models."""
    directory = make_sample_directory(tmp_path_factory.mktemp("bank") / "models", CAMPAIGNS)
    loaded = load_live_bank(directory, None)
    rng = np.random.default_rng(5)
    records = {}
    for column, cid in enumerate(loaded.bank.campaign_ids):
        if column % 10 == 0:
            records[cid] = CampaignRecord(kind="logistic", positives=int(rng.integers(20, 500)))
        else:
            records[cid] = CampaignRecord(kind="base_rate", positives=int(rng.poisson(1.0)))
    yield dataclasses.replace(loaded, manifest=Manifest(campaigns=records))
    loaded.bank.close()


@pytest.fixture(scope="module")
def profiles() -> list[dict[str, object]]:
    return random_profiles(np.random.default_rng(11), REQUESTS)


def fresh(name: str) -> Policy:
    if name == "thompson":
        return Thompson(scale=0.3, profile_spread=0.5, seed=42)
    if name == "gamma-thompson":
        return GammaThompson(scale=0.5, profile_spread=0.5, seed=42)
    return make_policy(name, 0.3, seed=42)


def per_request(live: LiveBank, policy: Policy, profiles: list[dict[str, object]]) -> list[tuple]:
    """The service's path, one request at a time (no eligible campaign: None)."""
    decider = decider_for(live.bank)
    out: list[tuple] = []
    for canonical in profiles:
        try:
            ranking = decider.decide(canonical, live.bank.space.indices(canonical), 1)
        except NoEligibleCampaign:
            out.append(None)
            continue
        proba, mask, best = ranking.proba, ranking.mask, ranking.columns[0]
        column, propensity = policy.choose_scored(live, proba, mask, best, ranking.n_eligible)
        out.append((column, propensity, best, proba, mask))
    return out


@pytest.mark.parametrize("name", ["greedy", "epsilon-greedy", "thompson", "gamma-thompson"])
def test_batch_choices_equal_the_per_request_path(
    live: LiveBank, profiles: list[dict[str, object]], name: str
) -> None:
    expected = per_request(live, fresh(name), profiles)
    decider = decider_for(live.bank)
    assert isinstance(decider, FusedDecider)
    batch = decider.decide_many(live.bank.space.indices_many(profiles))
    filled = batch.n_eligible > 0
    assert [e is not None for e in expected] == filled.tolist()
    kept = type(batch)(*(a[filled] for a in batch))
    columns, propensity = choose_many(fresh(name), live, *kept)
    rows = [e for e in expected if e is not None]
    assert columns.tolist() == [r[0] for r in rows]
    assert propensity.tolist() == [r[1] for r in rows]  # exactly: the same draws
    assert kept.best.tolist() == [r[2] for r in rows]
    assert np.array_equal(kept.proba, np.array([r[3] for r in rows]))
    assert np.array_equal(kept.mask, np.array([r[4] for r in rows]))
    if name != "greedy":  # the draws really explored: not a vacuous comparison
        assert (columns != kept.best).any()


@pytest.mark.parametrize("name", ["thompson", "gamma-thompson"])
def test_skipping_the_propensity_estimate_keeps_every_choice(
    live: LiveBank, profiles: list[dict[str, object]], name: str
) -> None:
    """Row after row the same offers: the generator advances as the estimate's draws would."""
    batch = decider_for(live.bank).decide_many(live.bank.space.indices_many(profiles))
    kept = type(batch)(*(a[batch.n_eligible > 0] for a in batch))
    estimated, propensity = choose_many(fresh(name), live, *kept)
    policy = fresh(name)
    assert isinstance(policy, Thompson)
    policy.estimate_propensity = False
    halves = [
        choose_many(policy, live, *type(kept)(*(a[part] for a in kept)))
        for part in (slice(0, 150), slice(150, None))
    ]  # two calls: the stream carries across them
    columns = np.concatenate([h[0] for h in halves])
    skipped = np.concatenate([h[1] for h in halves])
    assert columns.tolist() == estimated.tolist()
    assert (estimated != kept.best).any()  # the draws really explored
    assert np.isnan(skipped[propensity < 1]).all()
    assert (np.isnan(skipped) | (skipped == 1.0)).all()  # 1.0: nothing scored, the greedy
    assert not np.isnan(propensity).any()


def test_a_policy_without_a_batch_path_is_called_row_by_row(
    live: LiveBank, profiles: list[dict[str, object]]
) -> None:
    class OnlyPerRequest:
        name = "wrapped"

        def __init__(self) -> None:
            self.inner = Thompson(scale=0.3, profile_spread=0.5, seed=42)

        def choose_scored(self, *args: object):  # type: ignore[no-untyped-def]
            return self.inner.choose_scored(*args)  # type: ignore[arg-type]

    batch = decider_for(live.bank).decide_many(live.bank.space.indices_many(profiles))
    kept = type(batch)(*(a[batch.n_eligible > 0] for a in batch))
    wrapped = choose_many(OnlyPerRequest(), live, *kept)
    direct = choose_many(fresh("thompson"), live, *kept)
    assert wrapped[0].tolist() == direct[0].tolist()
    assert wrapped[1].tolist() == direct[1].tolist()


def test_general_decider_batch_equals_its_per_request_path(
    live: LiveBank, profiles: list[dict[str, object]]
) -> None:
    general = GeneralDecider(live.bank)
    slots = live.bank.space.indices_many(profiles)
    batch = general.decide_many(slots, lambda: profiles)
    for row, canonical in enumerate(profiles[:50]):
        if batch.n_eligible[row] == 0:
            continue
        ranking = general.decide(canonical, slots[row], 1)
        assert np.array_equal(batch.proba[row], ranking.proba)
        assert np.array_equal(batch.mask[row], ranking.mask)
        assert batch.best[row] == ranking.columns[0]
        assert batch.n_eligible[row] == ranking.n_eligible
    with pytest.raises(ValueError, match="canonical profiles"):
        general.decide_many(slots)


def test_greedy_batch_is_the_best_column(live: LiveBank, profiles: list[dict[str, object]]) -> None:
    batch = decider_for(live.bank).decide_many(live.bank.space.indices_many(profiles))
    kept = type(batch)(*(a[batch.n_eligible > 0] for a in batch))
    columns, propensity = choose_many(Greedy(), live, *kept)
    assert columns.tolist() == kept.best.tolist()
    assert (propensity == 1.0).all()
