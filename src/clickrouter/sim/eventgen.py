"""Write a logged click/sale event stream from a world, fast and in event-time order.

Requests are drawn in vectorised chunks; a logging policy (uniform over the
eligible campaigns, the default) assigns each click a campaign with a known
propensity; the oracle decides which clicks convert and the delay model when
their postbacks arrive. Pending sales wait in a heap and are merged into the
click stream when their time comes, so the log reads like a live stream.
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
    skipped_requests: int = 0  # requests no campaign was eligible for
    pending_sales_dropped: int = 0  # sales beyond the horizon
    first_ts: float = 0.0  # time of the first and last click
    last_ts: float = 0.0
    segments: list[str] = field(default_factory=list)


class UniformLoggingPolicy:
    """Uniform choice among the eligible campaigns; propensity = 1 / #eligible.

    Eligibility depends only on (country, os), so each combination's eligible
    list is computed once and a choice is an index into it.
    """

    def __init__(self, world: World) -> None:
        n_os = world.sizes["os"]
        combos = np.arange(world.sizes["country"] * n_os)
        table = world.eligible_slots({"country": combos // n_os, "os": combos % n_os})
        self.n_os = n_os
        self.count = table.sum(axis=1)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.flat = np.flatnonzero(table.ravel()) % table.shape[1]

    def choose(
        self, rng: np.random.Generator, slots: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(campaign index or -1 when none is eligible, propensity) per request."""
        combo = slots["country"] * self.n_os + slots["os"]
        count = self.count[combo]
        pick = np.minimum((rng.random(len(combo)) * count).astype(np.int64), count - 1)
        campaign = np.where(count > 0, self.flat[self.start[combo] + np.maximum(pick, 0)], -1)
        return campaign, 1.0 / np.maximum(count, 1)


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
            raise InvalidInput("no campaign is eligible for any request (all inactive?)")
        # landing page = prefix + click_id + suffix, or the page as is without a placeholder
        parts = [c.landing_page.partition("{click_id}") for c in world.campaigns]
        self._page_prefix = np.array([p[0] for p in parts], dtype=object)
        self._page_has_id = np.array([bool(p[1]) for p in parts])
        self._page_suffix = np.array([p[2] for p in parts], dtype=object)
        self._campaign_ids = np.array(world.campaign_ids, dtype=object)
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
        campaign, propensity = self.policy.choose(self.rng, slots)
        keep = campaign >= 0
        report.skipped_requests += int((~keep).sum())
        draw, campaign, propensity = _subset(draw, keep), campaign[keep], propensity[keep]
        slots = {f: v[keep] for f, v in slots.items()}
        first = report.clicks
        ids = list(map(self._id_format.__mod__, range(first, first + len(draw))))
        self._schedule_sales(draw, slots, campaign, ids)
        clicks = self._click_events(draw, campaign, propensity, ids)
        report.clicks += len(clicks)
        if clicks:
            report.first_ts = report.first_ts or clicks[0].ts
            report.last_ts = clicks[-1].ts
        sales = self._due_sales(int(draw.ts_ms[-1]), report) if len(draw) else []
        return _merge(clicks, sales)

    def _schedule_sales(
        self, draw: Draw, slots: dict[str, np.ndarray], campaign: np.ndarray, ids: list[str]
    ) -> None:
        p = self.world.true_proba_slots(slots, campaign)
        sold = np.flatnonzero(self.rng.random(len(p)) < p)
        delay_ms = np.round(self.world.delays.sample(self.rng, len(sold)) * 1000).astype(np.int64)
        for row, delay in zip(sold.tolist(), delay_ms.tolist(), strict=True):
            revenue = float(self.world.payouts[campaign[row]])
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
        self, draw: Draw, campaign: np.ndarray, propensity: np.ndarray, ids: list[str]
    ) -> list[TypedClickEvent]:
        canon = self.world.renderer.canonical_columns(draw)
        columns = [canon[f] for f in (*CATEGORICAL_FIELDS, "local_hour", "local_weekday")]
        profiles = [CanonicalProfile(*values) for values in zip(*columns, strict=True)]
        raws = self._raw_requests(draw, ids) if self.include_raw else [None] * len(draw)
        id_column = np.array(ids, dtype=object)
        # landing pages assembled column-wise (object arrays concatenate in C)
        pages = (
            self._page_prefix[campaign]
            + np.where(self._page_has_id[campaign], id_column, "")
            + self._page_suffix[campaign]
        )
        return [
            TypedClickEvent(*row)
            for row in zip(
                ids,
                ids,
                (draw.ts_ms / 1000.0).tolist(),
                profiles,
                self._campaign_ids[campaign].tolist(),
                pages.tolist(),
                propensity.tolist(),
                itertools.repeat(self.model_version),
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
