"""Offers over HTTP: decide, click, score and the event log name the landing page.

The real server on 127.0.0.1 with real fitted sklearn pipelines and a
catalogue whose campaigns run several pages, some targeted, one inactive.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from clickrouter.events import ClickEvent
from clickrouter.modelstore.store import ModelStore
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import publish, read_events, settings
from serving.http.pages_support import admits, paged_catalog, url, write_paged_directory

FR_ANDROID = {"country": "FR", "os": "android", "ts": 1780000000}
DE_ANDROID = {"country": "DE", "os": "android", "ts": 1780000000}


@pytest.fixture(scope="module")
def paged_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_paged_directory(tmp_path_factory.mktemp("paged") / "models")


@pytest.fixture
def greedy(paged_models: Path, events_dir: Path) -> Iterator[PredictorServer]:
    with PredictorServer(settings(policy="greedy"), paged_models, events_dir) as running:
        yield running


@pytest.fixture
def uniform(paged_models: Path, events_dir: Path) -> Iterator[PredictorServer]:
    """Epsilon-greedy with epsilon 1: every eligible offer alike."""
    config = settings(policy="epsilon-greedy", epsilon=1.0)
    with PredictorServer(config, paged_models, events_dir) as running:
        yield running


def clicks(events_dir: Path) -> list[ClickEvent]:
    return [e for e in read_events(events_dir) if isinstance(e, ClickEvent)]


def test_decide_names_the_campaign_its_page_and_the_pages_url(
    greedy: PredictorServer, paged_models: Path, events_dir: Path
):
    body = httpx.post(greedy.url + "/v1/decide", json={**FR_ANDROID, "click_id": "k1"}).json()
    with ModelBank.from_directory(paged_models) as bank:
        expected = bank.decide(FR_ANDROID, top=1)
    assert (expected.campaign_id, expected.landing_page_id) == ("a", "fr")
    assert body["campaign_id"] == "a" and body["landing_page_id"] == "fr"
    assert body["landing_page"] == "https://a.example/fr?k=k1"
    assert body["probability"] == pytest.approx(expected.probability, rel=1e-12)
    (event,) = clicks(events_dir)
    assert (event.campaign_id, event.landing_page_id) == ("a", "fr")
    assert event.landing_page == "https://a.example/fr?k=k1" and event.propensity == 1.0


def test_a_request_a_page_excludes_gets_another_page_of_the_campaign(greedy: PredictorServer):
    # page fr is for FR only: a German request gets a's next eligible page, never form
    body = httpx.post(greedy.url + "/v1/decide?top=10", json=DE_ANDROID).json()
    assert (body["campaign_id"], body["landing_page_id"]) == ("a", "lite")
    offers = {(r["campaign_id"], r["landing_page_id"]) for r in body["ranking"]}
    assert offers == {("a", "lite"), ("b", "default"), ("c", "y")}
    assert body["n_eligible"] == 3


def test_click_redirects_to_the_chosen_page_and_logs_it(greedy: PredictorServer, events_dir: Path):
    query = {"country": "FR", "os": "android", "click_id": "abc\r\nSet-Cookie: x"}
    answer = httpx.get(greedy.url + "/v1/click", params=query, follow_redirects=False)
    assert answer.status_code == 302
    # the page's URL, the click id encoded by the catalogue's one helper
    assert answer.headers["location"] == "https://a.example/fr?k=abc%0D%0ASet-Cookie%3A%20x"
    assert "set-cookie" not in answer.headers
    (event,) = clicks(events_dir)
    assert (event.campaign_id, event.landing_page_id) == ("a", "fr")
    assert event.landing_page == answer.headers["location"]


def random_request(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "country": str(rng.choice(["FR", "DE", "ES"])),
        "os": str(rng.choice(["android", "ios", "windows"])),
        "ts": 1780000000,
    }


def test_exploration_covers_pages_within_targeting_with_the_offers_propensity(
    uniform: PredictorServer, paged_models: Path, events_dir: Path
):
    rng = np.random.default_rng(3)
    requests = [random_request(rng) for _ in range(300)]
    with httpx.Client(base_url=uniform.url) as client:
        answers = [client.post("/v1/decide", json=r).json() for r in requests]
    shown: Counter[tuple[str, str]] = Counter()
    for raw, body in zip(requests, answers, strict=True):
        offer = (body["campaign_id"], body["landing_page_id"])
        shown[offer] += 1
        assert admits(paged_models, *offer, raw), (offer, raw)  # targeting and activity
        assert body["landing_page"] == url(*offer).replace("{click_id}", body["click_id"])
        assert body["propensity"] == pytest.approx(1 / body["n_eligible"])  # one offer's share
    assert ("a", "form") not in shown  # inactive
    assert {("a", "fr"), ("a", "lite"), ("c", "x"), ("c", "y"), ("b", "default")} <= set(shown)
    logged = {e.click_id: e for e in clicks(events_dir)}
    for body in answers:
        event = logged[body["click_id"]]
        assert (event.campaign_id, event.landing_page_id) == (
            body["campaign_id"],
            body["landing_page_id"],
        )
        assert event.propensity == body["propensity"]


def test_score_and_the_v2_model_name_every_offer(greedy: PredictorServer, paged_models: Path):
    every = httpx.post(greedy.url + "/v1/score", json=FR_ANDROID).json()["probabilities"]
    with ModelBank.from_directory(paged_models) as bank:
        expected = bank.predict_proba([FR_ANDROID])[0]
    names = ["a/fr", "a/form", "a/lite", "b", "c/x", "c/y"]
    assert list(every) == names
    np.testing.assert_allclose(list(every.values()), expected, rtol=1e-12)
    top = httpx.post(greedy.url + "/v1/score?top=2", json=FR_ANDROID).json()["probabilities"]
    assert list(top) == [names[i] for i in np.argsort(-expected, kind="stable")[:2]]
    metadata = httpx.get(greedy.url + "/v2/models/clickrouter").json()
    assert metadata["outputs"][0]["shape"] == [-1, 6]
    assert metadata["parameters"]["offers"] == names
    assert httpx.get(greedy.url + "/v1/models").json()["n_offers"] == 6


def bad_catalog(problem: str) -> tuple[list[dict[str, Any]], str]:
    """The catalogue with one problem in campaign a, and the words its error must hold."""
    catalog = paged_catalog()
    pages = catalog[0]["landing_pages"]
    if problem == "duplicate":
        pages[2]["id"] = "fr"
        return catalog, "duplicate landing page 'fr' of campaign 'a'"
    if problem == "inactive":
        for page in pages:
            page["active"] = False
        return catalog, "campaign 'a' has no active landing page"
    pages[2]["url"] = "javascript:alert(1)"
    return catalog, "landing page 'lite' of campaign 'a'"


@pytest.mark.parametrize("problem", ["duplicate", "inactive", "scheme"])
def test_a_bad_catalogue_is_refused_naming_the_campaign_and_page(
    tmp_path: Path, paged_models: Path, events_dir: Path, problem: str
):
    store = ModelStore(tmp_path / "store")
    publish(store, paged_models, "v1")
    bad = tmp_path / "bad"
    shutil.copytree(paged_models, bad)
    catalog, words = bad_catalog(problem)
    (bad / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    publish(store, bad, "v2")
    with PredictorServer(settings(), store.root, events_dir) as running:
        models = httpx.get(running.url + "/v1/models").json()
        assert models["store_version"] == "v1"  # the last version that loads serves
        (skipped,) = models["skipped_versions"]
        assert skipped["version"] == "v2" and words in skipped["reason"]


def test_offer_answers_decode_strictly_as_their_documented_types(greedy: PredictorServer):
    from clickrouter.serving.engine.decision import Outcome
    from clickrouter.serving.http.schema import ModelMetadata, Models, Scores

    with httpx.Client(base_url=greedy.url) as client:
        answers = [
            (client.post("/v1/decide?top=5", json=FR_ANDROID), Outcome),
            (client.post("/v1/score", json=FR_ANDROID), Scores),
            (client.get("/v1/models"), Models),
            (client.get("/v2/models/clickrouter"), ModelMetadata),
        ]
    for response, kind in answers:
        assert response.status_code == 200, response.text
        msgspec.json.decode(response.content, type=kind, strict=True)
