"""Thompson sampling: exploration shrinks with the evidence, propensities match frequencies."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from clickrouter.config import Settings
from clickrouter.errors import InvalidInput
from clickrouter.modelstore.manifest import CampaignRecord, Manifest
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import (
    DrawTables,
    GammaThompson,
    Thompson,
    make_policy,
    policy_from_settings,
)
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import PROFILE, read_events, settings
from serving.http.policy_support import scores, with_kinds


def with_sales(live: LiveBank, sales: dict[int, int]) -> LiveBank:
    """The same bank with logistic models fitted on ``sales`` per column (others: none)."""
    return with_kinds(live, {c: ("logistic", k) for c, k in sales.items()})


def test_noise_scale_shrinks_with_the_sales_behind_a_model(live: LiveBank):
    sigma = Thompson().sigmas(with_sales(live, {0: 0, 1: 10, 2: 100, 3: 10_000}))
    assert sigma[0] == pytest.approx(np.sqrt(np.pi**2 / 6))  # trigamma(1): no sale yet
    assert sigma[0] > sigma[1] > sigma[2] > sigma[3]
    assert sigma[1] == pytest.approx(1 / np.sqrt(10.5), rel=0.05)
    assert sigma[3] < 0.011
    assert Thompson(scale=0.5).sigmas(with_sales(live, {}))[0] == pytest.approx(sigma[0] / 2)


def test_sure_models_get_the_greedy_choice_and_never_an_ineligible_one(live: LiveBank):
    n = len(live.bank.campaigns)
    bank = with_sales(live, dict.fromkeys(range(n), 5000))
    proba = scores(live, {3: 2.0, 4: 1.0, 5: 3.0})
    mask = np.ones(n, bool)
    mask[5] = False  # the highest score is not eligible
    policy = Thompson(seed=1)
    choices = [policy.choose_scored(bank, proba, mask, 3, n - 1) for _ in range(500)]
    assert {column for column, _ in choices} == {3}
    assert all(propensity > 0.9 for _, propensity in choices)


def test_an_unproven_campaign_is_explored_a_proven_worse_one_is_not(live: LiveBank):
    n = len(live.bank.campaigns)
    proba = scores(live, {0: 1.0, 1: 0.7, 2: 0.7})
    mask = np.ones(n, bool)
    # column 1: no sale yet (wide posterior); column 2: same estimate, 2,000 sales
    bank = with_sales(live, {0: 2000, 2: 2000} | {c: 2000 for c in range(3, n)})
    policy = Thompson(seed=2)
    counts = Counter(policy.choose_scored(bank, proba, mask, 0, n)[0] for _ in range(4000))
    assert counts[1] / 4000 > 0.1  # 0.7 vs 1.0 with sigma ~1.3: won a fair share
    assert counts[2] == 0  # 0.7 vs 1.0 with sigma ~0.02: never
    assert counts[0] + counts[1] == 4000


@pytest.mark.parametrize("kind", [Thompson, GammaThompson])
def test_logged_propensities_match_the_choice_frequencies(live: LiveBank, kind: type[Thompson]):
    n = len(live.bank.campaigns)
    proba = scores(live, {0: 1.0, 1: 0.8, 2: 0.6, 3: 0.5})
    mask = np.ones(n, bool)
    bank = with_sales(live, {0: 3, 1: 3, 2: 3, 3: 3} | {c: 5000 for c in range(4, n)})
    policy = kind(scale=0.5, seed=3, draws=64)
    choices = [policy.choose_scored(bank, proba, mask, 0, n) for _ in range(6000)]
    counts = Counter(column for column, _ in choices)
    assert set(counts) <= {0, 1, 2, 3} and len(counts) >= 3
    for column, count in counts.items():
        logged = np.mean([p for c, p in choices if c == column])
        assert logged == pytest.approx(count / len(choices), abs=0.05)


def test_profile_spread_is_full_without_a_per_profile_model_and_shrinks_with_one(live: LiveBank):
    records = {0: ("base_rate", 50), 1: ("logistic", 50), 2: ("logistic", 900), 3: ("base_rate", 0)}
    bank = with_kinds(live, records)
    plain = Thompson(scale=0.3).sigmas(bank)
    spread = Thompson(scale=0.3, profile_spread=0.5, profile_sales=100).sigmas(bank)
    assert spread[0] == pytest.approx(np.hypot(plain[0], 0.5))  # rate known, profile not
    assert spread[1] == pytest.approx(np.hypot(plain[1], 0.5 * np.sqrt(100 / 150)))
    assert spread[2] == pytest.approx(np.hypot(plain[2], 0.5 * np.sqrt(100 / 1000)))
    assert spread[3] == pytest.approx(np.hypot(plain[3], 0.5))  # no record: like no sale
    assert spread[0] > spread[1] > spread[2]


def test_a_mediocre_average_without_a_profile_model_is_still_explored(live: LiveBank):
    n = len(live.bank.campaigns)
    proba = scores(live, {0: 1.0, 1: 0.6, 2: 0.6})
    mask = np.ones(n, bool)
    # column 1: a well-measured rate but no per-profile model; column 2: the same
    # average from a logistic model on 5,000 sales; every other column is settled
    records = {0: ("logistic", 5000), 1: ("base_rate", 400), 2: ("logistic", 5000)}
    bank = with_kinds(live, records | {c: ("logistic", 5000) for c in range(3, n)})

    def shown(policy: Thompson) -> Counter[int]:
        return Counter(policy.choose_scored(bank, proba, mask, 0, n)[0] for _ in range(3000))

    without, spread = (
        shown(Thompson(scale=0.3, seed=4)),
        shown(Thompson(scale=0.3, profile_spread=0.5, seed=4)),
    )
    assert without[1] == 0  # 0.6 vs 1.0 with sigma ~0.015: never shown again
    assert spread[1] / 3000 > 0.05  # with the profile spread it keeps a share
    assert spread[2] < spread[1] / 5  # a fitted per-profile model narrows it


def test_each_bank_gets_its_own_noise_levels_while_two_are_in_play(sample_models: Path):
    # the predictor warms a new bank up in its loading thread while the event loop
    # still serves the old one: preparations for the two interleave
    banks = [load_live_bank(sample_models, None) for _ in range(2)]
    sure = with_sales(banks[0], dict.fromkeys(range(len(banks[0].bank.campaigns)), 5000))
    unproven = with_sales(banks[1], {})

    class Interleaved(Thompson):
        """Serves the old bank in the middle of every preparation of the new one."""

        def _tables(self, live: LiveBank) -> DrawTables:
            if live.bank is unproven.bank:
                served.append(self._prepare(sure)[1])
            return super()._tables(live)

    served: list[np.ndarray] = []
    policy = Interleaved(scale=1.0)
    levels = {id(b.bank): Thompson(scale=1.0)._tables(b)[1] for b in (sure, unproven)}
    assert not np.array_equal(*levels.values())  # so a mix-up would show
    for live in (sure, unproven, unproven, sure, unproven, sure):
        assert np.array_equal(policy._prepare(live)[1], levels[id(live.bank)])
    assert len(served) == 2 and all(np.array_equal(s, levels[id(sure.bank)]) for s in served)
    for b in banks:
        b.bank.close()


def test_thompson_is_made_by_name_and_bad_knobs_are_refused():
    assert make_policy("thompson", 0.0).name == "thompson"
    with pytest.raises(InvalidInput, match="prior_sales"):
        Thompson(prior_sales=0)
    with pytest.raises(InvalidInput, match="thompson_scale"):
        Thompson(scale=-1)
    with pytest.raises(InvalidInput, match="thompson_profile_spread"):
        Thompson(profile_spread=-0.1)
    with pytest.raises(InvalidInput, match="profile_sales"):
        Thompson(profile_sales=0)


def test_settings_carry_the_profile_spread_to_the_policy(live: LiveBank):
    env = {"CLICKROUTER_POLICY": "thompson", "CLICKROUTER_THOMPSON_PROFILE_SPREAD": "0.25"}
    policy = policy_from_settings(Settings.from_env(env))
    assert isinstance(policy, Thompson) and policy.profile_spread == 0.25
    bad = {"CLICKROUTER_POLICY": "thompson", "CLICKROUTER_THOMPSON_PROFILE_SPREAD": "9"}
    with pytest.raises(InvalidInput, match="thompson_profile_spread"):
        policy_from_settings(Settings.from_env(bad))


@pytest.mark.parametrize("policy", ["thompson", "gamma-thompson"])
def test_served_thompson_logs_a_propensity_per_click(
    sample_models: Path, events_dir: Path, policy: str
):
    config = settings(policy=policy, thompson_scale=0.5)
    with (
        PredictorServer(config, sample_models, events_dir) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        answers = [client.post("/v1/decide", json=PROFILE).json() for _ in range(100)]
    assert {a["policy"] for a in answers} == {policy}
    # the sample directory has no manifest evidence: every model is unproven, so it explores
    assert len({a["campaign_id"] for a in answers}) > 1
    assert all(0 < a["propensity"] <= 1 for a in answers)
    clicks = [e for e in read_events(events_dir) if getattr(e, "propensity", None) is not None]
    assert {round(c.propensity, 12) for c in clicks} == {
        round(a["propensity"], 12) for a in answers
    }


@pytest.mark.parametrize("kind", [Thompson, GammaThompson])
def test_a_base_rates_late_sales_count_as_evidence(live: LiveBank, kind: type[Thompson]):
    ids = live.bank.campaign_ids
    records = {
        ids[0]: CampaignRecord(kind="base_rate", positives=1, late_positives=3),
        ids[1]: CampaignRecord(kind="base_rate", positives=4),
        ids[2]: CampaignRecord(kind="base_rate", positives=1),
    }
    tables = kind()._tables(dataclasses.replace(live, manifest=Manifest(campaigns=records)))
    level = tables[1]  # each column's pool: the same evidence, the same spread
    assert level[0] == level[1] != level[2]
