"""Postback authentication and time bounds, attacked over real HTTP on 127.0.0.1.

Every refused postback is answered 4xx/503 with a JSON error, counted in
``/metrics`` under its reason, and never written to the event log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from clickrouter.datastore import DataManager
from clickrouter.errors import InvalidInput
from clickrouter.events import ClickEvent, SaleEvent
from clickrouter.serving.engine.clickids import ClickIds
from clickrouter.serving.engine.refusal import PostbackRefused
from clickrouter.serving.http import PredictorServer
from clickrouter.serving.http.postback_auth import SecretsFile, signed_query
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from serving.http.http_support import PROFILE, read_events, settings
from serving.http.postback_support import (
    ADVERTISER,
    ADVERTISER_SECRET,
    GLOBAL_SECRET,
    POSTBACK,
    default_secrets,
    refused_counts,
    signed_get,
    signed_headers,
    signed_settings,
    token_get,
    write_secrets,
)

YEAR_9999 = "9999-12-31T23:59:59Z"


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


def issued_click(url: str) -> str:
    answer = httpx.post(url + "/v1/decide", json=PROFILE)
    assert answer.status_code == 200
    return str(answer.json()["click_id"])


def sales_logged(server: PredictorServer, events_dir: Path) -> list[SaleEvent]:
    server.stop()  # drains the sink
    return [e for e in read_events(events_dir) if isinstance(e, SaleEvent)]


def test_forged_unsigned_replayed_and_out_of_time_postbacks_never_reach_the_log(
    signed_server: PredictorServer, events_dir: Path
) -> None:
    url = signed_server.url
    click_id = issued_click(url)
    sale = {"click_id": click_id, "revenue": "9.5"}
    now = time.time()
    replay = signed_headers(GLOBAL_SECRET, "GET", sale)
    assert httpx.get(url + POSTBACK, params=sale, headers=replay).status_code == 200
    attempts = {
        "unsigned": httpx.get(url + POSTBACK, params=sale),
        "bad_token": token_get(url, sale, "not-the-secret-0123456789"),
        "bad_signature": signed_get(url, sale, "not-the-secret-0123456789"),
        "replayed": httpx.get(url + POSTBACK, params=sale, headers=replay),
        "signature_expired": signed_get(url, sale, at=now - 3600),
        "signature_future": signed_get(url, sale, at=now + 3600),
        "ts_future": signed_get(url, {**sale, "ts": YEAR_9999}),
        "ts_expired": signed_get(url, {**sale, "ts": str(int(now) - 86400)}),
        "ts_before_click": signed_get(url, {**sale, "ts": str(int(now) - 120)}),
        "click_id_not_issued": signed_get(url, {**sale, "click_id": "f" * 56}),
    }
    # a valid signature over other values than those sent: tampering is a bad signature
    tampered = signed_headers(GLOBAL_SECRET, "GET", sale)
    answer = httpx.get(url + POSTBACK, params={**sale, "revenue": "9000"}, headers=tampered)
    assert answer.status_code == 403 and "signature" in answer.json()["error"]
    expected = {"unsigned": 401, "signature_expired": 401, "signature_future": 401}
    expected |= {"ts_future": 400, "ts_expired": 400, "ts_before_click": 409}
    for reason, answer in attempts.items():
        assert answer.status_code == expected.get(reason, 403), (reason, answer.text)
        assert isinstance(answer.json()["error"], str)
    counts = refused_counts(url)
    expected_counts = {**dict.fromkeys(attempts, 1.0), "bad_signature": 2.0}  # + tampered
    assert {reason: counts.get(reason) for reason in attempts} == expected_counts
    assert [(s.click_id, s.revenue) for s in sales_logged(signed_server, events_dir)] == [
        (click_id, 9.5)
    ]


def test_both_conventions_are_accepted_with_global_and_advertiser_secrets(
    signed_server: PredictorServer, events_dir: Path
) -> None:
    url = signed_server.url
    clicks = [issued_click(url) for _ in range(5)]
    answers = [
        token_get(url, {"click_id": clicks[0], "revenue": "1"}),
        signed_get(url, {"click_id": clicks[1], "revenue": "2", "ts": str(int(time.time()))}),
        token_get(url, {"click_id": clicks[2], "revenue": "3", "advertiser": ADVERTISER},
                  ADVERTISER_SECRET),
        signed_get(url, {"click_id": clicks[3], "revenue": "4", "advertiser": ADVERTISER},
                   ADVERTISER_SECRET),
    ]  # fmt: skip
    body = msgspec.json.encode({"click_id": clicks[4], "revenue": 5})
    query = {"advertiser": ADVERTISER}
    answers.append(
        httpx.post(
            url + POSTBACK,
            params=query,
            content=body,
            headers=signed_headers(ADVERTISER_SECRET, "POST", query, body),
        )
    )
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    # an advertiser's secret is not valid without naming the advertiser, nor for another
    assert (
        token_get(url, {"click_id": clicks[0], "revenue": "1"}, ADVERTISER_SECRET).status_code
        == 403
    )
    other = {"click_id": clicks[0], "revenue": "1", "advertiser": "other"}
    assert token_get(url, other, ADVERTISER_SECRET).status_code == 403
    sales = sales_logged(signed_server, events_dir)
    assert [(s.click_id, s.revenue) for s in sales] == list(
        zip(clicks, [1.0, 2, 3, 4, 5], strict=True)
    )
    assert sales[1].id.startswith("pb-") and not sales[0].id.startswith("pb-")


def test_secrets_rotate_without_a_restart(
    signed_server: PredictorServer, secrets_file: Path
) -> None:
    url = signed_server.url
    new = "acme-rotated-secret-9876543210"

    def accepted(secret: str) -> bool:
        sale = {"click_id": issued_click(url), "revenue": "1", "advertiser": ADVERTISER}
        status = signed_get(url, sale, secret).status_code
        assert status in (200, 403)
        return status == 200

    assert accepted(ADVERTISER_SECRET) and not accepted(new)
    write_secrets(secrets_file, [f"{ADVERTISER} {ADVERTISER_SECRET}", f"{ADVERTISER} {new}"])
    assert accepted(ADVERTISER_SECRET) and accepted(new)  # both during the rotation
    write_secrets(secrets_file, [f"{ADVERTISER} {new}"])
    assert accepted(new) and not accepted(ADVERTISER_SECRET)
    # a broken edit keeps the secrets in force instead of opening or closing the door
    write_secrets(secrets_file, ["this line is not a secret"])
    assert accepted(new) and not accepted(ADVERTISER_SECRET)


def test_a_callers_own_click_id_cannot_be_named_by_a_postback(
    signed_server: PredictorServer, events_dir: Path
) -> None:
    url = signed_server.url
    answer = httpx.post(url + "/v1/decide", json={**PROFILE, "click_id": "my-own-id"})
    assert answer.json()["click_id"] == "my-own-id"  # kept and echoed, as before
    refused = signed_get(url, {"click_id": "my-own-id", "revenue": "1"})
    assert refused.status_code == 403 and "click_id" in refused.json()["error"]
    issued = issued_click(url)
    forged = issued[:-1] + ("0" if issued[-1] != "0" else "1")  # one digit of the MAC
    assert signed_get(url, {"click_id": forged, "revenue": "1"}).status_code == 403
    assert refused_counts(url)["click_id_not_issued"] == 2
    assert sales_logged(signed_server, events_dir) == []


def test_auth_off_is_an_explicit_development_switch(sample_models: Path, events_dir: Path) -> None:
    with PredictorServer(settings(postback_auth="off"), sample_models, events_dir) as server:
        click_id = issued_click(server.url)
        sale = {"click_id": click_id, "revenue": "2"}
        assert httpx.get(server.url + POSTBACK, params=sale).status_code == 200
        # still bounded: an id it did not issue, a time in the future
        forged = httpx.get(server.url + POSTBACK, params={**sale, "click_id": "x"})
        future = httpx.get(server.url + POSTBACK, params={**sale, "ts": YEAR_9999})
        assert (forged.status_code, future.status_code) == (403, 400)
        sales = sales_logged(server, events_dir)
    assert [s.click_id for s in sales] == [click_id]
    clicks = [e for e in read_events(events_dir) if isinstance(e, ClickEvent)]
    assert [c.click_id for c in clicks] == [click_id]


def test_click_ids_verify_across_processes_and_key_rotation(tmp_path: Path) -> None:
    keys = tmp_path / "click-keys"
    keys.write_text("old-click-secret-0123456789\n")
    issuer, verifier = ClickIds(secret_file=keys), ClickIds(secret_file=keys, workers=2)
    now = time.time()
    old = issuer.issue(now)
    assert verifier.issued_at(old) == float(int(now))
    keys.write_text("new-click-secret-0123456789\nold-click-secret-0123456789\n")
    time.sleep(0.01)
    fresh = ClickIds(secret_file=keys).issue(now)
    assert verifier.issued_at(fresh) == verifier.issued_at(old) == float(int(now))
    keys.write_text("new-click-secret-0123456789\n")
    with pytest.raises(PostbackRefused, match="not a click id"):
        verifier.issued_at(old)
    # without a configured key, several workers cannot check each other's ids: said so
    with pytest.raises(PostbackRefused) as refused:
        ClickIds(workers=2).issued_at(old)
    assert refused.value.status == 503 and "click-secret-file" in refused.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("acme\n", "expected '<advertiser or *> <secret>'"),
        ("acme short\n", "shorter than 16"),
        ("a/b secret-0123456789abcdef\n", "advertiser must match"),
    ],
)
def test_bad_secrets_files_are_refused_at_start(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "secrets"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=re.escape(needle)) as refused:
        SecretsFile(path)
    assert refused.value.message.startswith("postback_secrets_file")
    with pytest.raises(InvalidInput, match="postback_secrets_file"):
        SecretsFile(tmp_path / "missing")


def test_serve_refuses_to_start_on_a_missing_secrets_file(
    tmp_path: Path, sample_models: Path
) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(sample_models)]
    command += ["--port", "0", "--postback-secrets-file", str(tmp_path / "missing")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "postback_secrets_file" in done.stderr and "Traceback" not in done.stderr


def test_a_replay_another_worker_accepted_is_dropped_by_the_consumer(
    sample_models: Path, tmp_path: Path, secrets_file: Path
) -> None:
    """Each worker remembers the signatures it accepted; one that reaches two workers
    becomes two sale events with one event id (from the signature), and the consumer
    keeps one of them."""
    config = signed_settings(secrets_file)
    logs = [tmp_path / "events-1", tmp_path / "events-2"]
    with (
        PredictorServer(config, sample_models, logs[0]) as one,
        PredictorServer(config, sample_models, logs[1]) as two,
    ):
        click_id = issued_click(one.url)
        query = signed_query(GLOBAL_SECRET, {"click_id": click_id, "revenue": "3"})
        answers = [httpx.get(s.url + POSTBACK, params=query) for s in (one, two, two)]
        assert [a.status_code for a in answers] == [200, 200, 403]
    # one directory, as the workers of one predictor share it (one writer name each)
    for segment in logs[1].iterdir():
        segment.rename(logs[0] / segment.name.replace("predictor-", "other-"))
    with DataManager(tmp_path / "data", writable=True, durable=False) as data:
        consumer = ConsumerManager(LocalLogSource(logs[0]), data, window_seconds=3600.0)
        stats = consumer.run_once(flush_all=True)
        consumer.close()
    assert stats["duplicates"] == 1 and stats["positives_labelled"] == 1
    assert stats["records_labelled"] == 1 and stats["late_sales"] == 0
