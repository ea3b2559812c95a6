"""Write a logged click/sale event stream from a world, fast and in event-time order.

Requests are drawn in vectorised chunks; a logging policy (uniform over the
eligible offers, the default) assigns each click an offer (a campaign and one
of its landing pages) with a known propensity; the oracle decides which clicks
convert and the delay model when their postbacks arrive. Pending sales wait in
a heap and are merged into the click stream when their time comes, so the log
reads like a live stream.
Memory holds one chunk plus the pending sales, whatever the number of clicks.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.errors import InvalidInput
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import (
    CanonicalProfile,
    RawRequest,
    SaleEvent,
    TypedClickEvent,
    encode_events,
)
from clickrouter.profile import CATEGORICAL_FIELDS
from clickrouter.sim.population import Draw
from clickrouter.sim.world import World

LOGGING_MODEL_VERSION = "logging-uniform"
_WRITE_BLOCK = 5000  # events per write_raw call: bounded buffers, timely rotation


@dataclass
class GenerationReport:
    """What a run wrote."""

    clicks: int = 0
    sales: int = 0
    revenue: float = 0.0
    skipped_requests: int = 0  # requests no offer was eligible for
    pending_sales_dropped: int = 0  # sales beyond the horizon
    first_ts: float = 0.0  # time of the first and last click
    last_ts: float = 0.0
    segments: list[str] = field(default_factory=list)


class _Choices:
    """The eligible offers of every (country, os) combination, as one flat index list."""

    def __init__(self, table: np.ndarray) -> None:
        self.count = table.sum(axis=1)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.flat = np.flatnonzero(table.ravel()) % table.shape[1]

    def pick(self, combo: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = self.count[combo]
        pick = np.minimum((u * count).astype(np.int64), count - 1)
        offer = np.where(count > 0, self.flat[self.start[combo] + np.maximum(pick, 0)], -1)
        return offer, 1.0 / np.maximum(count, 1)


class UniformLoggingPolicy:
    """Uniform choice among the eligible offers; propensity = 1 / #eligible.

    Eligibility depends only on (country, os) and, when the world schedules
    pages, on the schedule's epoch; each combination's eligible list is
    computed once per epoch and a choice is an index into it.
    """

    def __init__(self, world: World) -> None:
        n_os = world.sizes["os"]
        combos = np.arange(world.sizes["country"] * n_os)
        self.world = world
        self.n_os = n_os
        self._table = world.eligible_slots({"country": combos // n_os, "os": combos % n_os})
        self._static = _Choices(self._table)
        self._by_epoch: dict[int, _Choices] = {}
        self.count = self._static.count  # eligible offers per combination, schedule aside

    def choose(
        self,
        rng: np.random.Generator,
        slots: dict[str, np.ndarray],
        epoch: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(offer index or -1 when none is eligible, propensity) per request.

        ``epoch`` (see :meth:`World.live_epoch`) per request applies the page
        schedule; None ignores it.
        """
        combo = slots["country"] * self.n_os + slots["os"]
        u = rng.random(len(combo))
        if epoch is None:
            return self._static.pick(combo, u)
        offer = np.empty(len(combo), dtype=np.int64)
        propensity = np.empty(len(combo))
        for e in np.unique(epoch).tolist():
            rows = np.flatnonzero(epoch == e)
            offer[rows], propensity[rows] = self._choices(e).pick(combo[rows], u[rows])
        return offer, propensity

    def _choices(self, epoch: int) -> _Choices:
        choices = self._by_epoch.get(epoch)
        if choices is None:
            choices = _Choices(self._table & self.world.live_offers(epoch))
            self._by_epoch[epoch] = choices
        return choices


