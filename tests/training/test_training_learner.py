"""The opt-in learner in the trainer: hierarchical fits and published posteriors.

Real records of a small logistic world, real sklearn fits, the real store and
bank: the hierarchical learner publishes the models the hierarchy fits, and
the posterior files beside the logistic models are the Laplace posteriors of
those very models.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from clickrouter.datastore import DataManager
from clickrouter.errors import InvalidInput
from clickrouter.modelstore import read_digests, verify
from clickrouter.posteriors import posterior_path
from clickrouter.profile import profile_frame
from clickrouter.serving.bank import ModelBank
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.design import build_space, column_offsets, design_matrix, encode_columns
from clickrouter.training.hierarchy import NO_SHARING, fit_global, fit_hierarchy
from clickrouter.training.posterior import laplace_posterior, load_posterior
from training.conftest import DAY, T0
from training.test_training_cycle import canonical

RATES = {"a": 0.05, "b": 0.03, "c": 0.02}
# every negative kept, no hour harmonics, one C: the trainer's fit is then
# exactly the hierarchy's (or sklearn's) on the campaign's rows
PLAIN = TrainingSettings(
    workers=0, min_negatives=10**9, hour_harmonics=0, c_grid=(0.3,), min_positives=20
)
HIERARCHICAL = dataclasses.replace(PLAIN, learner="hierarchical", global_c=1.0)


@pytest.fixture
def dataset(tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any) -> dict[str, Any]:
    for cid, rate in RATES.items():
        world.add_campaign(cid, rate)
        write_dataset(tmp_path / "data", cid, world.records(cid, 6000))
    world.add_campaign("thin", 1e-3)
    write_dataset(tmp_path / "data", "thin", world.records("thin", 6000))
    catalog = catalog_file(tmp_path / "campaigns.json", [*RATES, "thin"])
    return {"root": tmp_path, "catalog": catalog, "world": world}


def _cycle(dataset: dict[str, Any], name: str, settings: TrainingSettings, **kw: Any) -> Path:
    root = dataset["root"]
    manager = TrainingManager(
        DataManager(root / "data"), root / name, dataset["catalog"], settings, **kw
    )
    report = manager.run_cycle()
    assert report.failed == 0
    return manager.store.current_path()


def _records(version: Path) -> dict[str, Any]:
    manifest = json.loads((version / "manifest.json").read_text())
    return dict(manifest["campaigns"])


def test_learner_settings_are_validated_by_name() -> None:
    bad: list[dict[str, Any]] = [
        {"learner": "pooled"},
        {"global_c": 0.0},
        {"global_c": float("inf")},
        {"global_c_grid": ()},
        {"global_c_grid": (0.1, -1.0)},
        {"hierarchy_min_positives": 0},
        {"hierarchy_min_positives": 50},  # above min_positives (20)
        {"posterior": "yes"},
        {"shared_by": "advertiser"},
    ]
    for fields in bad:
        (name,) = fields
        with pytest.raises(InvalidInput, match=name):
            TrainingSettings(**fields)


def test_default_settings_record_what_they_recorded_before() -> None:
    recorded = TrainingSettings().to_dict()
    opt_in = {"learner", "global_c", "global_c_grid", "shared_by", "hierarchy_min_positives"}
    opt_in |= {"posterior"}
    assert not opt_in & set(recorded)
    assert TrainingSettings(**recorded) == TrainingSettings()
    chosen = TrainingSettings(learner="hierarchical", posterior=True).to_dict()
    assert chosen["learner"] == "hierarchical" and chosen["posterior"] is True
    assert TrainingSettings(**chosen).learner == "hierarchical"


def test_hierarchical_models_are_the_hierarchy_fit_and_the_bank_compiles_them(
    dataset: dict[str, Any],
) -> None:
    version = _cycle(dataset, "store", HIERARCHICAL)
    kinds = {cid: r["kind"] for cid, r in _records(version).items()}
    assert kinds == {"a": "logistic", "b": "logistic", "c": "logistic", "thin": "base_rate"}
    _check_hierarchy(dataset, version, [list(RATES)])


def test_campaigns_share_effects_within_their_vertical(dataset: dict[str, Any]) -> None:
    verticals = {"a": "games", "b": "games", "c": "finance", "thin": "games"}
    entries = [
        {"id": c, "landing_page": f"https://shop.example/{c}", "payout": 1.0, "vertical": v}
        for c, v in verticals.items()
    ]
    dataset["catalog"].write_text(json.dumps(entries), encoding="utf-8")
    version = _cycle(dataset, "store", HIERARCHICAL)
    _check_hierarchy(dataset, version, [["a", "b"], ["c"]])
    everyone = _cycle(dataset, "all", dataclasses.replace(HIERARCHICAL, shared_by="all"))
    _check_hierarchy(dataset, everyone, [list(RATES)])


def _check_hierarchy(
    dataset: dict[str, Any], version: Path, groups: list[list[str]], global_C: float = 1.0
) -> None:
    """Each group's published models are ``fit_hierarchy`` on the group's rows, and the
    bank scores them as sklearn does."""
    frame = DataManager(dataset["root"] / "data").read_all()
    space = build_space(frame)
    n_columns = int(column_offsets(space)[-1])
    profiles = canonical(dataset["world"].traffic(300, 0.0))
    rows = profile_frame(profiles)
    X_new = design_matrix(encode_columns(rows, space), n_columns)
    with ModelBank.from_directory(version) as bank:
        assert bank.n_compiled == len(bank.campaign_ids) and bank.n_generic == 0
        banked = bank.predict_proba(profiles)
        for ids in groups:
            part = frame[frame["campaign_id"].isin(ids)].reset_index(drop=True)
            X = design_matrix(encode_columns(part, space), n_columns)
            campaign = part["campaign_id"].map({c: i for i, c in enumerate(ids)}).to_numpy()
            y = part["label"].to_numpy(dtype=np.float64)
            reference = fit_hierarchy(X, y, campaign, len(ids), global_C=global_C, deviation_C=0.3)
            for k, cid in enumerate(ids):
                fit = reference.campaigns[k]
                assert fit is not None
                model = joblib.load(version / f"{cid}.joblib")
                logits = model.decision_function(rows)
                np.testing.assert_allclose(logits, X_new @ fit.coef + fit.intercept, atol=1e-4)
                proba = model.predict_proba(rows)[:, 1]
                column = bank.campaign_ids.index(cid)
                np.testing.assert_allclose(banked[:, column], proba, rtol=1e-9, atol=1e-12)


def test_a_group_that_shares_nothing_is_fitted_as_the_independent_learner(
    dataset: dict[str, Any],
) -> None:
    """With the global C chosen (the default), three campaigns with effects of their
    own share none: the published models are the independent learner's, and the
    records say global C 0."""
    auto = dataclasses.replace(HIERARCHICAL, global_c=None)
    version = _cycle(dataset, "store", auto)
    records = _records(version)
    assert {records[cid]["global_c"] for cid in RATES | {"thin": 0}} == {NO_SHARING}
    assert records["thin"]["kind"] == "base_rate"  # ...and scores flat, as the bank shows
    independent = _cycle(dataset, "plain", PLAIN)
    profiles = canonical(dataset["world"].traffic(300, 0.0))
    with ModelBank.from_directory(version) as bank, ModelBank.from_directory(independent) as ref:
        assert bank.campaign_ids == ref.campaign_ids
        np.testing.assert_array_equal(bank.predict_proba(profiles), ref.predict_proba(profiles))


def test_the_shared_effects_c_is_chosen_per_group_and_recorded(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    """Campaigns with the same profile effects share them: the chosen global C is one
    of the grid's, and the published models are the hierarchy fitted at that C."""
    ids = [f"s{k}" for k in range(8)]
    template = world.add_campaign(ids[0], 0.03)
    for cid in ids[1:]:
        truth = world.add_campaign(cid, 0.03)
        truth.effects, truth.intercept = template.effects, template.intercept
    for cid in ids:
        write_dataset(tmp_path / "data", cid, world.records(cid, 4000))
    dataset = {"root": tmp_path, "catalog": catalog_file(tmp_path / "c.json", ids), "world": world}
    auto = dataclasses.replace(HIERARCHICAL, global_c=None)
    version = _cycle(dataset, "store", auto)
    chosen = {_records(version)[cid]["global_c"] for cid in ids}
    assert len(chosen) == 1 and chosen <= set(auto.global_c_grid)
    (C,) = chosen
    _check_hierarchy(dataset, version, [ids], global_C=C)


