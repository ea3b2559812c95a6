"""Negative downsampling and class weights keep probabilities calibrated."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy.special import logit

from clickrouter.datastore import DataManager
from clickrouter.profile import CANONICAL_FIELDS, profile_frame
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.fitting import smoothed_rate
from clickrouter.training.tasks import sampling_rate


def _train(tmp_path: Path, catalog: Path, name: str, **settings: Any) -> Any:
    base = {"workers": 0, "c_grid": (1.0,), "min_negatives": 0}
    manager = TrainingManager(
        DataManager(tmp_path / "data"),
        tmp_path / name,
        catalog,
        TrainingSettings(**{**base, **settings}),
    )
    report = manager.run_cycle()
    record = manager.store.manifest(report.version)["campaigns"]["c"]
    return joblib.load(manager.store.current_path() / "c.joblib"), record


def _proba(model: Any, frame: Any) -> np.ndarray:
    rows = frame[list(CANONICAL_FIELDS)].to_dict("records")
    for r in rows:
        r["local_hour"], r["local_weekday"] = int(r["local_hour"]), int(r["local_weekday"])
    return np.asarray(model.predict_proba(profile_frame(rows))[:, 1])


def test_downsampled_fit_matches_the_full_fit(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    world.add_campaign("c", 0.01, strength=0.7)
    write_dataset(tmp_path / "data", "c", world.records("c", 150_000))
    catalog = catalog_file(tmp_path / "campaigns.json", ["c"])
    full, full_record = _train(tmp_path, catalog, "full", negative_rate=1.0)
    sampled, record = _train(tmp_path, catalog, "sampled", negative_rate=0.05)
    assert full_record["rate"] == 1.0 and record["rate"] == 0.05
    assert record["kept_rows"] < 0.1 * 150_000

    fresh = world.traffic(60_000, 1.8e9)
    truth = world.truths["c"].proba(fresh)
    p_full, p_sampled = _proba(full, fresh), _proba(sampled, fresh)
    # calibrated in aggregate, like the full fit (sampling error of ~1,500 sales: a few %)
    assert 0.9 < p_full.sum() / truth.sum() < 1.1
    assert 0.9 < p_sampled.sum() / truth.sum() < 1.1
    # and the same probabilities profile by profile, within sampling noise
    gap = np.abs(logit(p_sampled) - logit(p_full))
    assert np.median(gap) < 0.1
    # without the log(r) correction it would be ~20x off: the correction is doing the work
    uncorrected = _shift(p_sampled, -math.log(0.05))
    assert uncorrected.sum() / truth.sum() > 10


def test_positive_weights_are_corrected_too(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    world.add_campaign("c", 0.02, strength=0.7)
    write_dataset(tmp_path / "data", "c", world.records("c", 60_000))
    catalog = catalog_file(tmp_path / "campaigns.json", ["c"])
    weighted, _ = _train(tmp_path, catalog, "weighted", negative_rate=1.0, positive_weight=10.0)
    fresh = world.traffic(40_000, 1.8e9)
    truth = world.truths["c"].proba(fresh)
    assert 0.85 < _proba(weighted, fresh).sum() / truth.sum() < 1.15


def _shift(p: np.ndarray, delta: float) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-(logit(p) + delta))))


def test_sampling_rate_keeps_small_campaigns_whole() -> None:
    settings = TrainingSettings(negative_rate=0.1, min_negatives=2000)
    assert sampling_rate(1500, settings) == 1.0
    assert sampling_rate(10_000, settings) == 0.2
    assert sampling_rate(1_000_000, settings) == 0.1


def test_smoothed_rate_shrinks_towards_the_pooled_rate() -> None:
    assert smoothed_rate(0, 0, 1e-4, 2.0) == 1e-4
    assert 1e-4 < smoothed_rate(3, 1000, 1e-4, 2.0) < 3e-3
    assert abs(smoothed_rate(3000, 1_000_000, 1e-4, 2.0) - 3e-3) < 1e-4
