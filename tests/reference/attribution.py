"""The click/sale join line by line: the executable specification of the consumer's join.

:class:`Attributor` applies the rules of :mod:`clickrouter.stream.join` (see its
module doc) one event at a time, in the plainest way. The consumer runs
:class:`~clickrouter.stream.join.BatchAttributor`, the same join a batch of
columns at a time, which ``tests/stream/test_stream_fastattr.py`` checks against
this one on random streams.
"""

from __future__ import annotations

import heapq
import json
import math
from typing import Any

import msgspec

from clickrouter.events import ClickEvent, Event, SaleEvent
from clickrouter.stream.join import DEFAULT_LATENESS_SECONDS
from clickrouter.stream.records import Record
from reference.closequeue import CloseQueue

_click_decoder = msgspec.json.Decoder(ClickEvent)
_sale_decoder = msgspec.json.Decoder(SaleEvent)


class Snapshot(msgspec.Struct, frozen=True):
    """The join's state as :meth:`Attributor.snapshot` encodes it."""

    max_ts: float
    seq: int
    pending: list[tuple[bytes, int]]  # raw click line, arrival sequence
    orphans: list[tuple[bytes, int]]  # raw sale line, arrival sequence
    seen_ids: list[str]
    seen_ts: list[float]
    click_ids: list[str] = []
    click_ts: list[float] = []