class EventGenerator:
    """Generates ``n_clicks`` logged clicks and their sales into an event log."""

    def __init__(
        self,
        world: World,
        *,
        seed: int = 0,
        start_ts: float | None = None,
        chunk: int = 50_000,
        include_raw: bool = True,
        horizon_seconds: float | None = None,
        model_version: str = LOGGING_MODEL_VERSION,
    ) -> None:
        self.world = world
        self.seed = seed
        self.rng = np.random.default_rng([world.seed, seed, 3])
        self.start_ts = world.start_ts if start_ts is None else start_ts
        self.chunk = chunk
        self.include_raw = include_raw
        self.horizon_seconds = (
            world.delays.max_seconds if horizon_seconds is None else horizon_seconds
        )
        self.model_version = model_version
        self.policy = UniformLoggingPolicy(world)
        if not self.policy.count.any():
            raise InvalidInput("no offer is eligible for any request (all inactive?)")
        # landing page URL = prefix + click_id + suffix, or the URL as is without a placeholder
        parts = [o.page.url.partition("{click_id}") for o in world.offers]
        self._page_prefix = np.array([p[0] for p in parts], dtype=object)
        self._page_has_id = np.array([bool(p[1]) for p in parts])
        self._page_suffix = np.array([p[2] for p in parts], dtype=object)
        self._campaign_ids = np.array([o.campaign.id for o in world.offers], dtype=object)
        self._page_ids = np.array(world.page_ids, dtype=object)
        self._one_page = len(set(world.page_ids)) == 1  # every click names the same page id
        self._scheduled = len(world.change_times) > 0
        self._pending: list[tuple[int, int, str, float]] = []  # (ts_ms, seq, click_id, revenue)
        # click ids name the world and the run, so logs of different runs can share a directory
        self._id_format = f"s{world.seed}.{seed}-%010d"

    def run(self, writer: EventLogWriter, n_clicks: int) -> GenerationReport:
        """Write ``n_clicks`` clicks (and every sale due within the horizon after them)."""
        # chunks are built from many small objects that hold no reference cycles;
        # a collection pass every few thousand allocations would only cost time
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(writer, n_clicks)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, writer: EventLogWriter, n_clicks: int) -> GenerationReport:
        report = GenerationReport()
        cursor = self.start_ts
        while report.clicks < n_clicks:
            draw = self.world.draw(self.rng, min(self.chunk, n_clicks - report.clicks), cursor)
            cursor = (int(draw.ts_ms[-1]) + 1) / 1000.0
            events = self._chunk_events(draw, report)
            self._write(writer, events)
        end_ms = round((report.last_ts + self.horizon_seconds) * 1000)
        self._write(writer, self._due_sales(end_ms, report))
        report.pending_sales_dropped = len(self._pending)
        writer.flush()
        report.segments = sorted(
            p.name for p in writer.directory.glob(f"{writer.writer_id}.*.jsonl")
        )
        return report

    def _chunk_events(
        self, draw: Draw, report: GenerationReport
    ) -> Sequence[TypedClickEvent | SaleEvent]:
        slots = self.world.audience.slots(draw)
        epoch = self.world.live_epoch(draw.ts_ms / 1000.0) if self._scheduled else None
        offer, propensity = self.policy.choose(self.rng, slots, epoch)
        keep = offer >= 0
        report.skipped_requests += int((~keep).sum())
        draw, offer, propensity = _subset(draw, keep), offer[keep], propensity[keep]
        slots = {f: v[keep] for f, v in slots.items()}
        first = report.clicks
        ids = list(map(self._id_format.__mod__, range(first, first + len(draw))))
        self._schedule_sales(draw, slots, offer, ids)
        clicks = self._click_events(draw, offer, propensity, ids)
        report.clicks += len(clicks)
        if clicks:
            report.first_ts = report.first_ts or clicks[0].ts
            report.last_ts = clicks[-1].ts
        sales = self._due_sales(int(draw.ts_ms[-1]), report) if len(draw) else []
        return _merge(clicks, sales)

    def _schedule_sales(
        self, draw: Draw, slots: dict[str, np.ndarray], offer: np.ndarray, ids: list[str]
    ) -> None:
        p = self.world.true_proba_slots(slots, offer)
        sold = np.flatnonzero(self.rng.random(len(p)) < p)
        delay_ms = np.round(self.world.delays.sample(self.rng, len(sold)) * 1000).astype(np.int64)
        for row, delay in zip(sold.tolist(), delay_ms.tolist(), strict=True):
            revenue = float(self.world.payouts[offer[row]])
            heapq.heappush(self._pending, (int(draw.ts_ms[row]) + delay, row, ids[row], revenue))

    def _due_sales(self, until_ms: int, report: GenerationReport) -> list[SaleEvent]:
        sales = []
        while self._pending and self._pending[0][0] <= until_ms:
            ts_ms, _, click_id, revenue = heapq.heappop(self._pending)
            sales.append(SaleEvent(f"{click_id}.sale", click_id, ts_ms / 1000.0, revenue))
            report.sales += 1
            report.revenue += revenue
        return sales

    def _click_events(
        self, draw: Draw, offer: np.ndarray, propensity: np.ndarray, ids: list[str]
    ) -> list[TypedClickEvent]:
        canon = self.world.renderer.canonical_columns(draw)
        columns = [canon[f] for f in (*CATEGORICAL_FIELDS, "local_hour", "local_weekday")]
        profiles = [CanonicalProfile(*values) for values in zip(*columns, strict=True)]
        raws = self._raw_requests(draw, ids) if self.include_raw else [None] * len(draw)
        id_column = np.array(ids, dtype=object)
        # landing pages assembled column-wise (object arrays concatenate in C)
        pages = (
            self._page_prefix[offer]
            + np.where(self._page_has_id[offer], id_column, "")
            + self._page_suffix[offer]
        )
        return [
            TypedClickEvent(*row)
            for row in zip(
                ids,
                ids,
                (draw.ts_ms / 1000.0).tolist(),
                profiles,
                self._campaign_ids[offer].tolist(),
                pages.tolist(),
                propensity.tolist(),
                itertools.repeat(self.model_version),
                itertools.repeat(self._page_ids[0])
                if self._one_page
                else self._page_ids[offer].tolist(),
                raws,
            )
        ]

    def _raw_requests(self, draw: Draw, ids: list[str]) -> list[RawRequest]:
        cols = self.world.renderer.raw_columns(self.rng, draw, encoded=True)
        return [RawRequest(*row) for row in zip(ids, *cols.values(), strict=True)]

    def _write(self, writer: EventLogWriter, events: Sequence[TypedClickEvent | SaleEvent]) -> None:
        for lo in range(0, len(events), _WRITE_BLOCK):
            writer.write_raw(encode_events(events[lo : lo + _WRITE_BLOCK]))


