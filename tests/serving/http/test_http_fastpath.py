"""The inline protocol answers byte-for-byte what uvicorn's ASGI path answers.

Two real servers on 127.0.0.1 over the same models, one with the inline fast
path (the default) and one with uvicorn's own httptools protocol; raw sockets
send the same bytes to both. Also: pipelined requests keep their order, and
requests the fast path must not take (too large, chunked, HTTP/1.0,
``Expect: 100-continue``) still get uvicorn's answers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickrouter.serving.bank import ModelBank
from clickrouter.serving.engine.fused import FusedDecider, GeneralDecider
from clickrouter.serving.http import PredictorServer
from clickrouter.serving.http.uvicorn_protocols import InlineHttpToolsProtocol
from serving.http.http_support import PROFILE, settings


@pytest.fixture(scope="module")
def servers(
    sample_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PredictorServer, PredictorServer]]:
    inline = PredictorServer(settings(max_body_bytes=4096), sample_models, None)
    plain = PredictorServer(settings(max_body_bytes=4096), sample_models, None)
    plain.config = msgspec.structs.replace(plain.config, http="httptools-asgi")
    with inline, plain:
        yield inline, plain


def exchange(server: PredictorServer, data: bytes, responses: int = 1) -> list[bytes]:
    """Send raw bytes; read ``responses`` HTTP responses (content-length framed)."""
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        buffer, answers = b"", []
        while len(answers) < responses:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return answers
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = int(
                next(
                    (line.split(b":")[1] for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    b"0",
                )
            )  # fmt: skip
            while len(rest) < length:
                rest += sock.recv(65536)
            answers.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
        return answers


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: x", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


DECIDE = json.dumps({**PROFILE, "click_id": "fixed-id"}).encode()
CASES = {
    "decide": post("/v1/decide", DECIDE),
    "decide top 3": post("/v1/decide?top=3", DECIDE),
    "bad top": post("/v1/decide?top=0", DECIDE),
    "malformed JSON": post("/v1/decide", b"{nope"),
    "not an object": post("/v1/decide", b"[1, 2]"),
    "bad ts": post("/v1/decide", b'{"ts": "yesterday"}'),
    "empty body": post("/v1/decide", b""),
    "too large": post("/v1/decide", b" " * 5000),
    "chunked": post("/v1/decide", b"%x\r\n%s\r\n0\r\n\r\n" % (len(DECIDE), DECIDE),
                    "Transfer-Encoding: chunked"),
    "http 1.0": post("/v1/decide", DECIDE, version="1.0"),
    "expect 100": post("/v1/decide", DECIDE, "Expect: 100-continue"),
    "click": b"GET /v1/click?country=FR&click_id=c%201&ts=1780000000 HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong method": b"GET /v1/decide HTTP/1.1\r\nHost: x\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_inline_answer_equals_the_asgi_answer(
    servers: tuple[PredictorServer, PredictorServer], case: str
) -> None:
    inline, plain = servers
    responses = 2 if case == "expect 100" else 1  # "100 Continue", then the answer
    got = exchange(inline, CASES[case], responses)
    expected = exchange(plain, CASES[case], responses)
    assert len(got) == responses
    assert got == expected


def test_pipelined_requests_are_answered_in_order(
    servers: tuple[PredictorServer, PredictorServer],
) -> None:
    inline, _ = servers
    slow = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"  # an ASGI route between inline ones
    first = post("/v1/decide", json.dumps({**PROFILE, "click_id": "a1"}).encode())
    last = post("/v1/decide", json.dumps({**PROFILE, "click_id": "a2"}).encode())
    answers = exchange(inline, first + slow + last + first, 4)
    bodies = [json.loads(a.partition(b"\r\n\r\n")[2]) for a in answers]
    assert [b.get("click_id") for b in bodies] == ["a1", None, "a2", "a1"]
    assert "n_campaigns" in bodies[1]


class _CountingTransport:
    """The real transport, with its writes counted."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_inline_answers_to_one_read_leave_in_one_write(
    servers: tuple[PredictorServer, PredictorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    inline, _ = servers
    writes: list[bytes] = []
    made = InlineHttpToolsProtocol.connection_made

    def counting(self: InlineHttpToolsProtocol, transport: Any) -> None:
        made(self, _CountingTransport(transport, writes))

    monkeypatch.setattr(InlineHttpToolsProtocol, "connection_made", counting)
    batch = [post("/v1/decide", json.dumps({**PROFILE, "click_id": f"p{i}"}).encode())
             for i in range(6)]  # fmt: skip
    answers = exchange(inline, b"".join(batch), 6)
    assert [json.loads(a.partition(b"\r\n\r\n")[2])["click_id"] for a in answers] == [
        f"p{i}" for i in range(6)
    ]
    assert len(writes) == 1 and writes[0].count(b"HTTP/1.1 200 OK") == 6


def test_a_bad_request_after_pipelined_ones_is_answered_after_them(
    servers: tuple[PredictorServer, PredictorServer],
) -> None:
    inline, _ = servers
    good = post("/v1/decide", json.dumps({**PROFILE, "click_id": "g1"}).encode())
    answers = exchange(inline, good + good + b"NOT HTTP AT ALL\r\n\r\n", 3)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"200", b"400"]


