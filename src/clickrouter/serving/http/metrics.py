"""Prometheus metrics of one predictor process, in a registry of its own.

Decisions per campaign are counted in a plain dict (one increment per
decision) and exported for the ``TOP_CAMPAIGNS`` busiest campaigns only, plus
an ``_other`` series, so 5,000 campaigns never become 5,000 time series.

With several worker processes (``multiprocess_dir`` set, and the same path in
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported), counters,
histograms and gauges live in files shared by the workers, so a scrape of any
worker reports the totals of all; the decision and event-sink series are the
answering worker's own and carry its ``worker`` label.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from clickrouter.serving.engine.holder import LiveBank

TOP_CAMPAIGNS = 50
OTHER = "_other"
# request latencies of a healthy predictor sit between 50 us and a few ms
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DecisionCounts:
    """Decisions per campaign id; exported for the busiest campaigns only."""

    def __init__(self, top: int = TOP_CAMPAIGNS) -> None:
        self.top = top
        self.counts: dict[str, int] = {}
        self.worker = str(os.getpid())

    def add(self, campaign_id: str) -> None:
        self.counts[campaign_id] = self.counts.get(campaign_id, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "clickrouter_decisions",
            f"Decisions per campaign (the {self.top} busiest; the rest summed as {OTHER})",
            labels=["worker", "campaign_id"],
        )
        ranked = sorted(self.counts.items(), key=lambda kv: kv[1], reverse=True)
        for campaign_id, count in ranked[: self.top]:
            family.add_metric([self.worker, campaign_id], count)
        family.add_metric([self.worker, OTHER], sum(count for _, count in ranked[self.top :]))
        yield family


class RequestSeries:
    """The latency histogram and response counter of one (route, status).

    Updates go straight to prometheus_client's value objects: its
    ``Histogram.observe`` walks the buckets in Python and both metrics check
    observability on every call, a cost paid on every request; a bisect and
    three increments do the same work for a fraction of it. Same buckets, same values, in
    one process or in the workers' shared files (``tests/serving/http`` compares
    the exposition with the library's own path).
    """

    def __init__(self, histogram: Histogram, counter: Counter) -> None:
        self._bounds: list[float] = list(histogram._upper_bounds)  # ends with +Inf
        self._buckets: list[Any] = histogram._buckets
        self._sum: Any = histogram._sum
        self._count: Any = counter._value

    def observe(self, seconds: float) -> None:
        self._sum.inc(seconds)
        self._buckets[bisect_left(self._bounds, seconds)].inc(1)  # first bound >= seconds
        self._count.inc(1)


class SinkStats:
    """Event-sink counters read at scrape time."""

    def __init__(
        self, lag: Callable[[], int], written: Callable[[], int], dropped: Callable[[], int]
    ) -> None:
        self.lag = lag
        self.written = written
        self.dropped = dropped

    def collect(self) -> Iterator[Metric]:
        worker = str(os.getpid())
        lag = GaugeMetricFamily(
            "clickrouter_event_queue_lag", "Events accepted but not yet written", labels=["worker"]
        )
        lag.add_metric([worker], self.lag())
        written = CounterMetricFamily(
            "clickrouter_events_written", "Events written to the event sink", labels=["worker"]
        )
        written.add_metric([worker], self.written())
        dropped = CounterMetricFamily(
            "clickrouter_events_dropped",
            "Events lost: emitted but still not writable when the sink closed",
            labels=["worker"],
        )
        dropped.add_metric([worker], self.dropped())
        yield lag
        yield written
        yield dropped


class DurabilityStats:
    """What the event sink could not make durable, read at scrape time."""

    def __init__(
        self,
        spooled: Callable[[], int],
        refused: Callable[[], int],
        errors: Callable[[], int],
        forward_errors: Callable[[], int],
    ) -> None:
        self.spooled = spooled
        self.refused = refused
        self.errors = errors
        self.forward_errors = forward_errors

    def collect(self) -> Iterator[Metric]:
        worker = str(os.getpid())
        spooled = GaugeMetricFamily(
            "clickrouter_events_spooled",
            "Events on local disk waiting for the broker (redis events)",
            labels=["worker"],
        )
        spooled.add_metric([worker], self.spooled())
        refused = CounterMetricFamily(
            "clickrouter_events_refused",
            "Events not persisted whose answers were refused with 503",
            labels=["worker"],
        )
        refused.add_metric([worker], self.refused())
        errors = CounterMetricFamily(
            "clickrouter_event_sink_errors",
            "Failed writes of the event sink (each refused or retried)",
            labels=["worker"],
        )
        errors.add_metric([worker], self.errors())
        forward_errors = CounterMetricFamily(
            "clickrouter_event_forward_errors",
            "Failed attempts to hand spooled events to the broker (retried)",
            labels=["worker"],
        )
        forward_errors.add_metric([worker], self.forward_errors())
        yield spooled
        yield refused
        yield errors
        yield forward_errors


class ServiceMetrics:
    """Every metric the HTTP service exports."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clickrouter_http_request_duration_seconds",
            "Time from request start to the last response byte handed to the server",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.responses = Counter(
            "clickrouter_http_responses",
            "Responses by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.decisions = DecisionCounts()
        self.registry.register(self.decisions)
        self.model_info = Gauge(
            "clickrouter_model_info",
            "The model version in service (value 1)",
            ["version", "store_version"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.model_campaigns = Gauge(
            "clickrouter_model_campaigns",
            "Campaigns in the live bank",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.model_loaded = Gauge(
            "clickrouter_model_loaded_timestamp_seconds",
            "When the live model version was loaded",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "clickrouter_model_reloads",
            "Model loads by outcome (ok, rejected)",
            ["outcome"],
            registry=self.registry,
        )
        self.versions_skipped = Counter(
            "clickrouter_model_versions_skipped",
            "Store versions passed over at start-up because they failed to load "
            "(the one CURRENT names, then any older one tried before one loaded)",
            registry=self.registry,
        )
        self.postbacks_refused = Counter(
            "clickrouter_postbacks_refused",
            "Postbacks refused before the event log, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "clickrouter_http_refusals",
            "Connections and requests refused by the server limits, by reason",
            ["reason"],
            registry=self.registry,
        )
        self._info_labels: tuple[str, str] | None = None
        self.sink_stats: SinkStats | None = None
        self.durability_stats: DurabilityStats | None = None

    def refused(self, reason: str) -> None:
        """Count one refusal of the server limits (see limits.py)."""
        self.refusals.labels(reason).inc()

    def request_series(self, route: str, status: int) -> RequestSeries:
        """Where answers of ``route`` with ``status`` are counted and timed."""
        return RequestSeries(self.latency.labels(route), self.responses.labels(route, str(status)))

    def track_sink(
        self, lag: Callable[[], int], written: Callable[[], int], dropped: Callable[[], int]
    ) -> None:
        self.sink_stats = SinkStats(lag, written, dropped)
        self.registry.register(self.sink_stats)

    def track_durability(
        self,
        spooled: Callable[[], int],
        refused: Callable[[], int],
        errors: Callable[[], int],
        forward_errors: Callable[[], int],
    ) -> None:
        self.durability_stats = DurabilityStats(spooled, refused, errors, forward_errors)
        self.registry.register(self.durability_stats)

    def model_swapped(self, new: LiveBank, old: LiveBank | None) -> None:
        if self._info_labels is not None:  # 0, not removed: shared files keep every series
            self.model_info.labels(*self._info_labels).set(0)
        self._info_labels = (new.version, new.store_version or "")
        self.model_info.labels(*self._info_labels).set(1)
        self.model_campaigns.set(len(new.bank.campaigns))
        self.model_loaded.set(new.loaded_at)
        self.reloads.labels("ok").inc()

    def model_rejected(self, exc: BaseException) -> None:
        self.reloads.labels("rejected").inc()

    def version_skipped(self, version: str, reason: str) -> None:
        self.versions_skipped.inc()

    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # every worker's files, then this worker's own series
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        registry.register(self.decisions)
        if self.sink_stats is not None:
            registry.register(self.sink_stats)
        if self.durability_stats is not None:
            registry.register(self.durability_stats)
        return generate_latest(registry)