def test_a_thin_campaign_takes_its_groups_effects_around_its_own_rate(
    dataset: dict[str, Any],
) -> None:
    """Below ``min_positives`` the campaign is still a base rate, but its profiles are
    scored with the shared effects its group's logistic campaigns were fitted
    towards, and its own traffic averages its smoothed rate."""
    version = _cycle(dataset, "store", HIERARCHICAL)
    thin = _records(version)["thin"]
    assert thin["kind"] == "base_rate" and thin["global_c"] == 1.0
    frame = DataManager(dataset["root"] / "data").read_all()
    space = build_space(frame)
    n_columns = int(column_offsets(space)[-1])
    group = frame[frame["campaign_id"].isin(list(RATES))].reset_index(drop=True)
    y = group["label"].to_numpy(dtype=np.float64)
    campaign = group["campaign_id"].map({c: i for i, c in enumerate(RATES)}).to_numpy()
    X = design_matrix(encode_columns(group, space), n_columns)
    shared = fit_global(X, y, campaign, len(RATES), C=1.0, weight=np.ones_like(y)).coef
    assert np.ptp(shared) > 0.5  # the group's campaigns do share effects here
    model = joblib.load(version / "thin.joblib")
    rows = profile_frame(canonical(dataset["world"].traffic(300, 0.0)))
    shape = (
        model.decision_function(rows)
        - design_matrix(encode_columns(rows, space), n_columns) @ shared
    )
    np.testing.assert_allclose(shape, shape[0], atol=1e-6)  # the same effects, one level
    own = frame[frame["campaign_id"] == "thin"]  # every negative kept: one row each
    odds = np.exp(model.decision_function(own))
    assert odds.mean() == pytest.approx(thin["rate"] / (1 - thin["rate"]), rel=1e-9)


