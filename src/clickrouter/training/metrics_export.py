"""Prometheus metrics of a watching trainer (``clickrouter train --watch --metrics-port``).

Names follow the predictor's (:mod:`clickrouter.serving.http.metrics`). Two
kinds: what the cycles of this process did (counters, durations) and what the
live store version holds (gauges, read from its manifest after every cycle and
at start): its campaigns by model kind and decision, and its held-out quality
summed over campaigns. Held-out quality per campaign lives in the manifest
(``clickrouter models show``); here it is one number per version, so 5,000
campaigns never become 5,000 time series.
"""

from __future__ import annotations

import math
import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clickrouter.modelstore import ModelStore
from clickrouter.training.report import CycleReport

# a cycle is seconds on a small store, minutes on 5,000 campaigns
CYCLE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
OUTCOMES = ("published", "unchanged", "failed")
DECISIONS = ("promoted", "kept", "failed", "unchanged")


class TrainerMetrics:
    """Every metric a watching trainer exports, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cycles = Counter(
            "clickrouter_training_cycles",
            "Training cycles by outcome (published, unchanged, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "clickrouter_training_cycle_duration_seconds",
            "Time of one training cycle that finished (published or unchanged)",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.models = Counter(
            "clickrouter_training_models",
            "Campaign models handled by cycles, by decision (promoted: new model published; "
            "kept: the guard kept the served one; failed: the fit raised; unchanged: no new data)",
            ["decision"],
            registry=self.registry,
        )
        self.stage = Gauge(
            "clickrouter_training_stage_seconds",
            "Seconds of each stage (plan, read, encode, fit, publish) of the last published cycle",
            ["stage"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "clickrouter_training_last_success_timestamp_seconds",
            "When a cycle last finished without error (Unix time)",
            registry=self.registry,
        )
        self.live_models = Gauge(
            "clickrouter_training_live_models",
            "Campaigns of the live store version by model kind and the decision that placed them",
            ["kind", "decision"],
            registry=self.registry,
        )
        self.live_calibration = Gauge(
            "clickrouter_training_live_calibration",
            "Live version: predicted / observed sales on the held-out slices, over all "
            "campaigns that have one with a sale (1 = calibrated; NaN: none yet)",
            registry=self.registry,
        )
        self.live_auc = Gauge(
            "clickrouter_training_live_roc_auc",
            "Live version: held-out ROC AUC per campaign, averaged weighted by sales "
            "(NaN: no campaign has both classes yet)",
            registry=self.registry,
        )
        self.live_created = Gauge(
            "clickrouter_training_live_version_timestamp_seconds",
            "When the live store version was published (Unix time)",
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # every series exists from the start
            self.cycles.labels(outcome)
        for decision in DECISIONS:
            self.models.labels(decision)
        self._live_labels: set[tuple[str, str]] = set()

    def cycle_done(self, report: CycleReport) -> None:
        self.cycles.labels("published" if report.published else "unchanged").inc()
        self.duration.observe(report.seconds)
        self.last_success.set(time.time())
        for decision in ("promoted", "kept", "failed"):
            self.models.labels(decision).inc(getattr(report, decision))
        self.models.labels("unchanged").inc(report.unchanged)
        for stage, seconds in report.stages.items():
            self.stage.labels(stage).set(seconds)

    def cycle_failed(self) -> None:
        self.cycles.labels("failed").inc()

    def read_live(self, store: ModelStore) -> None:
        """The live version's gauges, from its manifest (nothing when the store is empty)."""
        version = store.current()
        if version is None:
            return
        manifest = store.manifest(version)
        records = manifest.get("campaigns", {}) if isinstance(manifest, dict) else {}
        tally = Tally(
            (str(r.get("kind", "?")), str(r.get("decision", "?")))
            for r in records.values()
            if isinstance(r, dict)
        )
        for labels in self._live_labels - set(tally):  # a kind/decision gone: 0, not stale
            self.live_models.labels(*labels).set(0)
        for labels, count in tally.items():
            self.live_models.labels(*labels).set(count)
        self._live_labels |= set(tally)
        calibration, auc = live_quality(records.values())
        self.live_calibration.set(calibration)
        self.live_auc.set(auc)
        self.live_created.set(_timestamp(manifest.get("created_at")))


def live_quality(records: Any) -> tuple[float, float]:
    """(calibration, sales-weighted ROC AUC) over the campaigns' held-out metrics."""
    predicted = observed = auc_sum = auc_weight = 0.0
    for record in records:
        metrics = record.get("metrics") if isinstance(record, dict) else None
        if not isinstance(metrics, dict):
            continue
        positives = float(metrics.get("positives") or 0)
        if positives > 0 and metrics.get("predicted_sales") is not None:
            predicted += float(metrics["predicted_sales"])
            observed += positives
        if metrics.get("roc_auc") is not None and positives > 0:
            auc_sum += float(metrics["roc_auc"]) * positives
            auc_weight += positives
    calibration = predicted / observed if observed else math.nan
    return calibration, auc_sum / auc_weight if auc_weight else math.nan


def _timestamp(text: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return math.nan
