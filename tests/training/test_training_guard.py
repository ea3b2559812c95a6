"""The promotion guard keeps the served model when the new one is clearly worse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clickrouter.datastore import DataManager
from clickrouter.modelstore.digests import file_sha256 as sha256_file
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.fitting import FitSettings, guard


def test_worse_model_is_not_promoted(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    world.add_campaign("c", 0.05, strength=1.5)
    write_dataset(tmp_path / "data", "c", world.records("c", 20_000))
    catalog = catalog_file(tmp_path / "campaigns.json", ["c"])
    data = DataManager(tmp_path / "data")
    good = TrainingManager(data, tmp_path / "store", catalog, TrainingSettings(workers=0))
    first = good.run_cycle()
    served_digest = sha256_file(good.store.current_path() / "c.joblib")

    write_dataset(tmp_path / "data", "c", world.records("c", 5_000, start=1.78e9), tag="1")
    # a crippling regularisation makes the new fit close to a constant: clearly worse
    bad = TrainingManager(
        data, tmp_path / "store", catalog, TrainingSettings(workers=0, c_grid=(1e-5,))
    )
    report = bad.run_cycle()
    assert report.published and report.kept == 1 and report.promoted == 0
    record = bad.store.manifest(report.version)["campaigns"]["c"]
    assert record["decision"] == "kept"
    assert record["trained_in"] == first.version
    assert sha256_file(bad.store.current_path() / "c.joblib") == served_digest
    # the record describes the file it keeps: the served model, fitted on the first
    # cycle's data, scored on this cycle's held-out slice; the rejected fit is the candidate
    served = good.store.manifest(first.version)["campaigns"]["c"]
    for field in ("kind", "C", "c_chosen_at_positives", "rows", "positives", "recent_shift"):
        assert record[field] == served[field], field
    assert record["metrics"] == record["served_metrics"]
    candidate = record["candidate"]
    assert candidate["kind"] == "logistic" and candidate["C"] == 1e-5
    assert candidate["metrics"]["log_loss"] > record["served_metrics"]["log_loss"]
    assert candidate["positives"] > served["positives"]  # it saw the newer data too


def _settings(tolerance: float) -> FitSettings:
    return FitSettings({}, 0, (1.0,), 1.0, 20, 2.0, 1e-3, tolerance, 100, guard_min_positives=10)


def test_guard_rule() -> None:
    served = {"log_loss": 0.100}
    new = {"log_loss": 0.101, "positives": 30}
    assert guard(new, served, _settings(0.02))[0] == "promoted"
    assert guard({**new, "log_loss": 0.103}, served, _settings(0.02))[0] == "kept"
    assert guard({**new, "log_loss": 0.5}, None, _settings(0.02))[0] == "promoted"
    assert guard(None, served, _settings(0.02))[0] == "promoted"
    # too few held-out sales: the comparison is noise, so the fresher model wins
    assert guard({"log_loss": 0.5, "positives": 3}, served, _settings(0.02))[0] == "promoted"
