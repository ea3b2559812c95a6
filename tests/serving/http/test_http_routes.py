"""Every /v1 route, errors and metrics against the real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from clickrouter.events import ClickEvent, SaleEvent
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import N_CAMPAIGNS, PROFILE, read_events, settings
from serving.http.postback_support import (
    GLOBAL_SECRET,
    POSTBACK,
    default_secrets,
    signed_get,
    signed_headers,
    signed_settings,
)


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    return default_secrets(tmp_path / "postback-secrets")


@pytest.fixture
def signed_server(
    sample_models: Path, events_dir: Path, secrets_file: Path
) -> Iterator[PredictorServer]:
    """The predictor requiring authenticated postbacks."""
    with PredictorServer(signed_settings(secrets_file), sample_models, events_dir) as running:
        yield running


def test_decide_answers_the_banks_best_campaign(server: PredictorServer, sample_models: Path):
    answer = httpx.post(server.url + "/v1/decide", json={**PROFILE, "click_id": "k1"})
    assert answer.status_code == 200
    body = answer.json()
    with ModelBank.from_directory(sample_models) as bank:
        expected = bank.decide(PROFILE, top=1)
        landing_page = bank.campaign(expected.campaign_id).landing_page_for("k1")
    assert body["campaign_id"] == expected.campaign_id
    assert body["probability"] == pytest.approx(expected.probability, rel=1e-12)
    assert body["expected_value"] == pytest.approx(expected.expected_value, rel=1e-12)
    assert body["landing_page"] == landing_page
    assert body["propensity"] == 1.0 and body["click_id"] == "k1"
    assert body["model_version"] == expected.model_version
    assert "ranking" not in body


def test_decide_with_top_returns_the_ranking(server: PredictorServer):
    body = httpx.post(server.url + "/v1/decide?top=5", json=PROFILE).json()
    ranking = body["ranking"]
    assert len(ranking) == min(5, body["n_eligible"])
    values = [r["expected_value"] for r in ranking]
    assert values == sorted(values, reverse=True)
    assert ranking[0]["campaign_id"] == body["campaign_id"]
    assert len(body["click_id"]) == 56  # issued when the request has none


def test_click_redirects_to_the_landing_page(server: PredictorServer):
    query = {"country": "FR", "os": "android", "click_id": "abc\r\nSet-Cookie: x"}
    answer = httpx.get(server.url + "/v1/click", params=query, follow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith("https://shop.example/c")
    assert location.endswith("?click=abc%0D%0ASet-Cookie%3A%20x")  # encoded, not injected
    assert "set-cookie" not in answer.headers


def test_score_gives_every_campaign_or_the_top(server: PredictorServer, sample_models: Path):
    every = httpx.post(server.url + "/v1/score", json=PROFILE).json()["probabilities"]
    with ModelBank.from_directory(sample_models) as bank:
        expected = dict(zip(bank.campaign_ids, bank.predict_proba([PROFILE])[0], strict=True))
    assert every.keys() == expected.keys() and len(every) == N_CAMPAIGNS
    assert all(every[c] == pytest.approx(p, rel=1e-12) for c, p in expected.items())
    top = httpx.post(server.url + "/v1/score?top=3", json=PROFILE).json()["probabilities"]
    assert list(top) == sorted(expected, key=expected.__getitem__, reverse=True)[:3]


def test_postback_get_and_post_are_logged_as_sales(
    signed_server: PredictorServer, events_dir: Path
):
    server = signed_server
    decided = httpx.post(server.url + "/v1/decide", json=PROFILE).json()
    click_id = decided["click_id"]
    got = signed_get(server.url, {"click_id": click_id, "revenue": "4.5"})
    assert got.status_code == 200 and got.json()["click_id"] == click_id
    body = msgspec.json.encode(
        {"click_id": click_id, "revenue": 2, "campaign_id": decided["campaign_id"]}
    )
    posted = httpx.post(
        server.url + POSTBACK,
        content=body,
        headers={
            "content-type": "application/json",
            **signed_headers(GLOBAL_SECRET, "POST", {}, body),
        },
    )
    assert posted.status_code == 200
    server.stop()  # drains the sink
    events = read_events(events_dir)
    clicks = [e for e in events if isinstance(e, ClickEvent)]
    sales = [e for e in events if isinstance(e, SaleEvent)]
    assert [c.click_id for c in clicks] == [click_id]
    assert clicks[0].campaign_id == decided["campaign_id"] and clicks[0].propensity == 1.0
    assert clicks[0].profile.country == "FR" and clicks[0].raw == PROFILE
    assert [(s.click_id, s.revenue) for s in sales] == [(click_id, 4.5), (click_id, 2.0)]


@pytest.mark.parametrize(
    ("query", "status", "needle"),
    [
        ({"revenue": "1"}, 400, "click_id"),
        ({"click_id": "x"}, 400, "revenue"),
        ({"click_id": "x", "revenue": "-1"}, 400, "revenue"),
        ({"click_id": "x", "revenue": "nan"}, 400, "revenue"),
        ({"click_id": "x", "revenue": "1", "campaign_id": "nope"}, 404, "nope"),
        ({"click_id": "x", "revenue": "1"}, 403, "click_id"),
        ({"click_id": "ISSUED", "revenue": "1", "ts": "yesterday"}, 400, "ts"),
    ],
)
def test_bad_postbacks_are_refused(signed_server: PredictorServer, query, status, needle):
    if query.get("click_id") == "ISSUED":
        decided = httpx.post(signed_server.url + "/v1/decide", json=PROFILE).json()
        query = {**query, "click_id": decided["click_id"]}
    answer = signed_get(signed_server.url, query)
    assert answer.status_code == status
    assert needle in answer.json()["error"]


def test_postbacks_are_refused_until_a_secret_is_configured(server: PredictorServer):
    answer = httpx.get(server.url + POSTBACK, params={"click_id": "x", "revenue": "1"})
    assert answer.status_code == 503
    assert "CLICKROUTER_POSTBACK_SECRETS_FILE" in answer.json()["error"]


def test_campaigns_and_models(server: PredictorServer):
    campaigns = httpx.get(server.url + "/v1/campaigns").json()
    assert len(campaigns["campaigns"]) == N_CAMPAIGNS
    assert {"id", "landing_page", "payout", "active"} <= campaigns["campaigns"][0].keys()
    models = httpx.get(server.url + "/v1/models").json()
    assert models["version"] == campaigns["model_version"] == "sample"
    assert models["n_campaigns"] == N_CAMPAIGNS and models["n_compiled"] == N_CAMPAIGNS
    assert models["loaded_at"].startswith("20") and models["policy"] == "greedy"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("POST", "/v1/decide", {"content": b"{not json"}, 400, "malformed JSON"),
        ("POST", "/v1/decide", {"content": b""}, 400, "empty body"),
        ("POST", "/v1/decide", {"json": [1, 2]}, 400, "JSON object"),
        ("POST", "/v1/decide", {"json": {"ts": "garbage"}}, 400, "'ts'"),
        ("POST", "/v1/decide", {"json": {"ts": 10**400}}, 400, "ts"),
        ("POST", "/v1/decide", {"json": {"click_id": {"a": 1}}}, 400, "click_id"),
        ("POST", "/v1/decide?top=0", {"json": PROFILE}, 400, "top"),
        ("POST", "/v1/decide?top=x", {"json": PROFILE}, 400, "top"),
        ("POST", "/v1/decide", {"content": b"x" * 70_000}, 413, "exceeds"),
        ("GET", "/v1/decide", {}, 405, "POST"),
        ("GET", "/nowhere", {}, 404, "/nowhere"),
        ("GET", "/v2/models/other", {}, 404, "other"),
    ],
)
def test_bad_requests_get_json_errors(
    server: PredictorServer, method, path, kwargs, status, needle
):
    answer = httpx.request(method, server.url + path, **kwargs)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert needle in answer.json()["error"]


def test_head_is_refused_because_a_click_has_side_effects(server: PredictorServer):
    assert httpx.head(server.url + "/v1/click", params={"country": "FR"}).status_code == 405


def test_chunked_oversized_body_is_refused(server: PredictorServer):
    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    answer = httpx.post(server.url + "/v1/decide", content=chunks())
    assert answer.status_code == 413


def test_metrics_report_latency_decisions_model_and_lag(server: PredictorServer):
    for _ in range(3):
        httpx.post(server.url + "/v1/decide", json=PROFILE)
    text = httpx.get(server.url + "/metrics").text
    assert 'clickrouter_http_request_duration_seconds_count{route="/v1/decide"} 3.0' in text
    assert 'clickrouter_model_info{store_version="",version="sample"} 1.0' in text
    assert 'clickrouter_model_reloads_total{outcome="ok"} 1.0' in text
    assert "clickrouter_event_queue_lag" in text
    assert "clickrouter_events_dropped_total" in text
    decided = [line for line in text.splitlines() if line.startswith("clickrouter_decisions_total")]
    assert sum(float(line.split()[-1]) for line in decided) == 3.0


def test_openapi_document_lists_every_route(server: PredictorServer):
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/decide", "/v1/click", "/v1/score", "/v1/postback", "/v1/campaigns"} <= set(paths)
    assert {"/v2/models/{name}/infer", "/metrics", "/admin/reload"} <= set(paths)


def test_admin_reload_requires_the_token(server: PredictorServer):
    url = server.url + "/admin/reload"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = httpx.post(url, headers={"Authorization": "Bearer test-admin-token"})
    assert answer.status_code == 200 and answer.json()["version"] == "sample"


def test_admin_routes_are_off_without_a_token(sample_models: Path, events_dir: Path):
    with PredictorServer(settings(admin_token=None), sample_models, events_dir) as running:
        answer = httpx.post(running.url + "/admin/reload", headers={"Authorization": "Bearer x"})
        assert answer.status_code == 404 and "disabled" in answer.json()["error"]
