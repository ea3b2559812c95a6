"""The predictor's own view, read from its Prometheus ``/metrics`` route."""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

DECIDE_ROUTE = "/v1/decide"


@dataclass
class ServerSnapshot:
    """Cumulative counters at one scrape."""

    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    decisions: float = 0.0
    failed: float = 0.0  # decide responses with a 5xx status
    reloads_ok: float = 0.0
    reloads_rejected: float = 0.0
    version: str = ""


def scrape(base_url: str, timeout: float = 2.0) -> ServerSnapshot:
    with urllib.request.urlopen(base_url + "/metrics", timeout=timeout) as response:
        text = response.read().decode()
    snapshot = ServerSnapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _take(snapshot, sample.name, sample.labels, sample.value)
    return snapshot


def _take(snap: ServerSnapshot, name: str, labels: dict[str, str], value: float) -> None:
    route = labels.get("route")
    if name == "clickrouter_http_request_duration_seconds_bucket" and route == DECIDE_ROUTE:
        snap.buckets[float(labels["le"])] = value
    elif name == "clickrouter_http_responses_total" and route == DECIDE_ROUTE:
        snap.decisions += value if labels.get("status") == "200" else 0.0
        snap.failed += value if labels.get("status", "").startswith("5") else 0.0
    elif name == "clickrouter_model_reloads_total":
        if labels.get("outcome") == "ok":
            snap.reloads_ok = value
        else:
            snap.reloads_rejected = value
    elif name == "clickrouter_model_info" and value == 1:
        snap.version = labels.get("version", "")


def quantile(buckets: dict[float, float], q: float) -> float:
    """Quantile ``q`` of a cumulative histogram, interpolated within its bucket (seconds)."""
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0.0
    if total <= 0:
        return math.nan
    target, lower, below = q * total, 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= target:
            if math.isinf(edge):
                return lower
            share = (target - below) / max(count - below, 1e-12)
            return lower + share * (edge - lower)
        lower, below = edge, count
    return lower


def delta(new: dict[float, float], old: dict[float, float]) -> dict[float, float]:
    """The histogram of what happened between two scrapes."""
    return {edge: count - old.get(edge, 0.0) for edge, count in new.items()}
