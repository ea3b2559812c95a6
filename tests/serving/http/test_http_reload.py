"""Hot reload from a model store under concurrent load: zero failed requests."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from clickrouter.modelstore.store import ModelStore
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import ADMIN_TOKEN, PROFILE, publish, settings


class Load:
    """Clients posting decisions in a loop until stopped; records every status and version."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/v1/decide", json=PROFILE)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    self.versions[answer.json()["model_version"]] += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def live_version(url: str) -> str:
    return httpx.get(url + "/v1/models").json()["version"]


def broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    next(target.glob("*.joblib")).write_bytes(b"not a pickle")
    return target


def test_reload_under_load_has_zero_failures(
    store: ModelStore, other_models: Path, events_dir: Path, tmp_path: Path
):
    with PredictorServer(settings(), store.root, events_dir) as server, Load(server.url) as load:
        wait_for(lambda: sum(load.versions.values()) > 20)
        publish(store, other_models, "v2")
        wait_for(lambda: load.versions["v2"] > 20)
        publish(store, broken_copy(other_models, tmp_path / "broken"), "v3")
        wait_for(lambda: httpx.get(server.url + "/v1/models").json()["rejected_version"] == "v3")
        before = load.versions["v2"]
        wait_for(lambda: load.versions["v2"] > before + 20)  # the old version keeps serving
        metrics = httpx.get(server.url + "/metrics").text
    assert load.errors == [] and set(load.statuses) == {200}
    assert load.versions["v1"] > 0 and load.versions["v2"] > 0 and load.versions["v3"] == 0
    assert 'clickrouter_model_reloads_total{outcome="ok"} 2.0' in metrics
    assert 'clickrouter_model_reloads_total{outcome="rejected"} 1.0' in metrics
    assert 'clickrouter_model_info{store_version="v2",version="v2"} 1.0' in metrics


def test_admin_reload_picks_up_current_and_reports_a_rejection(
    store: ModelStore, other_models: Path, events_dir: Path, tmp_path: Path
):
    slow_poll = settings(reload_poll_seconds=3600.0)  # only the admin route reloads
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    cache = tmp_path / "cache"  # versions compile in a child process, then are mapped
    with PredictorServer(slow_poll, store.root, events_dir, cache_dir=cache) as server:
        publish(store, other_models, "v2")
        assert live_version(server.url) == "v1"
        answer = httpx.post(server.url + "/admin/reload", headers=auth, timeout=60)
        assert answer.status_code == 200 and answer.json()["store_version"] == "v2"
        assert live_version(server.url) == "v2"
        assert len(list(cache.glob("*/table.npy"))) == 2  # v1 and v2, compiled once each
        publish(store, broken_copy(other_models, tmp_path / "broken"), "v3")
        refused = httpx.post(server.url + "/admin/reload", headers=auth, timeout=60)
        assert refused.status_code == 422 and "v3" in refused.json()["error"]
        assert live_version(server.url) == "v2"


def test_each_reload_leaves_the_cache_with_only_the_versions_it_keeps(
    store: ModelStore, other_models: Path, events_dir: Path, tmp_path: Path
):
    keep_one = settings(reload_poll_seconds=3600.0, bank_cache_keep=1)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    cache = tmp_path / "cache"
    with PredictorServer(keep_one, store.root, events_dir, cache_dir=cache) as server:
        for version in ("v2", "v3"):  # the same models under two names: two entries
            publish(store, other_models, version)
            answer = httpx.post(server.url + "/admin/reload", headers=auth, timeout=60)
            assert answer.status_code == 200 and answer.json()["store_version"] == version
            assert len(list(cache.glob("*/table.npy"))) == 1  # the live one only
            decision = httpx.post(server.url + "/v1/decide", json=PROFILE)
            assert decision.status_code == 200 and decision.json()["model_version"] == version
        assert any(p.name.startswith("memo-") for p in cache.iterdir())  # the memo stays
