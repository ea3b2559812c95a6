"""An answered click is in the event log: through SIGKILL, and through a full disk
(503 and unready while full, nothing half-written left for a reader)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from clickrouter.serving.http import PredictorServer
from serving.http.durability_support import (
    BODY,
    ServeProcess,
    Tally,
    fill,
    logged_clicks,
    no_stray_servers,  # noqa: F401 - an autouse fixture
    read_response,
    run_clients,
    small_disk_fixture,  # noqa: F401 - a fixture
    wait_for,
)
from serving.http.http_support import settings


# each round starts a server process (~3-15 s here): the default suite kills twice
@pytest.mark.parametrize("kills", [2, pytest.param(5, marks=pytest.mark.slow)])
def test_sigkill_under_load_loses_no_answered_click(
    tmp_path: Path, sample_models: Path, kills: int
) -> None:
    events = tmp_path / "events"
    cache = str(tmp_path / "cache")
    tally = Tally()
    for _ in range(kills):
        served = ServeProcess(tmp_path, sample_models, str(events), "--cache-dir", cache)
        before = len(tally.clicks)
        stop, clients = run_clients(served.port, tally, n=3)
        wait_for(lambda: len(tally.clicks) >= before + 300, 30, "answers")  # noqa: B023
        served.kill()  # while the clients are sending
        stop.set()
        for client in clients:
            client.join(timeout=30)
    assert len(tally.clicks) >= 300 * kills and set(tally.statuses) == {200}
    logged = logged_clicks(events)
    missing = set(tally.clicks) - set(logged)
    assert not missing, f"{len(missing)} answered clicks missing from the log"
    assert len(logged) == len(set(logged))  # and none written twice


def decide_http10(port: int) -> tuple[int, bytes]:
    """One decision over HTTP/1.0: the ASGI path, not the inline one."""
    request = b"POST /v1/decide HTTP/1.0\r\nContent-Type: application/json\r\n"
    request += b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = read_response(sock, bytearray())
    assert answer is not None
    return answer


def test_full_disk_refuses_with_503_until_space_returns(
    small_disk: Path, sample_models: Path
) -> None:
    events = small_disk / "events"
    ballast = small_disk / "ballast"
    tally = Tally()
    with PredictorServer(settings(), sample_models, events) as server:
        assert server.port is not None
        fill(ballast, leave=24 * 1024)
        stop, clients = run_clients(server.port, tally, n=2)
        wait_for(lambda: tally.statuses.get(503, 0) >= 50, 30, "refusals")
        stop.set()
        for client in clients:
            client.join(timeout=30)
        assert tally.statuses.get(200, 0) > 0  # answered while there was room
        ready = httpx.get(server.url + "/v2/health/ready")
        assert ready.status_code == 503 and "No space left" in ready.json()["error"]
        refused = httpx.post(server.url + "/v1/decide", json={"country": "FR"})
        assert refused.status_code == 503 and "No space left" in refused.json()["error"]
        status, body = decide_http10(server.port)
        assert status == 503 and b"No space left" in body
        metrics = httpx.get(server.url + "/metrics").text
        assert "clickrouter_events_refused_total" in metrics

        ballast.unlink()  # space returns
        wait_for(lambda: httpx.get(server.url + "/v2/health/ready").status_code == 200, 10, "ready")
        for _ in range(20):
            answer = httpx.post(server.url + "/v1/decide", json={"country": "FR"})
            assert answer.status_code == 200
            tally.add(200, answer.content)
        status, body = decide_http10(server.port)
        assert status == 200
        tally.add(200, body)
    assert set(tally.statuses) == {200, 503}
    assert all(b"could not be persisted" in body for body in tally.refusals)
    for segment in events.glob("*.jsonl"):  # nothing half-written: every line is whole
        data = segment.read_bytes()
        assert not data or data.endswith(b"\n"), segment
    logged = logged_clicks(events)  # decodes every line
    assert sorted(logged) == sorted(tally.clicks)  # answered = logged; refused: not logged
