"""Off-policy estimates against the truth of the simulated world, and their refusals.

Logs come from real replays (the consumer's record format, the predictor's
propensities): a uniform-random one and a Thompson one. Each candidate (a
model version the replays published, and a policy) is evaluated on each log
and compared with its true value on the same logged requests: the world's
expected revenue of the candidate's choices, counting only sales inside the
attribution window (what a record's revenue measures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clickrouter.cli import main
from clickrouter.datastore import DataManager
from clickrouter.demo.config import DemoConfig
from clickrouter.errors import InvalidInput
from clickrouter.modelstore import ModelStore
from clickrouter.replay.loop import ReplayLoop, load_world
from clickrouter.replay.offpolicy import bank_slots, evaluate, logged_columns
from clickrouter.replay.settings import HOUR, ReplaySettings
from clickrouter.serving.engine.fused import decider_for
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import (
    EpsilonGreedy,
    Policy,
    Thompson,
    choose_many,
    make_policy,
)
from clickrouter.sim.world import World

# sales common enough, and a window long enough to see most of them, that a
# few thousand logged clicks pin a value down to a useful interval; one page per
# campaign (the estimators' accuracy is measured on it), pages in PAGED
WORLD = DemoConfig(
    campaigns=30,
    seed=8,
    base_rate_min=0.05,
    base_rate_max=0.25,
    attribution_hours=6.0,
    max_pages=1,
)
PAGED = dataclasses.replace(WORLD, max_pages=5)
CANDIDATES = {
    "greedy": lambda: make_policy("greedy", 0.0, seed=1),
    "epsilon-greedy 0.2": lambda: make_policy("epsilon-greedy", 0.2, seed=1),
    "thompson": lambda: make_policy(
        "thompson", 0.0, seed=1, thompson_scale=0.3, thompson_profile_spread=0.5
    ),
    "thompson wide": lambda: make_policy("thompson", 0.0, seed=1, thompson_scale=1.0),
}


@dataclasses.dataclass
class Log:
    world: World
    records: pd.DataFrame
    store: ModelStore
    data_dir: Path


def replay_log(
    root: Path,
    name: str,
    policy: str,
    epsilon: float,
    clicks: int,
    days: float = 2.0,
    world: DemoConfig = WORLD,
) -> Log:
    demo = dataclasses.replace(world, policy=policy, epsilon=epsilon)
    settings = ReplaySettings(demo=demo, clicks=clicks, days=days, oracle_sample=500)
    workdir = root / name
    workdir.mkdir()
    world = load_world(settings)
    ReplayLoop(settings, world, workdir, traffic_seed=4).run()
    # only clicks whose label has surely settled: at the end, a click still inside
    # its window is in the dataset if it sold, not yet if it did not
    end = world.start_ts + settings.days * 86400.0
    settled = end - (demo.attribution_hours + settings.label_delay_hours) * HOUR
    records = DataManager(workdir / "data").read_all(end=settled)
    return Log(world, records, ModelStore(workdir / "store"), workdir / "data")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Log]:
    root = tmp_path_factory.mktemp("offpolicy")
    return {
        "uniform": replay_log(root, "uniform", "epsilon-greedy", 1.0, 12_000),
        "thompson": replay_log(root, "thompson", "thompson", 0.0, 12_000),
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Log]:
    """Short uniform-random and greedy logs, for the refusals."""
    root = tmp_path_factory.mktemp("offpolicy-small")
    return {
        "uniform": replay_log(root, "uniform", "epsilon-greedy", 1.0, 3000, days=1.0),
        "greedy": replay_log(root, "greedy", "greedy", 0.0, 3000, days=1.0),
    }


@pytest.fixture(scope="module")
def small_models(small: dict[str, Log]) -> Iterator[LiveBank]:
    store = small["uniform"].store
    live = load_live_bank(store.path_of(store.current()), None)
    yield live
    live.bank.close()


@pytest.fixture(scope="module")
def model_versions(logs: dict[str, Log]) -> Iterator[list[LiveBank]]:
    """Three candidates' models: each log's final version and an earlier Thompson one."""
    thompson = logs["thompson"].store
    directories = [
        thompson.path_of(thompson.current()),
        thompson.path_of(thompson.versions()[-4]),
        logs["uniform"].store.path_of(logs["uniform"].store.current()),
    ]
    loaded = [load_live_bank(d, None) for d in directories]
    yield loaded
    for live in loaded:
        live.bank.close()


def true_value(log: Log, live: LiveBank, policy: Policy, draws: int = 64) -> float:
    """The candidate's expected revenue per 1,000 of the logged requests, from the truth.

    Greedy and epsilon-greedy choose with known probabilities; a Thompson
    candidate's are its own draws (only the winners: not the propensity's).
    """
    world, records = log.world, log.records
    profiles = records[["country", "device", "os", "browser", "provider"]].to_dict("records")
    for profile, hour, day in zip(
        profiles, records["local_hour"], records["local_weekday"], strict=True
    ):
        profile["local_hour"], profile["local_weekday"] = int(hour), int(day)
    to_world = np.asarray(world.offer_index(live.bank.campaign_ids, live.bank.page_ids))
    value = (world.true_proba(profiles) * world.payouts)[:, to_world]  # bank column order
    batch = decider_for(live.bank).decide_many(bank_slots(live, records))
    assert (batch.n_eligible > 0).all()
    rows = np.arange(len(records))
    if isinstance(policy, EpsilonGreedy):
        uniform = np.where(batch.mask, value, 0.0).sum(axis=1) / batch.n_eligible
        expected = (1 - policy.epsilon) * value[rows, batch.best] + policy.epsilon * uniform
    elif isinstance(policy, Thompson):
        policy.draws = 1
        expected = np.mean(
            [value[rows, choose_many(policy, live, *batch)[0]] for _ in range(draws)], axis=0
        )
    else:
        expected = value[rows, batch.best]
    window = WORLD.attribution_hours * HOUR
    return 1000.0 * float(expected.mean()) * float(world.delays.cdf(np.array([window]))[0])


@pytest.mark.slow
def test_estimates_cover_the_truth_and_doubly_robust_beats_ips(
    logs: dict[str, Log], model_versions: list[LiveBank]
) -> None:
    rows = []
    for log_name, log in logs.items():
        for live in model_versions:
            for name, make in CANDIDATES.items():
                result = evaluate(log.records, live, make(), draws=32)
                truth = true_value(log, live, make())
                row: dict[str, Any] = {"log": log_name, "policy": name, "truth": truth}
                row["supported"] = result.supported
                row["weight_mean"] = result.weight_mean.value
                for k in ("ips", "snips", "dr"):
                    estimate = getattr(result, k)
                    row[k] = estimate.value
                    row[f"{k}_covers"] = estimate.low <= truth <= estimate.high
                rows.append(row)
    table = pd.DataFrame(rows)
    supported = table[table["supported"]]
    print(f"\n{table.round(2).to_string()}")
    for label, part in (("all", table), ("supported", supported)):
        covered = {k: float(part[f"{k}_covers"].mean()) for k in ("ips", "snips", "dr")}
        error = {k: float((part[k] - part["truth"]).abs().mean()) for k in ("ips", "snips", "dr")}
        print(f"{label}: {len(part)} cases, 95% interval covers: {covered}, mean |error|: {error}")
    assert len(table) >= 20 and len(supported) >= 10
    # the uniform log covers every choice; the Thompson log (concentrated, and its
    # propensities Monte-Carlo estimates) misses much of other candidates' choices
    assert supported["log"].eq("uniform").sum() == 12
    assert (table.loc[~table["supported"], "weight_mean"] < 0.9).all()
    assert table["dr_covers"].mean() >= 0.8
    assert supported["dr_covers"].mean() >= 0.9
    dr_error = (table["dr"] - table["truth"]).abs()
    ips_error = (table["ips"] - table["truth"]).abs()
    assert dr_error.mean() < ips_error.mean()
    assert (supported["dr"] - supported["truth"]).abs().mean() < (
        supported["ips"] - supported["truth"]
    ).abs().mean()


def test_a_candidate_the_logs_never_support_is_called_unsupported(
    small: dict[str, Log], small_models: LiveBank
) -> None:
    uniform = make_policy("epsilon-greedy", 1.0, seed=2)
    result = evaluate(small["greedy"].records, small_models, uniform)
    assert not result.supported
    assert any("never show" in w for w in result.warnings)
    assert result.weight_mean.high < 0.9
    # the same candidate on logs that explored everything is supported
    assert evaluate(small["uniform"].records, small_models, uniform).supported


def test_bad_propensities_are_refused_or_skipped_with_a_warning(
    small: dict[str, Log], small_models: LiveBank
) -> None:
    records = small["uniform"].records.copy()
    records.loc[0, "propensity"] = 0.0
    records.loc[1, "propensity"] = np.nan
    policy = make_policy("greedy", 0.0)
    with pytest.raises(InvalidInput, match=r"2 of .* propensity"):
        evaluate(records, small_models, policy)
    result = evaluate(records, small_models, policy, skip_invalid=True)
    assert result.records == len(records) - 2
    assert any(w.startswith("skipped 2 of") for w in result.warnings)
    with pytest.raises(InvalidInput, match="no propensity column"):
        evaluate(records.drop(columns=["propensity"]), small_models, policy)


def test_a_candidate_without_the_logged_offers_is_refused(
    small: dict[str, Log], small_models: LiveBank
) -> None:
    records = small["uniform"].records.copy()
    records["campaign_id"] = "retired-" + records["campaign_id"]
    with pytest.raises(InvalidInput, match="none of the logged offers"):
        evaluate(records, small_models, make_policy("greedy", 0.0))
    records.loc[:99, "campaign_id"] = small["uniform"].records.loc[:99, "campaign_id"]
    result = evaluate(records, small_models, make_policy("greedy", 0.0))
    assert any(w.startswith(f"{len(records) - 100} records show offers") for w in result.warnings)
    assert not result.supported


def test_evaluate_command(
    small: dict[str, Log], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = small["uniform"]
    out = tmp_path / "eval.json"
    store = log.store.root
    args = ["evaluate", "--data", str(log.data_dir), "--models", str(store), "--out", str(out)]
    assert main([*args, "--policy", "epsilon-greedy", "--epsilon", "0.1"]) == 0
    document: dict[str, Any] = pd.read_json(out, typ="series").to_dict()
    assert document["supported"] is True
    assert document["records"] == DataManager(log.data_dir).read_all().shape[0]
    assert "DR" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(tmp_path / "none"), "--models", str(store)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main([*args, "--version", "v00000000T000000000000Z"]) == 2
    assert "no version" in capsys.readouterr().err


def test_logged_offers_map_to_the_candidates_columns_by_campaign_and_page(
    tmp_path: Path,
) -> None:
    log = replay_log(tmp_path, "paged", "epsilon-greedy", 1.0, 3000, days=1.0, world=PAGED)
    records = log.records
    assert records["landing_page_id"].nunique() > 1
    live = load_live_bank(log.store.path_of(log.store.current()), None)
    try:
        bank = live.bank
        columns = logged_columns(bank.campaign_ids, bank.page_ids, records)
        assert (columns >= 0).all()
        offers = list(zip(records["campaign_id"], records["landing_page_id"], strict=True))
        assert [(bank.campaign_ids[j], bank.page_ids[j]) for j in columns] == offers
        # a dataset from before pages: every record on its campaign's default page
        old = logged_columns(
            bank.campaign_ids, bank.page_ids, records.drop(columns=["landing_page_id"])
        )
        defaults = [bank.page_ids[j] for j in old if j >= 0]
        assert defaults and set(defaults) == {"default"}
        # the uniform candidate on the uniform log: full support, weights average 1
        result = evaluate(records, live, make_policy("epsilon-greedy", 1.0, seed=2))
        assert result.supported
        assert result.weight_mean.low <= 1.0 <= result.weight_mean.high
    finally:
        bank.close()
