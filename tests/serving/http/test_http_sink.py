"""The queued event recorder: nothing lost on close, failures counted, never blocking emit."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from clickrouter.events import Event, SaleEvent, decode_event
from clickrouter.serving.engine.durability import (
    DurableRecorder,
    EventLogBackend,
    EventsNotPersisted,
    MemoryBackend,
    QueuedRecorder,
)
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import PROFILE, read_events, settings


def sale(i: int) -> SaleEvent:
    return SaleEvent(id=f"e{i}", click_id=f"c{i}", ts=1.0 + i, revenue=float(i))


def test_close_drains_every_event_in_order(tmp_path: Path):
    sink = QueuedRecorder(EventLogBackend(tmp_path, "predictor-test"))
    for i in range(20_000):
        sink.emit(sale(i))
    sink.close()
    assert [e.id for e in read_events(tmp_path)] == [f"e{i}" for i in range(20_000)]
    assert sink.written == 20_000 and sink.lag() == 0


class GateBackend(MemoryBackend):
    """Blocks writing until released: emit must still return at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def write_batch(self, events: list[Event]) -> None:
        self.gate.wait()
        super().write_batch(events)


def test_emit_does_not_wait_for_the_backend_and_lag_counts_the_backlog():
    backend = GateBackend()
    sink = QueuedRecorder(backend)
    for i in range(100):
        sink.emit(sale(i))  # would hang here if emit waited for the backend
    assert sink.lag() == 100
    backend.gate.set()
    sink.close()
    assert len(backend.events) == 100 and sink.lag() == 0


class FlakyBackend(MemoryBackend):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_batch(self, events: list[Event]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        super().write_batch(events)


def test_async_retries_a_failed_write_until_it_goes_through(caplog):
    sink = QueuedRecorder(FlakyBackend(failures=3))
    sink.emit(sale(1))
    sink.close()
    assert sink.written == 1 and sink.dropped == 0 and sink.errors == 3
    assert "disk full" in caplog.text


def test_async_queue_is_bounded_and_refuses_with_503_when_full():
    backend = GateBackend()
    sink = QueuedRecorder(backend, max_queue=10)
    for i in range(10):
        sink.emit(sale(i))
    with pytest.raises(EventsNotPersisted, match="event queue full") as refused:
        sink.emit(sale(10))
    assert refused.value.status == 503 and sink.refused == 1
    assert sink.problem() is not None and "queue full" in str(sink.problem())
    backend.gate.set()
    sink.close()
    assert [e.id for e in backend.events] == [f"e{i}" for i in range(10)]


def test_async_close_gives_up_on_a_dead_backend_and_counts_the_loss():
    sink = QueuedRecorder(FlakyBackend(failures=10**9), close_timeout=0.2)
    sink.emit(sale(1))
    sink.close()
    assert sink.written == 0 and sink.dropped == 1


def test_a_failed_commit_refuses_and_leaves_nothing_pending():
    backend = FlakyBackend(failures=1)
    sink = DurableRecorder(backend)
    sink.emit(sale(1))
    with pytest.raises(EventsNotPersisted) as refused:
        sink.commit()
    assert refused.value.status == 503 and sink.refused == 1 and sink.lag() == 0
    sink.emit(sale(2))
    sink.commit()
    sink.close()
    assert [e.id for e in backend.events] == ["e2"]  # the refused event is not logged later


@pytest.fixture
def redis_url(tmp_path: Path):
    """A real redis-server on a free loopback port, stopped after the test."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make services)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen([*command, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/clicks"
    client.close()
    process.terminate()
    process.wait(timeout=10)


def test_served_decisions_go_to_a_redis_stream(redis_url: str, sample_models: Path):
    served = PredictorServer(settings(), sample_models, redis_url)
    with served as server, httpx.Client(base_url=server.url) as client:
        ids = [client.post("/v1/decide", json=PROFILE).json()["click_id"] for _ in range(30)]
    entries = redis.Redis(port=int(redis_url.split(":")[2].split("/")[0])).xrange("clicks")
    logged = [decode_event(fields[b"e"]) for _, fields in entries]
    assert [e.click_id for e in logged] == ids


def test_event_log_backend_writes_exactly_the_encoded_event_lines(tmp_path: Path):
    from clickrouter.events import CanonicalProfile, ClickEvent, encode_event

    profile = CanonicalProfile("FR", "d", "android", "chrome", "p", 3, 4)
    events: list[Event] = [
        ClickEvent("e1", "k1", 1.5, profile, "c1", "https://x/?k=k1", 0.25, "v1", raw={"a": [1]}),
        sale(2),
        ClickEvent("e3", "k3", 2.0, profile, "c2", "https://x/?k=k3", 1.0, "v1"),
    ]
    backend = EventLogBackend(tmp_path, "predictor-lines")
    backend.write_batch(events)
    backend.close()
    (segment,) = tmp_path.glob("*.jsonl")
    assert segment.read_bytes() == b"".join(encode_event(e) for e in events)
