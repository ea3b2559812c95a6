"""The queued event sink: nothing lost on close, failures counted, never blocking emit."""

from __future__ import annotations

import threading
from pathlib import Path

from clickrouter.events import Event, SaleEvent
from clickrouter.serving.http.sink import EventLogBackend, MemoryBackend, QueuedSink
from serving.http.http_support import read_events


def sale(i: int) -> SaleEvent:
    return SaleEvent(id=f"e{i}", click_id=f"c{i}", ts=1.0 + i, revenue=float(i))


def test_close_drains_every_event_in_order(tmp_path: Path):
    sink = QueuedSink(EventLogBackend(tmp_path, "predictor-test"))
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
    sink = QueuedSink(backend)
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


def test_a_failed_write_is_retried_then_counted_as_dropped(caplog):
    retried = QueuedSink(FlakyBackend(failures=1))
    retried.emit(sale(1))
    retried.close()
    assert retried.written == 1 and retried.dropped == 0
    dropped = QueuedSink(FlakyBackend(failures=2))
    dropped.emit(sale(2))
    dropped.close()
    assert dropped.written == 0 and dropped.dropped == 1
    assert "disk full" in caplog.text
