"""Prometheus metrics of a long-running consumer (``clickrouter consume --metrics-port``).

Names follow the predictor's (:mod:`clickrouter.serving.http.metrics`):
``clickrouter_`` prefix, ``_total`` counters, ``_seconds`` durations. The
ingestion counters are the consumer's committed totals (kept in the dataset
manifest, so they survive restarts); they are read from a snapshot the
consumer thread takes after every step, so a scrape never touches the
consumer's own structures. The backlog (events not yet read, the age of the
oldest of them) is measured at scrape time from the source itself.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from clickrouter.errors import InvalidInput
from clickrouter.eventlog import SEGMENT_RE

# a commit writes Parquet files, the state and the manifest, each fsynced
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DEAD_LETTER_REASONS = (
    "empty_line",
    "malformed_json",
    "invalid_event",
    "bad_campaign_id",
    "future_event",
)
# counters of ConsumerManager.stats(): (stats key, metric name, help)
COUNTERS = (
    ("events_read", "clickrouter_consumer_events_read", "Events read and joined"),
    (
        "records_labelled",
        "clickrouter_consumer_records_labelled",
        "Labelled records produced (a click with its outcome)",
    ),
    (
        "positives_labelled",
        "clickrouter_consumer_sales_labelled",
        "Labelled records with a sale (label 1)",
    ),
    ("duplicates", "clickrouter_consumer_duplicates", "Duplicate events dropped"),
    (
        "late_sales",
        "clickrouter_consumer_late_sales",
        "Sales that arrived after their click's window closed (kept aside, not labelled)",
    ),
    (
        "late_clicks",
        "clickrouter_consumer_late_clicks",
        "Clicks older than the allowed lateness (kept aside, not labelled)",
    ),
    ("dead_lettered", "clickrouter_consumer_dead_letters_committed", "Dead letters committed"),
    ("commits", "clickrouter_consumer_commits", "Atomic dataset commits"),
)
GAUGES = (
    ("pending", "clickrouter_consumer_pending_clicks", "Clicks waiting for a sale or their window"),
    ("orphan_sales", "clickrouter_consumer_orphan_sales", "Sales waiting for their click"),
    ("records_held", "clickrouter_consumer_records_held", "Labelled records held for fuller files"),
)
# counting newlines beyond this many unread bytes per scrape would make the
# scrape as slow as the backlog is large: the rest is extrapolated
SCAN_LIMIT_BYTES = 32 << 20
_TS = re.compile(rb'"ts"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def dead_letter_reason(reason: str) -> str:
    """One of :data:`DEAD_LETTER_REASONS` for a dead letter's free-text reason."""
    if reason.startswith("empty line"):
        return "empty_line"
    if reason.startswith("malformed JSON"):
        return "malformed_json"
    if reason.startswith("event time beyond"):
        return "future_event"
    if "campaign_id" in reason and "partition" in reason:
        return "bad_campaign_id"
    return "invalid_event"


class Backlog(Protocol):
    def measure(self, position: Mapping[str, Any]) -> tuple[int, float | None]:
        """Events not yet read after ``position``, and the time of the oldest (None: none)."""
        ...


class LocalBacklog:
    """Unread lines of an event-log directory, after the consumer's offsets.

    Lines are counted in the unread bytes (up to :data:`SCAN_LIMIT_BYTES`,
    extrapolated beyond); the oldest is the earliest ``ts`` among each
    writer's first unread line.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def measure(self, position: Mapping[str, Any]) -> tuple[int, float | None]:
        offsets = {str(k): int(v) for k, v in position.get("segments", {}).items()}
        unread: list[tuple[Path, int, int]] = []
        with os.scandir(self.directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if SEGMENT_RE.match(entry.name):
                    start = offsets.get(entry.name, 0)
                    size = entry.stat().st_size
                    if size > start:
                        unread.append((Path(entry.path), start, size))
        events, scanned, total = 0, 0, sum(size - start for _, start, size in unread)
        oldest: float | None = None
        seen_writers: set[str] = set()
        for path, start, _size in unread:
            writer = path.name.rsplit(".", 2)[0]
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:  # read to its end and removed meanwhile
                continue
            with fh:
                fh.seek(start)
                if writer not in seen_writers:
                    seen_writers.add(writer)
                    oldest = _older(oldest, _first_ts(fh.readline()))
                    fh.seek(start)
                while scanned < SCAN_LIMIT_BYTES:
                    block = fh.read(min(1 << 20, SCAN_LIMIT_BYTES - scanned))
                    if not block:
                        break
                    events += block.count(b"\n")
                    scanned += len(block)
        if scanned and scanned < total:
            events = round(events * total / scanned)
        return events, oldest


class RedisBacklog:
    """Entries of the stream not yet delivered to the consumer group (``XINFO
    GROUPS`` lag); the oldest is the first of them, timed by its entry id."""

    def __init__(self, client: Any, stream: str, group: str) -> None:
        self.client, self.stream, self.group = client, stream, group

    def measure(self, position: Mapping[str, Any]) -> tuple[int, float | None]:
        groups = self.client.xinfo_groups(self.stream)
        info = next((g for g in groups if _text(g.get("name")) == self.group), None)
        if info is None:
            return 0, None
        last = _text(info.get("last-delivered-id")) or "0-0"
        lag = info.get("lag")
        if lag is None:  # Redis cannot tell after deletions: count what follows
            lag = len(self.client.xrange(self.stream, f"({last}", "+", count=1_000_000))
        if not lag:
            return 0, None
        first = self.client.xrange(self.stream, f"({last}", "+", count=1)
        oldest = int(_text(first[0][0]).split("-")[0]) / 1000.0 if first else None
        return int(lag), oldest


def backlog_of(source: Any) -> Backlog | None:
    """How to measure ``source`` 's backlog (None for a source this cannot read)."""
    from clickrouter.stream.local_source import LocalLogSource
    from clickrouter.stream.redis_stream import RedisStreamSource

    if isinstance(source, LocalLogSource):
        return LocalBacklog(source.directory)
    if isinstance(source, RedisStreamSource):
        return RedisBacklog(source.client, source.stream, source.group)
    return None


