"""End-to-end training cycles on a small logistic world with known truth."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clickrouter.datastore import DataManager
from clickrouter.errors import ClickrouterError
from clickrouter.modelstore import ModelStore
from clickrouter.profile import CANONICAL_FIELDS, profile_frame
from clickrouter.serving.bank import ModelBank
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.fitting import CampaignTask, FitSettings, c_candidates

DAY = 86400.0


def canonical(frame: Any) -> list[dict[str, Any]]:
    rows = frame[list(CANONICAL_FIELDS)].to_dict("records")
    for r in rows:
        r["local_hour"], r["local_weekday"] = int(r["local_hour"]), int(r["local_weekday"])
    return rows


@pytest.fixture
def trained(tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any) -> dict[str, Any]:
    data = tmp_path / "data"
    sizes = {"big1": (0.05, 20_000), "big2": (0.03, 20_000), "thin1": (2e-3, 3000)}
    sizes["thin2"] = (5e-4, 4000)
    for cid, (rate, n) in sizes.items():
        world.add_campaign(cid, rate)
        write_dataset(data, cid, world.records(cid, n))
    catalog = catalog_file(tmp_path / "campaigns.json", [*sizes, "nodata"])
    manager = TrainingManager(
        DataManager(data),
        tmp_path / "store",
        catalog,
        TrainingSettings(workers=0, min_positives=20),
    )
    return {"manager": manager, "report": manager.run_cycle(), "data": data, "world": world}


def test_first_cycle_publishes_a_model_for_every_campaign(trained: dict[str, Any]) -> None:
    report, store = trained["report"], trained["manager"].store
    assert report.published and store.current() == report.version
    assert (report.campaigns, report.trained, report.promoted) == (5, 5, 5)
    assert report.base_rate == 3 and report.failed == 0
    assert store.verify(report.version) == []
    records = store.manifest(report.version)["campaigns"]
    assert {c: r["kind"] for c, r in records.items()} == {
        "big1": "logistic",
        "big2": "logistic",
        "thin1": "base_rate",
        "thin2": "base_rate",
        "nodata": "base_rate",
    }
    big = records["big1"]["metrics"]
    assert big["roc_auc"] > 0.6 and 0.5 < big["calibration"] < 2.0
    assert set(big) >= {"log_loss", "roc_auc", "pr_auc", "calibration"}


def test_bank_compiles_every_published_model_exactly(trained: dict[str, Any]) -> None:
    store: ModelStore = trained["manager"].store
    profiles = canonical(trained["world"].traffic(200, 0.0))
    with ModelBank.from_directory(store.current_path()) as bank:
        assert bank.n_generic == 0 and bank.n_compiled == 5
        proba = bank.predict_proba(profiles)
        for j, cid in enumerate(bank.campaign_ids):
            model = joblib.load(store.current_path() / f"{cid}.joblib")
            expected = model.predict_proba(profile_frame(profiles))[:, 1]
            np.testing.assert_allclose(proba[:, j], expected, rtol=1e-9, atol=1e-12)


def test_quality_against_the_truth_on_fresh_traffic(trained: dict[str, Any]) -> None:
    world, store = trained["world"], trained["manager"].store
    for cid in ("big1", "big2"):
        fresh = world.records(cid, 40_000, start=1.8e9)
        truth = world.truths[cid].proba(fresh)
        model = joblib.load(store.current_path() / f"{cid}.joblib")
        proba = model.predict_proba(profile_frame(canonical(fresh)))[:, 1]
        oracle_auc = roc_auc_score(fresh["label"], truth)
        assert roc_auc_score(fresh["label"], proba) > oracle_auc - 0.05
        assert 0.8 <= proba.sum() / truth.sum() <= 1.25


def test_unchanged_data_publishes_nothing(trained: dict[str, Any]) -> None:
    again = trained["manager"].run_cycle()
    assert not again.published and again.version == trained["report"].version
    assert again.unchanged == 5 and again.trained == 0


def test_only_campaigns_with_new_data_are_retrained(
    trained: dict[str, Any], write_dataset: Any
) -> None:
    manager, first = trained["manager"], trained["report"]
    world = trained["world"]
    write_dataset(trained["data"], "big2", world.records("big2", 5000, start=1.78e9), tag="1")
    report = manager.run_cycle()
    assert report.published and report.trained == 1 and report.unchanged == 4
    new, old = manager.store.path_of(report.version), manager.store.path_of(first.version)
    assert os.path.samefile(new / "big1.joblib", old / "big1.joblib")  # carried over
    records = manager.store.manifest(report.version)["campaigns"]
    assert records["big2"]["trained_in"] == report.version
    assert records["big1"]["trained_in"] == first.version
    assert records["big1"]["decision"] == "unchanged"
    assert records["big2"]["served_metrics"] is not None
    assert manager.store.manifest(report.version)["parent"] == first.version


def test_c_is_chosen_again_only_once_the_sales_have_grown_enough(
    trained: dict[str, Any], write_dataset: Any
) -> None:
    manager, world, data = trained["manager"], trained["world"], trained["data"]
    first = manager.store.manifest(trained["report"].version)["campaigns"]["big2"]
    grid = manager.settings.c_grid
    assert len(first["grid_log_loss"]) == len(grid)  # a first fit tries the whole grid
    assert first["c_chosen_at_positives"] == first["positives"]

    write_dataset(data, "big2", world.records("big2", 4000, start=1.78e9), tag="1")
    small = fitted(manager.store.manifest(manager.run_cycle().version)["campaigns"]["big2"])
    assert first["positives"] < small["positives"] <= 1.5 * first["positives"]
    assert small["C"] == first["C"] and list(small["grid_log_loss"]) == [repr(first["C"])]
    assert small["c_chosen_at_positives"] == first["positives"]  # still the first choice
    assert small["metrics"] is not None  # the guard still judged the refit

    write_dataset(data, "big2", world.records("big2", 20_000, start=1.79e9), tag="2")
    grown = fitted(manager.store.manifest(manager.run_cycle().version)["campaigns"]["big2"])
    assert grown["positives"] > 1.5 * first["positives"]
    assert len(grown["grid_log_loss"]) == len(grid)
    assert grown["c_chosen_at_positives"] == grown["positives"]


def fitted(record: dict[str, Any]) -> dict[str, Any]:
    """The cycle's own fit: the record, or its candidate when the guard kept the served file."""
    candidate = record.get("candidate")
    return candidate if isinstance(candidate, dict) else record


