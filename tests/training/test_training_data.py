"""ParquetTrainingData: a bare hive-layout dataset read without a DataManager manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickrouter.datastore import DataManager
from clickrouter.errors import InvalidInput
from clickrouter.training import (
    ParquetTrainingData,
    TrainingData,
    TrainingManager,
    TrainingSettings,
    open_training_data,
)

DAY = 86400.0


def test_reads_the_hive_layout_with_time_bounds(tmp_path: Path, world: Any, write_raw: Any) -> None:
    world.add_campaign("a", 0.05)
    frame = world.records("a", 2000)
    write_raw(tmp_path, "a", frame)
    data = ParquetTrainingData(tmp_path)
    assert isinstance(data, TrainingData)
    assert data.campaigns() == ["a"]
    every = data.read_training_set("a")
    assert len(every) == 2000 and set(every["campaign_id"]) == {"a"}
    start, end = float(frame["ts"].iloc[500]), float(frame["ts"].iloc[1500])
    bounded = data.read_all(start, end)
    assert len(bounded) == 1000 and bounded["ts"].between(start, end).all()
    before = data.data_version("a")
    write_raw(tmp_path, "a", world.records("a", 10, start=1.78e9), tag="1")
    assert data.data_version("a") != before


def test_a_cycle_runs_on_it(tmp_path: Path, world: Any, write_raw: Any, catalog_file: Any) -> None:
    world.add_campaign("a", 0.05)
    write_raw(tmp_path / "data", "a", world.records("a", 5000))
    manager = TrainingManager(
        ParquetTrainingData(tmp_path / "data"),
        tmp_path / "store",
        catalog_file(tmp_path / "campaigns.json", ["a"]),
        TrainingSettings(workers=0),
    )
    report = manager.run_cycle()
    assert report.rows == 5000 and report.promoted == 1


def test_open_prefers_the_data_manager(tmp_path: Path) -> None:
    assert isinstance(open_training_data(tmp_path), DataManager)
    with pytest.raises(InvalidInput, match="does not exist"):
        ParquetTrainingData(tmp_path / "missing")
