"""A predictor started on a store whose CURRENT does not load serves the newest
older version that does, says what it skipped and why, and moves to CURRENT as
soon as CURRENT names a version that loads."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clickrouter.modelstore.store import ModelStore
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import PROFILE, publish, settings

SKIPPED_METRIC = "clickrouter_model_versions_skipped_total"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def corrupt_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "c00003.joblib").write_bytes(b"not a pickle")
    return target


def without_catalog(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "campaigns.json").unlink()
    return target


def models(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "/v1/models")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def skipped_count(url: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(SKIPPED_METRIC + " "))


def decided_version(url: str) -> str:
    answer = httpx.post(url + "/v1/decide", json=PROFILE)
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["model_version"]
    return version


def test_a_corrupt_current_serves_the_previous_version_until_a_good_one_is_published(
    store: ModelStore,
    sample_models: Path,
    other_models: Path,
    events_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish(store, corrupt_model(sample_models, tmp_path / "corrupt"), "v2")
    cache = tmp_path / "cache"  # loads compile in a fork-server child, as `serve` does
    with PredictorServer(settings(), store.root, events_dir, cache_dir=cache) as server:
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("CURRENT names model version v2" in m and "serving v1" in m for m in said)
        served = models(server.url)
        assert served["store_version"] == "v1"
        assert served["rejected_version"] == "v2"
        [skipped] = served["skipped_versions"]
        assert skipped["version"] == "v2" and "c00003.joblib" in skipped["reason"]
        assert decided_version(server.url) == "v1"
        assert skipped_count(server.url) == 1.0

        publish(store, other_models, "v3")
        wait_for(lambda: models(server.url)["store_version"] == "v3")
        served = models(server.url)
        assert served["skipped_versions"] == [] and served["rejected_version"] is None
        assert decided_version(server.url) == "v3"


def test_versions_are_tried_newest_first_and_never_above_current(
    store: ModelStore, sample_models: Path, events_dir: Path, tmp_path: Path
) -> None:
    publish(store, corrupt_model(sample_models, tmp_path / "corrupt"), "v2")
    publish(store, without_catalog(sample_models, tmp_path / "no-catalog"), "v3")
    publish(store, sample_models, "v4")  # loads, but an operator rolled back from it
    store.set_current("v3")
    with PredictorServer(settings(), store.root, events_dir) as server:
        served = models(server.url)
        assert served["store_version"] == "v1"
        assert [s["version"] for s in served["skipped_versions"]] == ["v3", "v2"]
        assert "campaigns.json" in served["skipped_versions"][0]["reason"]
        assert "c00003.joblib" in served["skipped_versions"][1]["reason"]
        assert skipped_count(server.url) == 2.0
        store.set_current("v1")  # pointed back at the version in service: no fallback left
        wait_for(lambda: models(server.url)["skipped_versions"] == [])
        assert models(server.url)["store_version"] == "v1"


def test_no_loadable_version_stays_unready_until_one_is_published(
    sample_models: Path, other_models: Path, events_dir: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, corrupt_model(sample_models, tmp_path / "corrupt"), "v1")
    publish(store, without_catalog(sample_models, tmp_path / "no-catalog"), "v2")
    server = PredictorServer(settings(), store.root, events_dir).start(wait_ready=False)
    try:
        wait_for(lambda: skipped_count(server.url) == 2.0)
        assert not server.is_ready()
        refused = httpx.get(server.url + "/v1/models")
        assert refused.status_code == 503 and "error" in refused.json()
        publish(store, other_models, "v3")
        wait_for(server.is_ready)
        assert models(server.url)["store_version"] == "v3"
    finally:
        server.stop()
