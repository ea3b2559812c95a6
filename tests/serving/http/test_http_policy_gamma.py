"""Gamma Thompson sampling: exact posterior draws, the prior untempered, the evidence tempered."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clickrouter.config import Settings
from clickrouter.demo.config import POLICIES as DEMO_POLICIES
from clickrouter.errors import InvalidInput
from clickrouter.serving.engine.holder import LiveBank
from clickrouter.serving.engine.policy import (
    POLICIES,
    GammaThompson,
    make_policy,
    policy_from_settings,
)
from serving.http.policy_support import scores, with_kinds


def pools(policy: GammaThompson, live: LiveBank) -> np.ndarray:
    """Each bank column's pool of rate factors, (n_columns, POOL)."""
    tables = policy._tables(live)
    return tables.factors[tables.level]


@pytest.mark.parametrize("scale", [0.3, 0.5, 1.0])
def test_no_sale_draws_the_untempered_prior_and_sales_the_tempered_posterior(
    live: LiveBank, scale: float
):
    bank = with_kinds(live, {0: ("base_rate", 0), 1: ("base_rate", 10), 2: ("base_rate", 400)})
    factors = pools(GammaThompson(scale=scale, seed=5), bank)
    # no sale: Gamma(1) / 1, an exponential of mean one, whatever the scale
    assert factors[0].mean() == pytest.approx(1.0, abs=0.05)
    assert factors[0].var() == pytest.approx(1.0, abs=0.1)
    assert np.median(factors[0]) == pytest.approx(np.log(2), abs=0.04)
    for column, sales in ((1, 10), (2, 400)):
        shape = 1 + sales / scale**2  # the evidence counts 1 / scale**2 times
        assert factors[column].mean() == pytest.approx(1.0, abs=0.03)
        # pooled at the nearest of shapes ~25 % apart: the variance 1 / shape within 15 %
        assert factors[column].var() == pytest.approx(1 / shape, rel=0.15)


def test_profile_spread_joins_without_a_per_profile_model_and_shrinks_with_one(live: LiveBank):
    records = {0: ("base_rate", 900), 1: ("logistic", 30), 2: ("logistic", 900)}
    policy = GammaThompson(scale=0.5, profile_spread=0.5, profile_sales=30, seed=6)
    factors = pools(policy, with_kinds(live, records))
    log_sd = np.log(factors).std(axis=1)
    rate_sd = np.sqrt(1 / (1 + 900 / 0.25))  # Gamma's log-sd is ~1 / sqrt(shape) when large
    assert log_sd[0] == pytest.approx(np.hypot(rate_sd, 0.5), rel=0.1)  # the profile in full
    assert log_sd[2] == pytest.approx(np.hypot(rate_sd, 0.5 * np.sqrt(30 / 930)), rel=0.15)
    assert log_sd[0] > log_sd[1] > log_sd[2]
    assert factors.mean(axis=1) == pytest.approx(np.ones(len(factors)), abs=0.05)


def test_an_unproven_campaign_is_explored_a_proven_worse_one_is_not(live: LiveBank):
    n = len(live.bank.campaigns)
    proba = scores(live, {0: 1.0, 1: 0.7, 2: 0.7})
    mask = np.ones(n, bool)
    # column 1: no sale yet (the prior); column 2: the same estimate on 2,000 sales
    settled = {c: ("logistic", 2000) for c in range(n) if c != 1}
    policy = GammaThompson(scale=0.5, seed=7)
    bank = with_kinds(live, settled)
    counts = Counter(policy.choose_scored(bank, proba, mask, 0, n)[0] for _ in range(4000))
    # P(Exp(1) x 0.7 > ~1) = exp(-1 / 0.7) ~ 0.24
    assert counts[1] / 4000 == pytest.approx(np.exp(-1 / 0.7), abs=0.04)
    assert counts[2] == 0
    assert counts[0] + counts[1] == 4000


def test_gamma_thompson_is_made_by_name_and_needs_a_positive_scale():
    assert "gamma-thompson" in POLICIES and DEMO_POLICIES == POLICIES
    policy = make_policy("gamma-thompson", 0.0, thompson_scale=0.5, thompson_profile_spread=0.2)
    assert isinstance(policy, GammaThompson)
    assert (policy.name, policy.scale, policy.profile_spread) == ("gamma-thompson", 0.5, 0.2)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidInput, match="thompson_scale"):
            GammaThompson(scale=bad)
    env = {"CLICKROUTER_POLICY": "gamma-thompson", "CLICKROUTER_THOMPSON_SCALE": "0"}
    with pytest.raises(InvalidInput, match="thompson_scale"):
        policy_from_settings(Settings.from_env(env))
