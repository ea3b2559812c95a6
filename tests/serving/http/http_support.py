"""Helpers and fixtures of the HTTP predictor tests: real model directories, a real server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickrouter.config import Settings
from clickrouter.events import ClickEvent, SaleEvent, decode_event
from clickrouter.modelstore.store import ModelStore
from clickrouter.serving.http import PredictorServer
from reference.sample_models import make_sample_directory

ADMIN_TOKEN = "test-admin-token"
N_CAMPAIGNS = 30


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory of N_CAMPAIGNS fitted sklearn pipelines (built once)."""
    return make_sample_directory(tmp_path_factory.mktemp("models") / "sample", N_CAMPAIGNS)


@pytest.fixture(scope="session")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model directory (another seed) for reload tests."""
    return make_sample_directory(tmp_path_factory.mktemp("models") / "other", 12, seed=7)


def publish(store: ModelStore, directory: Path, version: str) -> None:
    """Copy a model directory into the store as ``version`` and make it CURRENT."""
    with store.staging(version) as (_, staging):
        for file in directory.iterdir():
            shutil.copy2(file, staging / file.name)
    store.set_current(version)


@pytest.fixture
def store(tmp_path: Path, sample_models: Path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    publish(store, sample_models, "v1")
    return store


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"port": 0, "admin_token": ADMIN_TOKEN, "reload_poll_seconds": 0.1}
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    return tmp_path / "events"


@pytest.fixture
def server(sample_models: Path, events_dir: Path) -> Iterator[PredictorServer]:
    with PredictorServer(settings(), sample_models, events_dir) as running:
        yield running


def read_events(directory: Path) -> list[ClickEvent | SaleEvent]:
    events: list[ClickEvent | SaleEvent] = []
    for segment in sorted(directory.glob("*.jsonl")):
        events.extend(decode_event(line) for line in segment.read_bytes().splitlines())
    return events


PROFILE = {
    "country": "FR",
    "os": "android",
    "device": "device-1",
    "browser": "chrome mobile",
    "provider": "carrier-2",
    "ts": 1780000000,
}