class Attributor:
    """Joins sales to clicks; emits labelled records and late events.

    Parameters
    ----------
    window_seconds : attribution window (event time).
    lateness_seconds : allowed lateness behind the newest event seen.
    """

    def __init__(
        self, window_seconds: float, lateness_seconds: float = DEFAULT_LATENESS_SECONDS
    ) -> None:
        if window_seconds <= 0 or lateness_seconds < 0:
            raise ValueError("window must be > 0 and lateness >= 0 seconds")
        self.window = float(window_seconds)
        self.lateness = float(lateness_seconds)
        self.max_ts = -math.inf
        self.seq = 0
        self.pending: dict[str, tuple[ClickEvent, bytes, int]] = {}
        self.orphans: dict[str, list[tuple[SaleEvent, bytes, int]]] = {}
        self.seen: dict[str, float] = {}  # event id -> ts
        self.clicks: dict[str, float] = {}  # click_id -> ts: one record per click_id
        self._closing = CloseQueue()  # (close at, seq, click_id) of pending clicks
        self._expiring: list[tuple[float, int, str]] = []  # (sale ts, seq, click_id)
        self._swept_at = -math.inf
        self.records: list[Record] = []
        self.late_sales: list[bytes] = []
        self.late_clicks: list[bytes] = []
        self.duplicates = 0

    @property
    def watermark(self) -> float:
        return self.max_ts - self.lateness

    # -- the join -----------------------------------------------------------
    def add(self, event: Event, raw: bytes) -> None:
        """Apply one decoded event (``raw`` is its JSON line, kept for the state)."""
        self.add_all([(event, raw)])

    def add_all(self, items: list[tuple[Event, bytes]]) -> None:
        """Apply events in order; the common click path is inlined (hot loop)."""
        seen, pending, orphans, closing = self.seen, self.pending, self.orphans, self._closing
        clicks = self.clicks
        window, lateness, horizon = self.window, self.lateness, self.window + self.lateness
        schedule, expiring, click_type = closing.push, self._expiring, ClickEvent
        oldest = self.max_ts - horizon  # events before this are late on arrival
        for event, raw in items:
            ts = event.ts
            if ts > self.max_ts:
                self.max_ts = ts
                oldest = ts - horizon
                mark = ts - lateness
                if closing.next_at < mark or (expiring and expiring[0][0] < mark):
                    self._advance(mark)
            if ts < oldest:
                self._late(event, raw, "older than the attribution window behind the watermark")
                continue
            event_id = event.id
            if event_id in seen:
                self.duplicates += 1
                continue
            seen[event_id] = ts
            if event.__class__ is not click_type:
                self._sale(event, raw)  # type: ignore[arg-type]
                continue
            click_id = event.click_id
            if click_id in clicks or click_id in orphans:
                self._click(event, raw)
            else:
                clicks[click_id] = ts
                seq = self.seq = self.seq + 1
                pending[click_id] = (event, raw, seq)
                schedule((ts + window, seq, click_id))

    def _click(self, click: ClickEvent, raw: bytes) -> None:
        if click.click_id in self.clicks:
            self._late(click, raw, "click_id already seen under another event id")
            return
        self.clicks[click.click_id] = click.ts
        waiting = self.orphans.pop(click.click_id, None)
        if waiting and self._attribute_orphans(click, waiting):
            return
        self.seq += 1
        self.pending[click.click_id] = (click, raw, self.seq)
        self._closing.push((click.ts + self.window, self.seq, click.click_id))

    def _attribute_orphans(
        self, click: ClickEvent, sales: list[tuple[SaleEvent, bytes, int]]
    ) -> bool:
        matched = False
        for sale, raw, _ in sales:
            if matched:
                self._late(sale, raw, "click already attributed to an earlier sale")
            elif sale.ts - click.ts <= self.window:
                self.records.append((click, 1, sale.revenue, sale.ts))
                matched = True
            else:
                self._late(sale, raw, "sale after the attribution window")
        return matched

    def _sale(self, sale: SaleEvent, raw: bytes) -> None:
        entry = self.pending.get(sale.click_id)
        if entry is not None:
            click = entry[0]
            if sale.ts - click.ts <= self.window:
                del self.pending[sale.click_id]
                self.records.append((click, 1, sale.revenue, sale.ts))
            else:
                self._late(sale, raw, "sale after the attribution window")
        elif sale.ts < self.watermark:
            self._late(sale, raw, "unknown or closed click")
        else:
            self.seq += 1
            self.orphans.setdefault(sale.click_id, []).append((sale, raw, self.seq))
            heapq.heappush(self._expiring, (sale.ts, self.seq, sale.click_id))

    def _advance(self, watermark: float) -> None:
        expiring, pending, emit = self._expiring, self.pending, self.records.append
        for _, seq, click_id in self._closing.pop_due(watermark):
            entry = pending.pop(click_id, None)
            if entry is None:
                continue  # sold meanwhile
            if entry[2] == seq:
                emit((entry[0], 0, 0.0, None))
            else:
                pending[click_id] = entry  # a newer click under the same id: not due
        while expiring and expiring[0][0] < watermark:
            _, seq, click_id = heapq.heappop(expiring)
            self._expire_orphan(click_id, seq)

    def _expire_orphan(self, click_id: str, seq: int) -> None:
        sales = self.orphans.get(click_id)
        if not sales:
            return  # its click arrived meanwhile
        for i, (sale, raw, s) in enumerate(sales):
            if s == seq:
                del sales[i]
                self._late(sale, raw, "unknown or closed click")
                break
        if not sales:
            del self.orphans[click_id]

    def flush_all(self) -> None:
        """Close every window now (label 0) and give up on every orphan sale."""
        self._advance(math.inf)

    def _late(self, event: Event, raw: bytes, reason: str) -> None:
        line = b'{"reason":%s,"watermark":%s,"event":%s}' % (
            json.dumps(reason).encode(),
            json.dumps(self.watermark if math.isfinite(self.watermark) else None).encode(),
            raw.rstrip(b"\r\n"),
        )
        (self.late_clicks if isinstance(event, ClickEvent) else self.late_sales).append(line)

    # -- state ----------------------------------------------------------------
    def sweep_seen(self) -> None:
        """Forget ids too old to be accepted again (deterministic, see module doc)."""
        horizon = self.max_ts - self.lateness - self.window
        if horizon - self._swept_at < 0.01 * self.window:
            return
        self.seen = {k: v for k, v in self.seen.items() if v >= horizon}
        self.clicks = {k: v for k, v in self.clicks.items() if v >= horizon}
        self._swept_at = horizon

    def snapshot(self) -> bytes:
        self.sweep_seen()
        orphans = [(raw, seq) for sales in self.orphans.values() for _, raw, seq in sales]
        return msgspec.msgpack.encode(
            Snapshot(
                max_ts=self.max_ts,
                seq=self.seq,
                pending=[(raw, seq) for _, raw, seq in self.pending.values()],
                orphans=sorted(orphans, key=lambda item: item[1]),
                seen_ids=list(self.seen),
                seen_ts=list(self.seen.values()),
                click_ids=list(self.clicks),
                click_ts=list(self.clicks.values()),
            )
        )

    def restore(self, blob: bytes) -> None:
        snap = msgspec.msgpack.decode(blob, type=Snapshot)
        self.max_ts, self.seq = snap.max_ts, snap.seq
        self.seen = dict(zip(snap.seen_ids, snap.seen_ts, strict=True))
        self.clicks = dict(zip(snap.click_ids, snap.click_ts, strict=True))
        for raw, seq in sorted(snap.pending, key=lambda item: item[1]):
            click = _click_decoder.decode(raw)
            self.pending[click.click_id] = (click, raw, seq)
            self._closing.push((click.ts + self.window, seq, click.click_id))
        for raw, seq in snap.orphans:
            sale = _sale_decoder.decode(raw)
            self.orphans.setdefault(sale.click_id, []).append((sale, raw, seq))
            self._expiring.append((sale.ts, seq, sale.click_id))
        heapq.heapify(self._expiring)

    def take_output(self) -> tuple[list[Record], list[bytes], list[bytes]]:
        """Records, late sales and late clicks produced since the last call."""
        out = (self.records, self.late_sales, self.late_clicks)
        self.records, self.late_sales, self.late_clicks = [], [], []
        return out

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self.pending), "orphan_sales": sum(map(len, self.orphans.values()))}
