"""Loading a model directory: every problem is named, strict and lenient modes."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LinearRegression, LogisticRegression

from clickrouter import ModelBank
from clickrouter.errors import ModelLoadError
from clickrouter.profile import profile_frame
from fakes import fitted_pipeline, random_profiles, sklearn_proba, write_model_directory


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    return write_model_directory(
        tmp_path / "models", {"a": fitted_pipeline(0), "b": fitted_pipeline(1)}
    )


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ModelLoadError) as info:
        ModelBank.from_directory(path)
    return info.value.problems


def test_truncated_model_file_is_named_and_lenient_mode_loads_the_rest(good_dir: Path) -> None:
    data = (good_dir / "b.joblib").read_bytes()
    (good_dir / "b.joblib").write_bytes(data[: len(data) // 2])
    problems = problems_of(good_dir)
    assert (
        len(problems) == 1 and "b.joblib" in problems[0] and "corrupt or truncated" in problems[0]
    )
    bank = ModelBank.from_directory(good_dir, strict=False)
    assert bank.campaign_ids == ["a"]
    assert "b.joblib" in bank.skipped[0]


def test_garbage_bytes_are_a_load_error(good_dir: Path) -> None:
    (good_dir / "a.joblib").write_bytes(b"\x00not a pickle at all")
    assert "a.joblib" in problems_of(good_dir)[0]


def test_campaign_without_model_and_model_without_campaign(good_dir: Path) -> None:
    catalog = json.loads((good_dir / "campaigns.json").read_text())
    catalog.append({"id": "ghost", "landing_page": "https://x/{click_id}", "payout": 1})
    (good_dir / "campaigns.json").write_text(json.dumps(catalog))
    joblib.dump(fitted_pipeline(2), good_dir / "orphan.joblib")
    problems = problems_of(good_dir)
    assert any("'ghost' has no model file" in p for p in problems)
    assert any("orphan.joblib" in p and "no campaign" in p for p in problems)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (LogisticRegression(), "not fitted"),
        (LinearRegression().fit(np.eye(3), [0.0, 1.0, 2.0]), "not a classifier"),
        ("just a string", "not a classifier"),
    ],
)
def test_invalid_model_objects_are_named(good_dir: Path, model: object, reason: str) -> None:
    joblib.dump(model, good_dir / "a.joblib")
    problems = problems_of(good_dir)
    assert "a.joblib" in problems[0] and reason in problems[0]


def test_non_binary_classifier_is_rejected(good_dir: Path) -> None:
    frame = profile_frame(random_profiles(np.random.default_rng(0), 90))
    labels = np.arange(90) % 3
    joblib.dump(LogisticRegression().fit(frame[["local_hour"]], labels), good_dir / "a.joblib")
    assert "found 3 classes" in problems_of(good_dir)[0]


def test_model_expecting_columns_a_profile_lacks(good_dir: Path) -> None:
    frame = profile_frame(random_profiles(np.random.default_rng(0), 50)).assign(age=30)
    labels = np.arange(50) % 2
    joblib.dump(
        LogisticRegression().fit(frame[["age", "local_hour"]], labels), good_dir / "a.joblib"
    )
    problem = problems_of(good_dir)[0]
    assert "['age']" in problem and "a.joblib" in problem


def test_model_fitted_without_column_names(good_dir: Path) -> None:
    joblib.dump(LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]), good_dir / "a.joblib")
    assert "without column names" in problems_of(good_dir)[0]


def test_bad_catalog_entries_name_the_entry_and_field(good_dir: Path) -> None:
    (good_dir / "campaigns.json").write_text(
        json.dumps([{"id": "a", "landing_page": "x", "payout": "lots"}, {"id": "b", "payout": 1}])
    )
    problems = problems_of(good_dir)
    assert any("entry 0" in p and "payout" in p for p in problems)
    assert any("entry 1" in p and "landing_page" in p for p in problems)


def test_unreadable_catalog_and_missing_directory(tmp_path: Path, good_dir: Path) -> None:
    (good_dir / "campaigns.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        ModelBank.from_directory(good_dir)
    with pytest.raises(ModelLoadError, match="not a model directory"):
        ModelBank.from_directory(tmp_path / "nowhere")


def test_manifest_digest_mismatch_is_detected(good_dir: Path) -> None:
    (good_dir / "manifest.json").write_text(
        json.dumps({"version": "v7", "files": {"a.joblib": "0" * 64}})
    )
    assert "sha256 differs" in problems_of(good_dir)[0]


def test_skops_files_load_with_only_trusted_types(good_dir: Path) -> None:
    model = fitted_pipeline(5)
    (good_dir / "b.joblib").unlink()
    sio.dump(model, good_dir / "b.skops")
    bank = ModelBank.from_directory(good_dir)
    profiles = random_profiles(np.random.default_rng(9), 20)
    np.testing.assert_allclose(
        bank.predict_proba(profiles)[:, 1],
        sklearn_proba(model, bank.canonical(profiles)),
        atol=1e-12,
    )


def test_version_comes_from_the_manifest(good_dir: Path) -> None:
    (good_dir / "manifest.json").write_text(json.dumps({"version": "v42"}))
    assert ModelBank.from_directory(good_dir).version == "v42"


def test_plain_pickle_joblib_files_load_and_truncation_is_still_caught(good_dir: Path) -> None:
    import pickle

    model = fitted_pipeline(7)
    data = pickle.dumps(model, protocol=5)
    (good_dir / "a.joblib").write_bytes(data)
    bank = ModelBank.from_directory(good_dir)
    profiles = random_profiles(np.random.default_rng(1), 10)
    np.testing.assert_allclose(
        bank.predict_proba(profiles)[:, 0],
        sklearn_proba(model, bank.canonical(profiles)),
        atol=1e-12,
    )
    (good_dir / "a.joblib").write_bytes(data[:-40])
    assert "a.joblib" in problems_of(good_dir)[0]
