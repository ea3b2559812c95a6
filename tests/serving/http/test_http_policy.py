"""Decision policies: greedy and epsilon-greedy choices and their logged propensities."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from clickrouter.errors import InvalidInput
from clickrouter.events import ClickEvent
from clickrouter.serving.engine.policy import EpsilonGreedy, Greedy, make_policy
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import PROFILE, read_events, settings


def test_greedy_always_takes_the_best_with_propensity_one():
    mask = np.array([True, False, True])
    column, propensity = Greedy().choose(2, mask, 2)
    assert (column, propensity) == (2, 1.0)


def test_epsilon_greedy_frequencies_match_the_logged_propensities():
    mask = np.array([True, False, True, True, False, True])  # 4 eligible, best = column 3
    policy = EpsilonGreedy(0.4, seed=1)
    choices = [policy.choose(3, mask, 4) for _ in range(20_000)]
    counts = Counter(column for column, _ in choices)
    assert set(counts) == {0, 2, 3, 5}  # never an ineligible column
    propensity = dict(choices)
    assert propensity[3] == pytest.approx(0.6 + 0.1)
    assert propensity[0] == propensity[2] == propensity[5] == pytest.approx(0.1)
    for column, count in counts.items():
        assert count / len(choices) == pytest.approx(propensity[column], abs=0.015)
    assert sum(propensity.values()) == pytest.approx(1.0)


def test_unknown_policy_or_bad_epsilon_is_refused():
    with pytest.raises(InvalidInput, match="policy"):
        make_policy("softmax", 0.1)
    with pytest.raises(InvalidInput, match="epsilon"):
        make_policy("epsilon-greedy", 1.5)


def test_served_epsilon_greedy_logs_the_true_propensity(sample_models: Path, events_dir: Path):
    config = settings(policy="epsilon-greedy", epsilon=0.5)
    with (
        PredictorServer(config, sample_models, events_dir) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        answers = [client.post("/v1/decide?top=1", json=PROFILE).json() for _ in range(200)]
    n = answers[0]["n_eligible"]
    best = answers[0]["ranking"][0]["campaign_id"]
    for answer in answers:
        greedy = answer["campaign_id"] == best
        expected = 0.5 + 0.5 / n if greedy else 0.5 / n
        assert answer["propensity"] == pytest.approx(expected)
        assert answer["policy"] == "epsilon-greedy"
    explored = sum(a["campaign_id"] != best for a in answers)
    assert 40 < explored < 160  # about (0.5 - 0.5/n) of 200
    logged = {
        e.click_id: e.propensity for e in read_events(events_dir) if isinstance(e, ClickEvent)
    }
    assert logged == {a["click_id"]: a["propensity"] for a in answers}
