"""ConsumerManager: source -> decode -> attribution -> DataManager commits.

One loop iteration polls the source (a few polls, up to ``batch_events``
lines), decodes them into one batch of columns (bad lines become dead letters;
in a decode worker process when enabled, a few batches ahead of the join),
feeds the batch to the :class:`~clickrouter.stream.join.BatchAttributor`,
and every ``commit_events`` events or ``commit_seconds`` seconds commits what
has been joined, in one atomic DataManager commit: the new records, the dead
letters and late events, the new state part and the state blob
(:mod:`clickrouter.stream.state`), and the source position as it was right
after the last joined batch (batches read ahead stay in flight, so the worker
keeps decoding through the commit; after a crash they are read again). Only
then is the source acknowledged, up to that position. A crash anywhere
therefore resumes from the last commit, and because attribution is
deterministic in the event sequence (not in batch boundaries), the final
dataset equals that of a run that never crashed.

The join runs in event time, and event time comes from the events: one event
stamped far in the future would move the watermark there and every later
event would be late. So before the join, events whose time is beyond the
consumer's wall clock plus ``clock_skew_seconds`` are refused as dead letters
(reason, position and line; counted as ``future_events``). A state committed
with such a watermark before this check existed is brought back to the wall
clock on start, with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickrouter.datastore import DataManager
from clickrouter.stream.arrowio import use_system_allocator
from clickrouter.stream.batch import EventBatch, repeated
from clickrouter.stream.buffer import RecordBuffer
from clickrouter.stream.decode import ChunkDecoder
from clickrouter.stream.join import DEFAULT_LATENESS_SECONDS, BatchAttributor
from clickrouter.stream.pipeline import DecodePipeline
from clickrouter.stream.source import Chunk, Source
from clickrouter.stream.state import StateBook

COUNTERS = (
    "events_read",
    "records_labelled",
    "positives_labelled",
    "duplicates",
    "late_sales",
    "late_clicks",
    "dead_lettered",
    "future_events",
    "commits",
)
SEVEN_DAYS = 7 * 24 * 3600.0
DEFAULT_CLOCK_SKEW_SECONDS = 300.0  # Settings.clock_skew_seconds
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while ingesting: the loop allocates millions of acyclic
    objects (events, tuples) and gen-2 passes over the large, live state cost
    more than the ingestion itself.

    Everything allocated meanwhile is still "young" to the GC, so the first
    collection after re-enabling it would scan the whole consumer state
    (0.06-0.13 s at the end of a 300,000-click run): the state is frozen
    instead (``gc.freeze``: skipped by collections, freed by reference counts
    as ever) and unfrozen the next time ingestion pauses the GC."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


class ConsumerManager:
    """Ingests ``source`` into ``data`` (a writable DataManager).

    Parameters
    ----------
    window_seconds, lateness_seconds : attribution window and allowed lateness
        (event time; see :mod:`clickrouter.stream.join`).
    commit_events, commit_seconds : commit after this many events or seconds.
    compact_every : compact small files every this many commits (0 = never).
    retention_seconds : on compaction, drop files whose records are all older
        than this, in event time behind the newest event seen (None = keep all).
    batch_events : join this many events at a time (several polls), at most.
    decode_worker : decode in a second process, overlapped with the join (see
        :mod:`clickrouter.stream.decodeworker`); call :meth:`close` at the end.
    progress : called with :meth:`stats` after every batch.
    clock_skew_seconds : events stamped later than ``clock()`` plus this are
        dead-lettered, never joined (see the module doc).
    on_commit : called after each commit with its seconds and its dead letters
        (metrics: :mod:`clickrouter.stream.metrics`).
    """

    def __init__(
        self,
        source: Source,
        data: DataManager,
        *,
        window_seconds: float = SEVEN_DAYS,
        lateness_seconds: float = DEFAULT_LATENESS_SECONDS,
        commit_events: int = 200_000,
        commit_seconds: float = 5.0,
        compact_every: int = 100,
        retention_seconds: float | None = None,
        batch_events: int = 8192,
        decode_worker: bool = False,
        buffer: RecordBuffer | None = None,
        progress: Callable[[dict[str, int]], None] | None = None,
        clock_skew_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[float, list[bytes]], None] | None = None,
    ) -> None:
        if not clock_skew_seconds >= 0:
            raise ValueError("clock_skew_seconds must be >= 0")
        self.clock_skew_seconds, self.clock = clock_skew_seconds, clock
        self.on_commit = on_commit
        use_system_allocator()  # see there: Arrow's default pool is slower here
        self.source, self.data = source, data
        self.commit_events, self.commit_seconds = commit_events, commit_seconds
        self.compact_every, self.progress = compact_every, progress
        self.retention_seconds = retention_seconds
        self.batch_events = batch_events
        self.attributor = BatchAttributor(window_seconds, lateness_seconds)
        self.decoder = ChunkDecoder()
        self.pipeline = DecodePipeline(self.decoder, use_worker=decode_worker)
        self.buffer = buffer if buffer is not None else RecordBuffer()  # empty is falsy
        self.book = StateBook(self.attributor, self.buffer)
        manifest = data.manifest()
        self.counters = {name: int(manifest.counters.get(name, 0)) for name in COUNTERS}
        blob = data.load_state()
        if blob is not None:
            self.book.restore(blob, data.load_state_part, time.monotonic())
            self._repair_future_watermark()
        source.restore(manifest.source)
        self._uncommitted = 0  # lines joined since the last commit
        # per batch submitted and not yet joined: its lines, the position after it,
        # its chunks (to name a refused line's position)
        self._inflight: deque[tuple[int, dict[str, Any], list[Chunk]]] = deque()
        self._joined_position = source.position()
        self._last_commit = time.monotonic()

    # -- loops ------------------------------------------------------------------
    def run_once(self, *, flush_all: bool = False, compact: bool = True) -> dict[str, int]:
        """Drain what the source holds now, commit, and return :meth:`stats`.

        ``flush_all`` then closes every open window (label 0) regardless of
        event time: for demos and end-of-data, never for a live stream.
        ``compact`` merges the small files the commits left behind.
        """
        with _gc_paused():
            while self.step(commit_when_idle=False):  # the final commit follows
                pass
            if flush_all:
                self.attributor.flush_all()
            self.commit(final=True)
        if compact:
            self.maintain()
        return self.stats()

    def run_forever(self, stop: threading.Event, *, idle_seconds: float = 0.2) -> dict[str, int]:
        """Follow the source until ``stop`` is set; commits on the way and at the end."""
        with _gc_paused():
            while not stop.is_set():
                if not self.step() and self._uncommitted == 0:
                    stop.wait(idle_seconds)
            self.commit(final=True)
        return self.stats()

    def step(self, *, commit_when_idle: bool = True) -> bool:
        """Poll and process one batch; commit when due. False when nothing was new."""
        chunks = self._poll_batch()
        if chunks:
            self.pipeline.submit(chunks)
            lines = sum(len(chunk.lines) for chunk in chunks)
            self._inflight.append((lines, self.source.position(), chunks))
        # keep batches in flight while reading on, so decoding overlaps the join
        while len(self.pipeline) > (self.pipeline.depth if chunks else 0):
            self._join_next()
        due = self._uncommitted >= self.commit_events
        if due or (
            self._uncommitted and time.monotonic() - self._last_commit >= self.commit_seconds
        ):
            self.commit()
        elif not chunks and self._uncommitted and commit_when_idle:
            self.commit()  # caught up: make what was read durable now
        if self.progress is not None:
            self.progress(self.stats())
        return bool(chunks)

    def _join_next(self) -> None:
        batch = self.pipeline.next()
        lines, self._joined_position, chunks = self._inflight.popleft()
        self.attributor.add_batch(self._refuse_future(batch, chunks))
        self.counters["events_read"] += lines
        self._uncommitted += lines

    def _refuse_future(self, batch: EventBatch, chunks: list[Chunk]) -> EventBatch:
        """The batch without its events from beyond the clock (those become dead
        letters): one comparison over the batch when there are none."""
        now = self.clock()
        limit = now + self.clock_skew_seconds
        future = np.asarray(batch.ts, dtype=np.float64) > limit
        if not future.any():
            return batch
        dropped = np.flatnonzero(future).tolist()
        origins = _origins(batch, chunks, dropped[-1] + 1)
        reason = (
            f"event time beyond the consumer's clock plus {self.clock_skew_seconds:g} s "
            f"(clock {now:.3f})"
        )
        self.decoder.add_dead_letters(chunks, [(*origins[j], reason) for j in dropped])
        self.counters["future_events"] += len(dropped)
        log.warning("%d event(s) stamped in the future dead-lettered", len(dropped))
        return _keep(batch, ~future)

    def _repair_future_watermark(self) -> None:
        limit = self.clock() + self.clock_skew_seconds
        if self.attributor.max_ts > limit:
            log.warning(
                "the committed watermark (newest event time %r) is beyond the clock: "
                "an event from the future was joined before; resuming from the clock's time",
                self.attributor.max_ts,
            )
            self.attributor.max_ts = limit

    def _poll_batch(self) -> list[Chunk]:
        """Chunks of several polls, up to ``batch_events`` lines (and never past
        the next commit point): the columnar join's per-batch costs are fixed.
        Polls again only while the source has a backlog (a poll of >= 512
        lines), so a trickling live source is never waited on."""
        ahead = self._uncommitted + sum(item[0] for item in self._inflight)
        room = min(self.batch_events, self.commit_events - ahead % self.commit_events)
        chunks: list[Chunk] = []
        lines = 0
        while True:
            polled = self.source.poll()
            chunks.extend(polled)
            got = sum(len(chunk.lines) for chunk in polled)
            lines += got
            if got < 512 or lines >= room:
                return chunks

    # -- commit -------------------------------------------------------------------
    def commit(self, *, final: bool = False) -> None:
        """Make everything joined so far durable (everything read when ``final``),
        then acknowledge the source up to there.

        Records due for a file (see :class:`RecordBuffer`; all of them when
        ``final``) go to Parquet; the rest stay held in the committed state.
        The state is incremental (see :mod:`clickrouter.stream.state`): one new
        part with what is new, plus a small blob.
        """
        while final and len(self.pipeline):  # the end: join everything read
            self._join_next()
        started = time.monotonic()
        records, late_sales, late_clicks = self.attributor.take_output()
        dead = self.decoder.take_dead_letters()
        self._count(records, late_sales, late_clicks, dead)
        self.counters["commits"] += 1
        now = time.monotonic()
        self.buffer.add(records, now)
        due = self.buffer.take(now, force=final)
        # Parquet encoding runs in threads while the state is prepared and written
        pending = self.data.begin_records(due, self._joined_position)
        try:
            keep = self.book.release()
            part = self.book.fresh_part()
            if part is not None:
                self.book.adopt(self.data.next_state_part())
            manifest = self.data.commit(
                pending,
                source=self._joined_position,
                state=self.book.blob(),
                counters=self.counters,
                sidecars={
                    "dead_letters": dead,
                    "late_sales": late_sales,
                    "late_clicks": late_clicks,
                },
                state_part=part,
                keep_parts=keep,
            )
        except BaseException:
            self.data.discard(pending)
            raise
        self.source.acknowledge(self._joined_position)
        if self.on_commit is not None:
            self.on_commit(time.monotonic() - started, dead)
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        if self.compact_every and manifest.generation % self.compact_every == 0:
            self.maintain()

    def maintain(self) -> None:
        """Compact small files; apply retention (event time) when configured."""
        newest = self.attributor.max_ts
        if self.retention_seconds is not None and newest > float("-inf"):
            self.data.apply_retention(newest - self.retention_seconds)
        self.data.compact()

    def _count(
        self,
        records: pa.Table,
        late_sales: list[bytes],
        late_clicks: list[bytes],
        dead: list[bytes],
    ) -> None:
        c = self.counters
        c["records_labelled"] += records.num_rows
        c["positives_labelled"] += int(pc.sum(records["label"]).as_py() or 0)
        c["late_sales"] += len(late_sales)
        c["late_clicks"] += len(late_clicks)
        c["dead_lettered"] += len(dead)
        c["duplicates"] += self.attributor.duplicates
        self.attributor.duplicates = 0

    def stats(self) -> dict[str, int]:
        """Committed counters plus pending clicks, orphan sales and held records.

        ``records_written`` = labelled records already in Parquet files.
        """
        held = len(self.buffer)
        written = self.counters["records_labelled"] - held
        return {
            **self.counters,
            "records_written": written,
            "records_held": held,
            **self.attributor.stats(),
        }

    def close(self) -> None:
        self.pipeline.close()
        self.source.close()


def _origins(batch: EventBatch, chunks: list[Chunk], count: int) -> list[tuple[int, int]]:
    """``(chunk number, line)`` of the batch's first ``count`` events.

    The batch's events are its chunks' lines minus the refused ones, in order,
    and identical lines decode alike (both kept or both refused), so matching
    each event to the next equal line finds its own.
    """
    found: list[tuple[int, int]] = []
    n, i = 0, 0
    for j in range(count):
        raw = batch.raws[j]
        while n < len(chunks) and (i >= len(chunks[n].lines) or chunks[n].lines[i] != raw):
            n, i = (n + 1, 0) if i >= len(chunks[n].lines) else (n, i + 1)
        if n >= len(chunks):
            raise AssertionError("a batch event matches no line of its chunks")
        found.append((n, i))
        i += 1
    return found


def _keep(batch: EventBatch, mask: np.ndarray) -> EventBatch:
    """The events of ``batch`` where ``mask`` is true, in order."""
    keep = np.flatnonzero(mask).tolist()
    click_row = (np.cumsum(batch.is_click) - 1).tolist()
    is_click = [batch.is_click[j] for j in keep]
    rows = [click_row[j] for j in keep if batch.is_click[j]]
    ids = [batch.ids[j] for j in keep]
    click_ids = [batch.click_ids[j] for j in keep]
    return EventBatch(
        events=None if batch.events is None else [batch.events[j] for j in keep],
        raws=[batch.raws[j] for j in keep],
        ts=[batch.ts[j] for j in keep],
        ids=ids,
        click_ids=click_ids,
        is_click=is_click,
        click_pos=np.flatnonzero(np.array(is_click, dtype=bool)),
        clicks=batch.clicks.take(pa.array(rows, pa.int64())),
        repeated_ids=repeated(ids),
        repeated_click_ids=repeated(click_ids),
    )