def test_base_rates_follow_their_groups_effects_without_data_of_their_own(
    dataset: dict[str, Any], write_dataset: Any, catalog_file: Any
) -> None:
    """A campaign never clicked scores its group's effects around the pooled rate,
    and a base rate without new data is refitted when its group's effects are."""
    root, world = dataset["root"], dataset["world"]
    catalog_file(dataset["catalog"], [*RATES, "thin", "cold"])
    profiles = canonical(world.traffic(300, 0.0))
    first = _cycle(dataset, "store", HIERARCHICAL)
    cold = _records(first)["cold"]
    assert cold["kind"] == "base_rate" and cold["global_c"] == 1.0 and cold["rows"] == 0
    with ModelBank.from_directory(first) as bank:
        column = bank.predict_proba(profiles)[:, bank.campaign_ids.index("cold")]
    assert np.ptp(np.log(column)) > 1.0  # not flat: the group's effects
    write_dataset(root / "data", "a", world.records("a", 6000, start=T0 + 4 * DAY), tag="1")
    second = _cycle(dataset, "store", HIERARCHICAL)
    before, after = _records(first), _records(second)
    for cid in ("thin", "cold"):  # no new data of their own, refitted all the same
        assert after[cid]["data_version"] == before[cid]["data_version"]
        assert after[cid]["decision"] == "promoted" and after[cid]["rate"] == before[cid]["rate"]
        old = joblib.load(first / f"{cid}.joblib").decision_function(profile_frame(profiles))
        new = joblib.load(second / f"{cid}.joblib").decision_function(profile_frame(profiles))
        assert not np.allclose(old, new)