def test_a_regrid_growth_of_zero_tries_the_whole_grid_every_cycle() -> None:
    settings = FitSettings({}, 0, (0.1, 1.0), 1.0, 10, 1.0, 0.01, 0.02, 100, c_regrid_growth=0.0)
    task = CampaignTask("c", *_empty_rows(), served_c=0.1, served_c_positives=100)
    task.positives = 101
    assert c_candidates(settings, task) == ((0.1, 1.0), 101)
    reuse = dataclasses.replace(settings, c_regrid_growth=0.5)
    assert c_candidates(reuse, task) == ((0.1,), 100)
    unknown = dataclasses.replace(task, served_c_positives=0)  # an older manifest's record
    assert c_candidates(reuse, unknown) == ((0.1, 1.0), 101)
    regridded = dataclasses.replace(reuse, c_grid=(0.3, 3.0))  # the served C left the grid
    assert c_candidates(regridded, task) == ((0.3, 3.0), 101)


def _empty_rows() -> tuple[Any, ...]:
    empty = np.zeros((0, 1), dtype=np.int32)
    labels = np.zeros(0, dtype=np.int8)
    return empty, labels, 0, empty, labels, 1.0, 0, 0, 0, 0


def test_a_campaign_that_leaves_the_catalogue_leaves_the_version(
    trained: dict[str, Any], catalog_file: Any, tmp_path: Path
) -> None:
    manager = trained["manager"]
    manager.catalog = catalog_file(tmp_path / "smaller.json", ["big1", "thin1", "fresh"])
    report = manager.run_cycle()
    assert report.published and report.trained == 1 and report.unchanged == 2
    files = sorted(p.name for p in manager.store.current_path().glob("*.joblib"))
    assert files == ["big1.joblib", "fresh.joblib", "thin1.joblib"]


def test_window_limits_training_to_recent_records(trained: dict[str, Any]) -> None:
    manager = trained["manager"]
    manager.settings = TrainingSettings(workers=0, window_seconds=3 * DAY)
    manager.catalog = manager.load_catalog()[:2]  # catalogue change forces a cycle
    end = float(manager.store.manifest(trained["report"].version)["training_window"]["last"])
    report = manager.run_cycle(now=end)
    window = manager.store.manifest(report.version)["training_window"]
    assert window["start"] == pytest.approx(end - 3 * DAY)
    assert window["first"] >= window["start"]


def test_watch_runs_cycles_until_told_to_stop(trained: dict[str, Any]) -> None:
    reports: list[Any] = []
    trained["manager"].watch(0.01, cycles=2, on_report=reports.append)
    assert [r.published for r in reports] == [False, False]
    assert all(r.version == trained["report"].version for r in reports)


def test_watch_survives_a_failing_cycle(trained: dict[str, Any]) -> None:
    manager = trained["manager"]
    errors: list[Exception] = []
    with ModelStore(manager.store.root).writer_lock():  # another writer holds the store
        manager.watch(0.01, cycles=2, on_error=errors.append)
    assert len(errors) == 2 and "another writer" in str(errors[0])
    assert manager.store.current() == trained["report"].version


def test_a_cycle_leaves_the_garbage_collector_as_it_found_it(
    trained: dict[str, Any], write_dataset: Any
) -> None:
    """A cycle pauses the collector; after it, failed or not, it is as it was."""
    import gc

    manager, world = trained["manager"], trained["world"]
    assert gc.isenabled()
    write_dataset(trained["data"], "big1", world.records("big1", 2000, start=1.78e9), tag="1")
    assert manager.run_cycle().published and gc.isenabled()
    manager.catalog = trained["data"] / "missing.json"
    with pytest.raises(ClickrouterError):
        manager.run_cycle()
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ClickrouterError):
            manager.run_cycle()
        assert not gc.isenabled()
    finally:
        gc.enable()
