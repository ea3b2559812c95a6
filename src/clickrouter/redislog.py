"""An event log in a Redis stream: its address, its entry format, and its writer.

A log is named ``redis://HOST[:PORT]/STREAM``. Each stream entry carries one
event as its JSON line (without the newline) in the field ``e``.
:class:`RedisStreamWriter` appends with ``XADD``; the consumer reads with
:class:`~clickrouter.stream.redis_stream.RedisStreamSource`.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from clickrouter.errors import InvalidInput
from clickrouter.events import Event, encode_event

FIELD = b"e"
_URL = re.compile(r"^redis://(?P<host>[^:/]+)(?::(?P<port>\d+))?/(?P<stream>[^/]+)$")


def parse_redis_url(url: str) -> tuple[str, int, str]:
    """``redis://HOST[:PORT]/STREAM`` -> (host, port, stream)."""
    match = _URL.match(url)
    if match is None:
        raise InvalidInput(f"--source: {url!r} is not redis://HOST[:PORT]/STREAM")
    return match["host"], int(match["port"] or 6379), match["stream"]


def connect(url: str) -> tuple[redis.Redis, str]:
    host, port, stream = parse_redis_url(url)
    return redis.Redis(host=host, port=port, socket_timeout=30), stream


class RedisStreamWriter:
    """Appends events to a Redis stream with ``XADD`` (an
    :class:`~clickrouter.eventlog.EventWriter`).

    Lines are buffered and sent in pipelined batches of ``batch_size``;
    ``flush`` sends what is buffered. ``maxlen`` caps the stream approximately.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        *,
        batch_size: int = 500,
        maxlen: int | None = None,
    ) -> None:
        self.client, self.stream = client, stream
        self.batch_size, self.maxlen = batch_size, maxlen
        self._buffer: list[bytes] = []

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStreamWriter:
        client, stream = connect(url)
        return cls(client, stream, **kwargs)

    def write(self, event: Event) -> None:
        self._buffer.append(encode_event(event).rstrip(b"\n"))
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def write_raw(self, lines: bytes) -> None:
        """Append already-encoded, newline-terminated lines (one entry each)."""
        self._buffer.extend(line for line in lines.split(b"\n") if line)
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def flush(self, *, sync: bool = False) -> None:
        """Send buffered lines; ``sync`` changes nothing here (Redis durability is
        the server's persistence setting)."""
        buffer, self._buffer = self._buffer, []
        for i in range(0, len(buffer), self.batch_size):
            pipe = self.client.pipeline(transaction=False)
            for line in buffer[i : i + self.batch_size]:
                pipe.xadd(self.stream, {FIELD: line}, maxlen=self.maxlen, approximate=True)
            pipe.execute()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> RedisStreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