def test_a_base_rate_of_a_group_sharing_nothing_is_carried_over(
    dataset: dict[str, Any], write_dataset: Any
) -> None:
    auto = dataclasses.replace(HIERARCHICAL, global_c=None)
    root, world = dataset["root"], dataset["world"]
    _cycle(dataset, "store", auto)
    write_dataset(root / "data", "a", world.records("a", 6000, start=T0 + 4 * DAY), tag="1")
    second = _records(_cycle(dataset, "store", auto))
    assert second["a"]["decision"] == "promoted" and second["thin"]["decision"] == "unchanged"


def test_hierarchy_min_positives_gives_thin_campaigns_a_logistic_model(
    dataset: dict[str, Any],
) -> None:
    thin_sales = int(DataManager(dataset["root"] / "data").read_training_set("thin")["label"].sum())
    assert 1 <= thin_sales < PLAIN.min_positives
    settings = dataclasses.replace(HIERARCHICAL, hierarchy_min_positives=1)
    records = _records(_cycle(dataset, "store", settings))
    assert records["thin"]["kind"] == "logistic"
    assert records["thin"]["positives"] == thin_sales


def test_posterior_files_sit_beside_logistic_models(dataset: dict[str, Any]) -> None:
    version = _cycle(dataset, "store", dataclasses.replace(PLAIN, posterior=True))
    digests = read_digests(version)
    assert verify(version) == []
    frame = DataManager(dataset["root"] / "data").read_all()
    for cid, record in _records(version).items():
        path = posterior_path(version / record["file"])
        if record["kind"] != "logistic":
            assert not path.exists()
            continue
        assert path.name in digests  # trusted by the manifest, like the model file
        model = joblib.load(version / record["file"])
        posterior = load_posterior(path, model.steps[0][1])
        own = frame[frame["campaign_id"] == cid]
        expected = laplace_posterior(model, profile_frame(canonical(own)))
        np.testing.assert_allclose(posterior.variances, expected.variances, rtol=1e-6)
        assert posterior.intercept == pytest.approx(expected.intercept, rel=1e-6)
    with ModelBank.from_directory(version) as bank:  # the greedy bank ignores them
        assert bank.n_compiled == len(bank.campaign_ids) and bank.n_generic == 0


def test_unchanged_models_keep_their_posterior(dataset: dict[str, Any], write_dataset: Any) -> None:
    settings = dataclasses.replace(PLAIN, posterior=True)
    first = _cycle(dataset, "store", settings)
    more = dataset["world"].records("a", 2000, start=1.8e9)
    write_dataset(dataset["root"] / "data", "a", more, tag="1")
    second = _cycle(dataset, "store", settings)
    assert second != first
    records = _records(second)
    assert records["a"]["decision"] != "unchanged" and records["b"]["decision"] == "unchanged"
    kept_before, kept_now = first / "b.posterior.json", second / "b.posterior.json"
    assert os.path.samefile(kept_before, kept_now) or kept_before.read_bytes() == (
        kept_now.read_bytes()
    )
    assert "b.posterior.json" in read_digests(second) and verify(second) == []


def test_default_settings_publish_no_posterior(dataset: dict[str, Any]) -> None:
    version = _cycle(dataset, "store", PLAIN)
    assert not list(version.glob("*.posterior.json"))
    manifest = json.loads((version / "manifest.json").read_text())
    assert "learner" not in manifest["settings"]


def test_dask_cluster_fits_the_hierarchy_as_the_caller_would(dataset: dict[str, Any]) -> None:
    distributed = pytest.importorskip("distributed")
    profiles = profile_frame(canonical(dataset["world"].traffic(100, 0.0)))
    inline = _proba(_cycle(dataset, "inline", HIERARCHICAL), profiles)
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        version = _cycle(dataset, "dask", HIERARCHICAL, dask_scheduler=cluster.scheduler_address)
        on_dask = _proba(version, profiles)
    np.testing.assert_allclose(on_dask, inline, rtol=1e-12)


def _proba(version: Path, profiles: Any) -> np.ndarray:
    models = [joblib.load(version / f"{cid}.joblib") for cid in RATES]
    return np.column_stack([m.predict_proba(profiles)[:, 1] for m in models])