class ConsumerMetrics:
    """Every metric a consumer exports, in a registry of its own."""

    def __init__(self, backlog: Backlog | None = None) -> None:
        self.backlog = backlog
        self.registry = CollectorRegistry()
        self.commit_duration = Histogram(
            "clickrouter_consumer_commit_duration_seconds",
            "Time of one atomic commit (records, state, offsets), acknowledgement included",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "clickrouter_consumer_dead_letters",
            "Lines refused into the dead-letter sidecar, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in DEAD_LETTER_REASONS:  # every series exists from the start
            self.dead_letters.labels(reason)
        self.registry.register(_Snapshot(self))
        self._lock = threading.Lock()
        self._stats: dict[str, int] = {}
        self._position: dict[str, Any] | None = None
        self._last_commit: float | None = None

    def after_step(self, stats: Mapping[str, int], position: Mapping[str, Any]) -> None:
        """The consumer's counters and read position now (from the consumer thread)."""
        with self._lock:
            self._stats = dict(stats)
            self._position = dict(position)

    def committed(self, seconds: float, dead_letters: list[bytes]) -> None:
        """One commit took ``seconds`` and made ``dead_letters`` durable."""
        self.commit_duration.observe(seconds)
        for letter in dead_letters:
            try:
                reason = str(json.loads(letter).get("reason", ""))
            except (ValueError, AttributeError):
                reason = ""
            self.dead_letters.labels(dead_letter_reason(reason)).inc()
        with self._lock:
            self._last_commit = time.time()

    def snapshot(self) -> tuple[dict[str, int], dict[str, Any] | None, float | None]:
        with self._lock:
            return dict(self._stats), self._position, self._last_commit


class _Snapshot:
    """The counters, gauges and backlog, read at scrape time."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        stats, position, last_commit = self.metrics.snapshot()
        for key, name, text in COUNTERS:
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], stats.get(key, 0))
            yield counter
        for key, name, text in GAUGES:
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], stats.get(key, 0))
            yield gauge
        if last_commit is not None:
            yield GaugeMetricFamily(
                "clickrouter_consumer_last_commit_timestamp_seconds",
                "When the last commit finished (Unix time)",
                value=last_commit,
            )
        yield from self._lag(position)

    def _lag(self, position: dict[str, Any] | None) -> Iterator[Metric]:
        backlog = self.metrics.backlog
        if backlog is None or position is None:
            return
        try:
            events, oldest = backlog.measure(position)
        except Exception:  # a broker down or a file gone must not fail the scrape
            yield GaugeMetricFamily(
                "clickrouter_consumer_source_up",
                "1 when the source answered the last backlog measurement",
                value=0,
            )
            return
        yield GaugeMetricFamily(
            "clickrouter_consumer_source_up",
            "1 when the source answered the last backlog measurement",
            value=1,
        )
        yield GaugeMetricFamily(
            "clickrouter_consumer_lag_events",
            "Events in the source not yet read by this consumer",
            value=events,
        )
        age = 0.0 if oldest is None or events == 0 else max(0.0, time.time() - oldest)
        yield GaugeMetricFamily(
            "clickrouter_consumer_lag_seconds",
            "Age of the oldest event not yet read (0 when caught up)",
            value=age,
        )


def serve_metrics(registry: CollectorRegistry, spec: str, option: str) -> None:
    """Serve ``registry`` on ``[HOST:]PORT`` (host default 127.0.0.1) in a daemon thread."""
    host, port = parse_listen(spec, option)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InvalidInput(f"{option} {spec}: cannot listen: {exc.strerror or exc}") from None


def parse_listen(spec: str, option: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` -> (host, port); loopback unless a host is given."""
    host, sep, port_text = spec.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535 or (sep and not host):
        raise InvalidInput(f"{option}: expected PORT or HOST:PORT (port 1-65535), got {spec!r}")
    return host, int(port_text)


def _first_ts(line: bytes) -> float | None:
    match = _TS.search(line)
    if match is None:
        return None
    try:
        value = float(msgspec.json.decode(match.group(1)))
    except (msgspec.DecodeError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _older(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
