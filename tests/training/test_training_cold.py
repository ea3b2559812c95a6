"""Campaigns no record has reached yet: the cold start's rate, or the trainer's prior mean.

Real records committed through the DataManager, real cycles, the real store and
the real ModelBank reading what was published.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clickrouter.datastore import DataManager
from clickrouter.serving.bank import ModelBank
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.plan import COLD_DRIFT

T1 = 1.76e9  # records of the second cycle come after the first's


def labelled(world: Any, cid: str, n: int, sales: int, start: float) -> pd.DataFrame:
    """``n`` records of ``cid`` of which exactly the first ``sales`` sold."""
    frame = world.records(cid, n, start=start)
    label = np.zeros(n, dtype=np.int8)
    label[:sales] = 1
    frame["label"] = label
    frame["revenue"] = np.where(label == 1, 10.0, 0.0)
    frame["sale_ts"] = np.where(label == 1, frame["ts"] + 60.0, np.nan)
    return frame


def cold_setup(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any, *, cold_at_prior: bool
) -> tuple[TrainingManager, Path]:
    """A cold start of four campaigns, then records for ``thin`` alone (6 sales in 3,000)."""
    data = tmp_path / "data"
    world.add_campaign("thin", 2e-3)
    world.add_campaign("hot", 0.03)
    write_dataset(data, "thin", labelled(world, "thin", 3000, 6, start=1.7e9))
    catalog = catalog_file(tmp_path / "campaigns.json", ["thin", "hot", "cold1", "cold2"])
    settings = TrainingSettings(workers=0, min_positives=20, cold_at_prior=cold_at_prior)
    manager = TrainingManager(DataManager(data), tmp_path / "store", catalog, settings)
    manager.publish_cold_start()
    return manager, data


def served_rates(manager: TrainingManager, profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """Each campaign's P(sale) for ``profiles`` in the bank the predictor would load."""
    with ModelBank.from_directory(manager.store.current_path()) as bank:
        proba = bank.predict_proba(profiles)
        return {cid: proba[:, j] for j, cid in enumerate(bank.campaign_ids)}


def pooled_of(manager: TrainingManager, version: str) -> float:
    return float(manager.store.manifest(version)["pooled_rate"])


def profiles_of(world: Any, n: int) -> list[dict[str, Any]]:
    frame = world.traffic(n, 1.8e9)
    rows: list[dict[str, Any]] = frame.drop(columns=["ts"]).to_dict("records")
    for r in rows:
        r["local_hour"], r["local_weekday"] = int(r["local_hour"]), int(r["local_weekday"])
    return rows


def test_never_clicked_campaigns_score_the_prior_mean_a_click_would_shrink_to(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    manager, _ = cold_setup(tmp_path, world, write_dataset, catalog_file, cold_at_prior=True)
    report = manager.run_cycle()
    pooled = pooled_of(manager, report.version)
    assert pooled == pytest.approx(6.5 / 3001, rel=0.05)  # the thin campaign's records
    rates = served_rates(manager, profiles_of(world, 300))
    for cid in ("cold1", "cold2", "hot"):  # no record of any of them yet
        np.testing.assert_allclose(rates[cid], pooled, rtol=1e-9)
    record = manager.store.manifest(report.version)["campaigns"]["cold1"]
    assert (record["kind"], record["decision"]) == ("base_rate", "cold_start")
    assert record["rate"] == pooled and "prior mean" in record["reason"]


def test_by_default_never_clicked_campaigns_keep_the_cold_start_rate(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    manager, _ = cold_setup(tmp_path, world, write_dataset, catalog_file, cold_at_prior=False)
    cold_version = manager.store.current()
    report = manager.run_cycle()
    assert pooled_of(manager, report.version) > 10 * manager.settings.cold_start_rate
    rates = served_rates(manager, profiles_of(world, 50))
    np.testing.assert_allclose(rates["cold1"], manager.settings.cold_start_rate, rtol=1e-9)
    new, old = manager.store.path_of(report.version), manager.store.path_of(cold_version)
    assert os.path.samefile(new / "cold1.joblib", old / "cold1.joblib")


def test_cold_models_are_written_again_only_once_the_prior_mean_has_moved(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    manager, data = cold_setup(tmp_path, world, write_dataset, catalog_file, cold_at_prior=True)
    first = manager.run_cycle()

    # more of the same: the pooled rate moves by ~4 %, the cold files are carried over
    write_dataset(data, "thin", labelled(world, "thin", 3000, 7, start=T1), tag="1")
    second = manager.run_cycle()
    moved = math.log(pooled_of(manager, second.version) / pooled_of(manager, first.version))
    assert 0 < abs(moved) < COLD_DRIFT
    new, old = manager.store.path_of(second.version), manager.store.path_of(first.version)
    for cid in ("cold1", "cold2", "hot"):
        assert os.path.samefile(new / f"{cid}.joblib", old / f"{cid}.joblib")
    assert second.trained == 1 and second.unchanged == 3

    # a thin campaign selling far more: the prior mean moves ~14x, the cold ones follow it
    write_dataset(data, "hot", labelled(world, "hot", 400, 12, start=T1), tag="2")
    third = manager.run_cycle()
    pooled = pooled_of(manager, third.version)
    assert pooled == pytest.approx(12.5 / 401, rel=0.05)
    rates = served_rates(manager, profiles_of(world, 50))
    for cid in ("cold1", "cold2"):
        np.testing.assert_allclose(rates[cid], pooled, rtol=1e-9)
    # the thin campaign's model rests on its records: not a prior mean, not rewritten
    newest = manager.store.path_of(third.version)
    assert os.path.samefile(newest / "thin.joblib", new / "thin.joblib")
    assert manager.store.verify(third.version) == []