def _subset(draw: Draw, keep: np.ndarray) -> Draw:
    if keep.all():
        return draw
    return Draw(**{name: getattr(draw, name)[keep] for name in draw.__dataclass_fields__})


def _merge(
    clicks: list[TypedClickEvent], sales: list[SaleEvent]
) -> Sequence[TypedClickEvent | SaleEvent]:
    """Clicks (time-ordered) with due sales inserted after every click at or before them."""
    if not sales:
        return clicks
    click_ts = np.array([c.ts for c in clicks])
    positions = np.searchsorted(click_ts, [s.ts for s in sales], side="right").tolist()
    merged: list[TypedClickEvent | SaleEvent] = []
    prev = 0
    for pos, sale in zip(positions, sales, strict=True):
        merged.extend(clicks[prev:pos])
        merged.append(sale)
        prev = pos
    merged.extend(clicks[prev:])
    return merged


def generate_events(
    world: World, out: str | Path, n_clicks: int, *, writer_id: str = "sim", **options: Any
) -> GenerationReport:
    """Write ``n_clicks`` clicks and their sales to ``out/events`` (see :class:`EventGenerator`)."""
    with EventLogWriter(Path(out) / "events", writer_id=writer_id) as writer:
        return EventGenerator(world, **options).run(writer, n_clicks)
