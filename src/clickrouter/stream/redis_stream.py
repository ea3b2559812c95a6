"""Redis Streams: the consumer-group source the consumer reads an event log with.

The log's address and entry format (one event's JSON line in the field ``e``)
and its writer live in :mod:`clickrouter.redislog`.

The source reads with ``XREADGROUP``, lets the consumer persist what it read,
then ``XACK`` s it. Its committed position is the last entry id persisted.
On restart it first re-reads this consumer's own pending entries (delivered
before the crash, never acknowledged): those up to the committed id are
already in the dataset and are only acknowledged; later ones are processed.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import redis

from clickrouter.errors import InvalidInput
from clickrouter.redislog import FIELD, connect
from clickrouter.stream.source import Chunk, check_kind

DEFAULT_GROUP = "clickrouter"
DEFAULT_CONSUMER = "consumer-1"


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamSource:
    """Consumer ``consumer`` of group ``group`` on ``stream``."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str = DEFAULT_CONSUMER,
        count: int = 5000,
        block_ms: int | None = None,
    ) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        self.count, self.block_ms = count, block_ms
        self.last_id: str | None = None
        self._committed: tuple[int, int] = (-1, -1)
        self._backlog_cursor: str | None = "0"  # re-read own pending entries first
        self._delivered: list[bytes] = []
        self._create_group()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStreamSource:
        client, stream = connect(url)
        return cls(client, stream, **kwargs)

    def describe(self) -> str:
        return f"redis stream {self.stream} (group {self.group}, consumer {self.consumer})"

    def _create_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def restore(self, position: Mapping[str, Any]) -> None:
        check_kind(position, "redis", self.describe())
        if position.get("stream", self.stream) != self.stream:
            raise InvalidInput(f"--data holds offsets of stream {position['stream']!r}")
        self.last_id = position.get("last_id")
        self._committed = _id_key(self.last_id) if self.last_id else (-1, -1)
        self._backlog_cursor = "0"

    def position(self) -> dict[str, Any]:
        return {"kind": "redis", "stream": self.stream, "last_id": self.last_id}

    def poll(self) -> list[Chunk]:
        while self._backlog_cursor is not None:
            chunk = self._poll_backlog()
            if chunk is not None:
                return [chunk]
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self.count, block=self.block_ms
        )
        entries = reply[0][1] if reply else []
        return [self._chunk(entries)] if entries else []

    def _poll_backlog(self) -> Chunk | None:
        cursor = self._backlog_cursor or "0"
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: cursor}, count=self.count
        )
        entries = reply[0][1] if reply else []
        if not entries:
            self._backlog_cursor = None
            return None
        self._backlog_cursor = entries[-1][0].decode()
        done = [eid for eid, _ in entries if _id_key(eid) <= self._committed]
        if done:  # persisted before the crash, acknowledgement lost: acknowledge only
            self.client.xack(self.stream, self.group, *done)  # type: ignore[no-untyped-call]
        fresh = [(eid, fields) for eid, fields in entries if _id_key(eid) > self._committed]
        return self._chunk(fresh) if fresh else None

    def _chunk(self, entries: list[Any]) -> Chunk:
        ids = [eid for eid, _ in entries]
        lines = [(fields or {}).get(FIELD, b"") for _, fields in entries]
        self._delivered.extend(ids)
        self.last_id = ids[-1].decode()
        data = None if any(b"\n" in line for line in lines) else b"\n".join(lines) + b"\n"
        return Chunk(lines, data, lambda i: f"{self.stream}:{ids[i].decode()}")

    def acknowledge(self, position: Mapping[str, Any] | None = None) -> None:
        """``XACK`` the entries delivered up to ``position`` (everything delivered
        when None); call after they are committed. Entries delivered later (read
        ahead, not yet committed) stay pending."""
        upto = self.last_id if position is None else position.get("last_id")
        if upto is None:
            return
        key = _id_key(upto)
        # delivered in increasing id order: own backlog first, then new entries
        cut = bisect.bisect_right(self._delivered, key, key=_id_key)
        done, self._delivered = self._delivered[:cut], self._delivered[cut:]
        for i in range(0, len(done), 10_000):
            self.client.xack(  # type: ignore[no-untyped-call]
                self.stream, self.group, *done[i : i + 10_000]
            )
        self._committed = max(self._committed, key)

    def close(self) -> None:
        self.client.close()