def test_decide_is_served_by_the_fused_kernel_and_matches_the_bank(
    sample_models: Path,
) -> None:
    with ModelBank.from_directory(sample_models) as bank:
        from clickrouter.serving.engine.fused import decider_for

        decider = decider_for(bank)
        assert isinstance(decider, FusedDecider)
        general = GeneralDecider(bank)
        profiles = [PROFILE, {**PROFILE, "country": "US", "os": "ios"}, {}, {"country": "BR"}]
        for raw in profiles:
            canonical = bank.canonical([raw])[0]
            slots = bank.space.indices(canonical)
            for top in (1, 3, 1000):
                fused = decider.decide(canonical, slots, top)
                plain = general.decide(canonical, slots, top)
                assert fused.proba.tobytes() == plain.proba.tobytes()  # bit-identical scores
                assert (fused.mask == plain.mask).all()
                assert fused.columns == plain.columns
                assert fused.n_eligible == plain.n_eligible


def test_the_compared_servers_run_the_two_protocols(
    servers: tuple[PredictorServer, PredictorServer],
) -> None:
    from clickrouter.serving.http.uvicorn_protocols import (
        GuardedHttpToolsProtocol,
        InlineHttpToolsProtocol,
    )

    inline, plain = servers
    assert inline._server is not None and plain._server is not None
    assert inline._server.config.http_protocol_class is InlineHttpToolsProtocol
    # uvicorn's protocol within the server limits (every request through ASGI)
    assert plain._server.config.http_protocol_class is GuardedHttpToolsProtocol
    assert inline.app is not None
    assert {(b"POST", b"/v1/decide"), (b"GET", b"/v1/click")} == set(inline.app.inline_routes())


def test_request_series_counts_like_prometheus_client() -> None:
    from prometheus_client import generate_latest

    from clickrouter.serving.http.metrics import LATENCY_BUCKETS, ServiceMetrics

    ours, library = ServiceMetrics(), ServiceMetrics()
    samples = [0.0, 1e-5, *LATENCY_BUCKETS, 0.0003, 0.004, 7.5, 1e3]  # on and between bounds
    for seconds in samples:
        ours.request_series("/v1/decide", 200).observe(seconds)
        library.latency.labels("/v1/decide").observe(seconds)
        library.responses.labels("/v1/decide", "200").inc()

    def series(registry: Any) -> list[bytes]:  # without the creation timestamps
        return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]

    assert series(ours.registry) == series(library.registry)
    text = generate_latest(ours.registry)
    assert b'clickrouter_http_request_duration_seconds_count{route="/v1/decide"} 19.0' in text


def test_shutdown_answers_an_inline_request_still_arriving(
    sample_models: Path, tmp_path: Path
) -> None:
    import threading
    import time

    from serving.http.http_support import read_events

    server = PredictorServer(settings(), sample_models, tmp_path / "events").start()
    assert server.port is not None
    request = post("/v1/decide", json.dumps({**PROFILE, "click_id": "late"}).encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request[:-10])  # headers and most of the body
        time.sleep(0.2)
        stopping = threading.Thread(target=server.stop)
        stopping.start()  # graceful shutdown begins while the body is incomplete
        time.sleep(0.3)
        sock.sendall(request[-10:])
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after answering
            answer += chunk
        stopping.join()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head
    assert json.loads(body)["click_id"] == "late"
    assert [e.click_id for e in read_events(tmp_path / "events")] == ["late"]
