"""The click/sale join in event time, a batch at a time, with deterministic state.

Event time advances from the events themselves: the *watermark* is the largest
``ts`` seen minus ``lateness_seconds`` (how late, in event time, an event may
arrive and still count; it also absorbs clock skew between sources).

* A click waits in ``pending`` until its sale arrives (label 1, written at
  once) or until the watermark passes ``click.ts + window`` (label 0).
* A sale is attributed when ``sale.ts - click.ts <= window`` (a negative delay,
  from a sale source whose clock runs behind, is accepted). A sale that comes
  before its click waits as an *orphan* until the click arrives or the
  watermark passes the sale's ``ts``; then it is late ("unknown or closed click").
* An event older than ``watermark - window`` is late on arrival: its click's
  window is closed, and its id may no longer be remembered for deduplication.
* Event ids are remembered while they are younger than that horizon, so a
  repeated id is dropped; ids are only forgotten once events that old are
  refused anyway, which keeps the outcome independent of when forgetting runs.
  Click ids are remembered the same way: a second click event (another id)
  for a click_id already seen is late, so a click_id yields one record at most.

Every decision depends only on the sequence of events, never on wall time or
batch boundaries, so replaying from a committed snapshot reproduces exactly
what an uninterrupted run produces. Since one event stamped in the future
would move the watermark there, the consumer refuses such events (beyond its
clock plus a skew) before they reach the join
(:class:`~clickrouter.stream.consumer.ConsumerManager`).

The executable specification is a line-by-line join kept with the tests
(``tests/reference/attribution.py``); a property test checks that both produce
the same records, late events and counts on random streams. What this one does
differently is how the work is done:

* the watermark of every event is one ``numpy`` running maximum over the batch;
* a *plain click* (on time, its event id and click id new and not used by any
  other event of the batch) commutes with every other event of the batch, so
  all plain clicks are accepted in bulk (dict updates and a column block, no
  per-event Python); the other events (sales, duplicates, late or repeated
  clicks) go one by one, in order, each seeing the watermark it would have seen;
* windows close lazily: a pending click whose window closed before an event's
  watermark counts as closed for that event, and at the end of the batch one
  vectorised comparison per block emits the label-0 records.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import deque
from itertools import compress, repeat

import numpy as np
import pyarrow as pa

from clickrouter.events import ClickEvent, Event, SaleEvent
from clickrouter.stream.batch import CLICK_SCHEMA, EventBatch
from clickrouter.stream.blocks import ClickBlock
from clickrouter.stream.records import labelled_records

DEFAULT_LATENESS_SECONDS = 3600.0
_NO_ROWS = np.empty(0, dtype=np.int64)


class BatchAttributor:
    """Joins sales to clicks batch by batch; see the module doc.

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
        self.horizon = self.window + self.lateness
        self.max_ts = -math.inf
        self.seq = 0
        self.seen: set[str] = set()  # event ids
        # click_id -> its row, for every click remembered: one record per click_id;
        # the click is pending while the row is alive
        self.known: dict[str, tuple[ClickBlock, int]] = {}
        self.n_pending = 0
        self.orphans: dict[str, list[tuple[SaleEvent, bytes, int]]] = {}
        self._expiring: list[tuple[float, int, str]] = []  # (sale ts, seq, click_id)
        self._closing: list[tuple[float, int, ClickBlock]] = []  # heap by next_due
        self._serial = 0
        self.fresh: list[ClickBlock] = []  # blocks not yet in a committed state part
        self.fresh_ids: list[str] = []  # remembered ids that are not accepted clicks
        self.fresh_ids_ts: list[float] = []
        self._positives: list[tuple[ClickBlock, int, float, float]] = []
        self._negatives: list[tuple[ClickBlock, np.ndarray]] = []
        self.late_sales: list[bytes] = []
        self.late_clicks: list[bytes] = []
        self.duplicates = 0
        self._to_forget: list[tuple[list[str], list[ClickBlock]]] = []

    def forget_later(self, ids: list[str], blocks: list[ClickBlock]) -> None:
        """Forget these ids and the accepted clicks of these blocks (a released
        state part) before the next batch or flush, not now."""
        self._to_forget.append((ids, blocks))

    def _forget_released(self) -> None:
        seen, known = self.seen, self.known
        for ids, blocks in self._to_forget:
            seen.difference_update(ids)
            for block in blocks:
                event_ids, click_ids = block.member_ids()
                seen.difference_update(event_ids)
                deque(map(known.pop, click_ids, repeat(None)), maxlen=0)  # a C-level loop
        self._to_forget = []

    @property
    def watermark(self) -> float:
        return self.max_ts - self.lateness

    # -- one batch ------------------------------------------------------------
    def add_batch(self, batch: EventBatch) -> None:
        if self._to_forget:
            self._forget_released()
        if not len(batch):
            return
        marks = self._running_max(batch.ts)
        ts = np.asarray(batch.ts, dtype=np.float64)
        late = ts < marks - self.horizon  # the reference's "oldest", per event
        wms = marks - self.lateness
        plain = self._plain_clicks(batch, late)
        n_clicks = len(batch.click_pos)
        member = np.zeros(n_clicks, dtype=bool)
        alive = np.zeros(n_clicks, dtype=bool)
        block = ClickBlock(
            batch.clicks,
            list(compress(batch.ids, batch.is_click)),
            list(compress(batch.click_ids, batch.is_click)),
            self.window,
            alive,
            member,
            ipc=batch.clicks_ipc,
        )
        rows = np.flatnonzero(plain[batch.click_pos])
        member[rows] = alive[rows] = True
        self._accept_plain(batch, plain, block, rows)
        self._one_by_one(batch, np.flatnonzero(~plain).tolist(), marks.tolist(), wms, block)
        self._expire_orphans(float(wms[-1]), wms)
        self.max_ts = float(marks[-1])
        block.member = None if member.all() else member
        block.refresh()
        self.fresh.append(block)
        self.schedule(block)
        self._close_windows(self.watermark)

    def schedule(self, block: ClickBlock) -> None:
        """Watch ``block`` for windows closing (when it has pending rows)."""
        if block.next_due < math.inf:
            self._serial += 1
            heapq.heappush(self._closing, (block.next_due, self._serial, block))

    def _running_max(self, ts: list[float]) -> np.ndarray:
        """max_ts after each event, exactly as ``if ts > max_ts: max_ts = ts`` gives."""
        arr = np.asarray(ts, dtype=np.float64)
        if np.isnan(arr).any():  # NaN never raises max_ts in the line-by-line join
            out, top = [], self.max_ts
            for t in ts:
                if t > top:
                    top = t
                out.append(top)
            return np.asarray(out, dtype=np.float64)
        return np.maximum(np.maximum.accumulate(arr), self.max_ts)

    def _plain_clicks(self, batch: EventBatch, late: np.ndarray) -> np.ndarray:
        """Clicks that commute with the rest of the batch (see the module doc)."""
        plain = np.array(batch.is_click, dtype=bool) & ~late
        if not plain.any():
            return plain
        ids, cids = batch.ids, batch.click_ids
        busy_ids = self.seen.intersection(ids) | batch.repeated_ids
        busy = self.known.keys() & cids | self.orphans.keys() & cids | batch.repeated_click_ids
        n = len(ids)  # membership tests as C-level maps, not a Python loop
        if busy_ids:
            plain &= ~np.fromiter(map(busy_ids.__contains__, ids), dtype=bool, count=n)
        if busy:
            plain &= ~np.fromiter(map(busy.__contains__, cids), dtype=bool, count=n)
        return plain

    def _accept_plain(
        self, batch: EventBatch, plain: np.ndarray, block: ClickBlock, rows: np.ndarray
    ) -> None:
        if not len(rows):
            return
        mask = plain.tolist()
        self.seen.update(compress(batch.ids, mask))
        cids = compress(batch.click_ids, mask)
        self.known.update(zip(cids, zip(repeat(block), rows.tolist()), strict=False))  # same length
        self.n_pending += len(rows)

    # -- the reference logic, for the events that need it ---------------------
    def _one_by_one(
        self,
        batch: EventBatch,
        positions: list[int],
        marks: list[float],
        wms: np.ndarray,
        block: ClickBlock,
    ) -> None:
        click_row = np.cumsum(batch.is_click) - 1
        horizon, seen = self.horizon, self.seen
        for j in positions:
            self.max_ts = marks[j]
            wm = self.max_ts - self.lateness
            if self._expiring and self._expiring[0][0] < wm:
                self._expire_orphans(wm, wms)
            event, raw, ts = batch.event(j), batch.raws[j], batch.ts[j]
            if ts < self.max_ts - horizon:
                self._late(event, raw, "older than the attribution window behind the watermark")
                continue
            event_id = batch.ids[j]
            if event_id in seen:
                self.duplicates += 1
                continue
            seen.add(event_id)
            if isinstance(event, ClickEvent):
                self._click(event, raw, block, int(click_row[j]))
            else:
                self._sale(event, raw)

    def _remember_id(self, event: Event) -> None:
        self.fresh_ids.append(event.id)
        self.fresh_ids_ts.append(event.ts)

    def _click(self, click: ClickEvent, raw: bytes, block: ClickBlock, row: int) -> None:
        if click.click_id in self.known:
            self._remember_id(click)
            self._late(click, raw, "click_id already seen under another event id")
            return
        self.known[click.click_id] = (block, row)
        block.member[row] = True  # type: ignore[index]
        waiting = self.orphans.pop(click.click_id, None)
        if waiting and self._attribute_orphans(click, waiting, block, row):
            return
        block.alive[row] = True
        self.n_pending += 1

    def _attribute_orphans(
        self,
        click: ClickEvent,
        sales: list[tuple[SaleEvent, bytes, int]],
        block: ClickBlock,
        row: int,
    ) -> bool:
        matched = False
        for sale, raw, _ in sales:
            if matched:
                self._late(sale, raw, "click already attributed to an earlier sale")
            elif sale.ts - click.ts <= self.window:
                self._positives.append((block, row, sale.revenue, sale.ts))
                matched = True
            else:
                self._late(sale, raw, "sale after the attribution window")
        return matched

    def _sale(self, sale: SaleEvent, raw: bytes) -> None:
        self._remember_id(sale)
        entry = self.known.get(sale.click_id)
        if entry is not None and not entry[0].alive[entry[1]]:
            entry = None  # labelled already: the click is no longer pending
        if entry is not None and entry[0].due[entry[1]] < self.watermark:
            self._close_row(*entry)  # its window closed before this sale
            entry = None
        if entry is not None:
            block, row = entry
            if sale.ts - float(block.ts[row]) <= self.window:
                block.alive[row] = False
                self.n_pending -= 1
                self._positives.append((block, row, sale.revenue, sale.ts))
            else:
                self._late(sale, raw, "sale after the attribution window")
        elif sale.ts < self.watermark:
            self._late(sale, raw, "unknown or closed click")
        else:
            self.seq += 1
            self.orphans.setdefault(sale.click_id, []).append((sale, raw, self.seq))
            heapq.heappush(self._expiring, (sale.ts, self.seq, sale.click_id))

    def _close_row(self, block: ClickBlock, row: int) -> None:
        block.alive[row] = False
        self.n_pending -= 1
        self._negatives.append((block, np.array([row], dtype=np.int64)))

    # -- closing windows and expiring orphan sales ------------------------------
    def _close_windows(self, watermark: float) -> None:
        """Label 0 every pending click whose window closed before ``watermark``;
        only blocks whose earliest pending close time passed are looked at."""
        closing = self._closing
        while closing and closing[0][0] < watermark:
            block = heapq.heappop(closing)[2]
            rows = block.close_due(watermark) if watermark < math.inf else block.close_all()
            if len(rows):
                self._negatives.append((block, rows))
                self.n_pending -= len(rows)
            self.schedule(block)

    def _expire_orphans(self, watermark: float, wms: np.ndarray | None) -> None:
        """Give up on orphan sales older than ``watermark``; each late line carries
        the watermark of the event that passed it (found in ``wms``; without it,
        the current one)."""
        expiring = self._expiring
        while expiring and expiring[0][0] < watermark:
            sale_ts, seq, click_id = heapq.heappop(expiring)
            sales = self.orphans.get(click_id)
            if not sales:
                continue  # its click arrived meanwhile
            for i, (sale, raw, s) in enumerate(sales):
                if s == seq:
                    del sales[i]
                    at = self.watermark
                    if wms is not None:
                        at = float(wms[int(np.searchsorted(wms, sale_ts, side="right"))])
                    self._late(sale, raw, "unknown or closed click", at)
                    break
            if not sales:
                del self.orphans[click_id]

    def flush_all(self) -> None:
        """Close every window now (label 0) and give up on every orphan sale."""
        self._forget_released()
        self._close_windows(math.inf)
        self._expire_orphans(math.inf, None)

    def _late(self, event: Event, raw: bytes, reason: str, watermark: float | None = None) -> None:
        wm = self.watermark if watermark is None else watermark
        line = b'{"reason":%s,"watermark":%s,"event":%s}' % (
            json.dumps(reason).encode(),
            json.dumps(wm if math.isfinite(wm) else None).encode(),
            raw.rstrip(b"\r\n"),
        )
        (self.late_clicks if isinstance(event, ClickEvent) else self.late_sales).append(line)

    # -- output -------------------------------------------------------------------
    def take_output(self) -> tuple[pa.Table, list[bytes], list[bytes]]:
        """Records (RECORD_SCHEMA), late sales and late clicks since the last call."""
        records = labelled_records(self._positives, self._negatives)
        out = (records, self.late_sales, self.late_clicks)
        self._positives, self._negatives, self.late_sales, self.late_clicks = [], [], [], []
        return out

    def stats(self) -> dict[str, int]:
        return {"pending": self.n_pending, "orphan_sales": sum(map(len, self.orphans.values()))}

    def pending_click_ids(self) -> set[str]:
        """Click ids waiting for their sale or their window's end (for tests)."""
        self._forget_released()
        return {cid for cid, (block, row) in self.known.items() if block.alive[row]}


__all__ = ["CLICK_SCHEMA", "BatchAttributor"]
