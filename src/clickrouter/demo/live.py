"""The live terminal view: what every stage is doing, refreshed every second.

Numbers come from where an operator would read them: throughput, latency
and reloads from the predictor's ``/metrics``; clicks, sales and revenue from
the event log; ingestion from the dataset's committed counters; training from
the trainer's cycle log.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from clickrouter.demo.eventlog import EventTail, simulated_ts
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.processes import ManagedProcess
from clickrouter.demo.scrape import ServerSnapshot, delta, quantile, scrape

RECENT_SECONDS = 15.0


@dataclass
class LiveStats:
    """Running totals of the demo, updated by :meth:`refresh`."""

    clicks: int = 0
    sales: int = 0
    revenue: float = 0.0
    expected: float = 0.0  # oracle expected revenue of the chosen offers
    sim_ts: float = math.nan
    rps: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    failed: float = 0.0
    reloads: float = 0.0
    version: str = ""
    ingested: int = 0
    labelled: int = 0
    positives: int = 0
    cycles: int = 0
    last_cycle: dict[str, Any] = field(default_factory=dict)
    recent: deque[tuple[float, int, float]] = field(default_factory=deque)

    def recent_per_1k(self) -> float:
        clicks = sum(c for _, c, _ in self.recent)
        return 1000.0 * sum(v for _, _, v in self.recent) / clicks if clicks else math.nan


class LiveMonitor:
    """Polls the stages and renders :class:`LiveStats` as a rich table."""

    def __init__(self, events: Path, data: Path, cycles: Path, scorer: OracleScorer) -> None:
        self.tail = EventTail(events)
        self.data, self.cycles, self.scorer = data, cycles, scorer
        self.stats = LiveStats()
        self._last: tuple[float, ServerSnapshot] | None = None
        self.started = time.monotonic()

    def refresh(self, url: str | None) -> LiveStats:
        self._events()
        if url is not None:
            self._server(url)
        self._ingestion()
        self._training()
        return self.stats

    def _events(self) -> None:
        clicks, sales = self.tail.poll()
        s = self.stats
        if clicks:
            chosen = self.scorer.world.offer_index(
                [c.campaign_id for c in clicks], [c.landing_page_id for c in clicks]
            )
            values = self.scorer.chosen_values([c.profile.to_dict() for c in clicks], chosen)
            s.clicks += len(clicks)
            s.expected += float(values.sum())
            s.sim_ts = max(simulated_ts(c) for c in clicks[-50:])
            now = time.monotonic()
            s.recent.append((now, len(clicks), float(values.sum())))
            while s.recent and s.recent[0][0] < now - RECENT_SECONDS:
                s.recent.popleft()
        s.sales += len(sales)
        s.revenue += sum(x.revenue for x in sales)

    def _server(self, url: str) -> None:
        try:
            snap = scrape(url)
        except OSError:
            return
        now = time.monotonic()
        s = self.stats
        s.failed, s.reloads, s.version = snap.failed, snap.reloads_ok, snap.version
        if self._last is not None:
            then, old = self._last
            s.rps = (snap.decisions - old.decisions) / max(now - then, 1e-9)
            recent = delta(snap.buckets, old.buckets)
            s.p50_ms = 1000 * quantile(recent, 0.5)
            s.p99_ms = 1000 * quantile(recent, 0.99)
        self._last = (now, snap)

    def _ingestion(self) -> None:
        path = self.data / "_state" / "manifest.json"
        try:
            counters = json.loads(path.read_text()).get("counters", {})
        except (OSError, ValueError):
            return
        self.stats.ingested = int(counters.get("events_read", 0))
        self.stats.labelled = int(counters.get("records_labelled", 0))
        self.stats.positives = int(counters.get("positives_labelled", 0))

    def _training(self) -> None:
        if not self.cycles.exists():
            return
        lines = self.cycles.read_text().splitlines()
        self.stats.cycles = len(lines)
        if lines:
            self.stats.last_cycle = json.loads(lines[-1])

    def render(self, processes: list[ManagedProcess], phase: str) -> Table:
        s = self.stats
        table = Table(title=f"clickrouter demo - {phase}", show_header=False, min_width=72)
        table.add_column("what", style="bold")
        table.add_column("value")
        sim = datetime.fromtimestamp(s.sim_ts, UTC) if math.isfinite(s.sim_ts) else None
        elapsed = time.monotonic() - self.started
        table.add_row(
            "wall / simulated", f"{elapsed:6.0f} s / {sim:%a %d %b %H:%M}" if sim else "-"
        )
        table.add_row("requests/s", f"{s.rps:,.0f}")
        table.add_row("latency p50 / p99", f"{s.p50_ms:.2f} ms / {s.p99_ms:.2f} ms")
        table.add_row("failed requests", f"{s.failed:.0f}")
        table.add_row("clicks / sales", f"{s.clicks:,} / {s.sales:,}")
        table.add_row("revenue so far", f"{s.revenue:,.2f} (realised)")
        per_1k = 1000 * s.expected / s.clicks if s.clicks else math.nan
        table.add_row(
            "expected rev / 1k clicks", f"{per_1k:,.1f} all, {s.recent_per_1k():,.1f} recent"
        )
        table.add_row(
            "events ingested",
            f"{s.ingested:,} ({s.labelled:,} labelled, {s.positives:,} sales)",
        )
        last = s.last_cycle
        mix = ", ".join(f"{k} {v}" for k, v in sorted(last.get("model_kinds", {}).items()))
        table.add_row("training cycles", f"{s.cycles} ({mix})" if mix else str(s.cycles))
        table.add_row("model version", f"{s.version} ({s.reloads:.0f} reloads)")
        alive = " ".join(f"{p.name}:{'up' if p.running() else 'exited'}" for p in processes)
        table.add_row("processes", alive)
        return table
