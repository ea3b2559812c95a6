"""Where producers (the predictor, the simulator) log events: one interface, two sinks.

:class:`~clickrouter.stream.eventlog.EventLogWriter` (local segment files) and
:class:`~clickrouter.stream.redis_stream.RedisStreamSink` (``XADD``) both
implement :class:`EventSink`; :func:`open_sink` picks one from a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from clickrouter.events import Event


class EventSink(Protocol):
    def write(self, event: Event) -> None: ...

    def write_raw(self, lines: bytes) -> None: ...

    def flush(self, *, sync: bool = False) -> None: ...

    def close(self) -> None: ...


def open_sink(target: str | Path, writer_id: str) -> EventSink:
    """``redis://HOST:PORT/STREAM`` -> Redis sink; anything else is a log directory."""
    if str(target).startswith("redis://"):
        from clickrouter.stream.redis_stream import RedisStreamSink

        return RedisStreamSink.from_url(str(target))
    from clickrouter.stream.eventlog import EventLogWriter

    return EventLogWriter(target, writer_id)
