"""The demo's report: ``report.json`` plus ``report.html`` with PNG plots.

Sources: the event log (every decision and sale; the source of truth), the
world's oracle (what each decision was worth), the drivers' reports
(failed requests, client-side latency), the predictor's final ``/metrics``
(reloads, server-side latency), the trainer's cycle log and the live model
version's manifest (per-campaign held-out AUC and calibration).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.eventlog import EventTables, read_tables
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.revenue import (
    curves,
    final_rows,
    policy_values,
    sample_rows,
    summary,
    uplift_by_campaign,
)
from clickrouter.demo.stages import Paths
from clickrouter.sim.world import World

FINAL_SHARE = 0.25  # "after learning": the last quarter of simulated time
LATENCY_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def build_report(
    paths: Paths, config: DemoConfig, scorer: OracleScorer, run: dict[str, Any]
) -> dict[str, Any]:
    """Compute every number of the report and write report.json, the plots and report.html."""
    tables = read_tables(paths.events)
    if len(tables) == 0:
        raise ValueError("the event log holds no click: nothing to report")
    sample = sample_rows(len(tables), config.oracle_sample, config.seed)
    values = policy_values(tables, scorer, sample, config.seed)
    version, records = live_records(paths.store)
    report = {
        "config": config.to_dict(),
        "run": run,
        "events": events_section(tables, values["live_all"]),
        "pages": pages_section(tables, scorer.world),
        "revenue": {
            "curves": curves(tables, values, sample, config.bins),
            **summary(values, tables.sim_ts[sample], FINAL_SHARE),
            "final_by_campaign": final_by_campaign(
                tables, values, sample, records, config.top_campaigns
            ),
        },
        "traffic": traffic_section(paths.drivers, run),
        "training": training_section(paths.cycles, tables),
        "models": model_quality(version, records, tables, config.top_campaigns),
    }
    write_json(paths.out / "report.json", report)
    from clickrouter.demo.html import write_html
    from clickrouter.demo.plots import write_plots

    images = write_plots(report, paths.out / "img")
    write_html(report, images, paths.out / "report.html")
    return report


def events_section(tables: EventTables, live_values: np.ndarray) -> dict[str, Any]:
    versions = sorted(set(tables.model_version))
    return {
        "clicks": len(tables),
        "sales": tables.sales,
        "orphan_sales": tables.orphan_sales,
        "revenue": float(tables.sale_revenue.sum()),
        "expected_revenue": float(live_values.sum()),
        "model_versions_served": len(versions),
        "sim_start": float(tables.sim_ts.min()),
        "sim_end": float(tables.sim_ts.max()),
    }


def pages_section(tables: EventTables, world: World) -> dict[str, Any]:
    """The world's offers, and how the live system spread its clicks over the pages."""
    campaigns = world.campaigns
    first = {c.id: c.pages[0].id for c in campaigns}
    unknown = world.offer_index(tables.campaign_id, tables.landing_page_id) < 0
    shown = set(zip(tables.campaign_id, tables.landing_page_id, strict=True))
    off_first = sum(
        page != first.get(cid)
        for cid, page in zip(tables.campaign_id, tables.landing_page_id, strict=True)
    )
    return {
        "campaigns": len(campaigns),
        "offers": len(world.offers),
        "campaigns_with_several_pages": sum(len(c.pages) > 1 for c in campaigns),
        "offers_shown": len(shown),
        "campaigns_shown": len({cid for cid, _ in shown}),
        # clicks sent to a page other than their campaign's first in the catalogue
        "share_off_first_page": off_first / len(tables) if len(tables) else 0.0,
        # offers the world lacks (must be 0): the revenue counts them as earning nothing
        "clicks_on_unknown_offers": int(unknown.sum()),
    }


def traffic_section(drivers_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Totals of the driver reports and the latency every driver measured client-side."""
    reports = [json.loads(p.read_text()) for p in sorted(drivers_dir.glob("driver-*.json"))]
    keys = ("requests", "decisions", "no_fill", "errors", "sales", "postbacks_sent")
    totals: dict[str, Any] = {k: sum(r[k] for r in reports) for k in keys}
    totals["postback_errors"] = sum(r["postback_errors"] for r in reports)
    totals["failed_requests"] = totals["errors"] + totals["postback_errors"]
    wall = max((r["wall_seconds"] for r in reports), default=0.0)
    totals["wall_seconds"] = wall
    totals["decisions_per_second"] = totals["decisions"] / wall if wall else 0.0
    latencies = [np.load(p) for p in sorted(drivers_dir.glob("driver-*.latency.npy"))]
    seconds = np.concatenate(latencies) if latencies else np.zeros(0, np.float32)
    totals["latency_ms"] = latency_summary(seconds)
    totals["latency_histogram"] = latency_histogram(seconds)
    totals["server"] = run.get("server", {})
    return totals


def latency_summary(seconds: np.ndarray) -> dict[str, float | None]:
    if not len(seconds):
        return {}
    ms = seconds.astype(np.float64) * 1000
    out: dict[str, float | None] = {
        f"p{q * 100:g}": float(np.quantile(ms, q)) for q in LATENCY_QUANTILES
    }
    out["mean"], out["max"] = float(ms.mean()), float(ms.max())
    return out


def latency_histogram(seconds: np.ndarray) -> dict[str, list[float]]:
    """Counts in log-spaced bins from 50 us to 1 s (the plot's data)."""
    edges = np.logspace(math.log10(5e-5), 0, 41)
    counts = np.histogram(np.clip(seconds, edges[0], edges[-1]), edges)[0]
    return {"edges_s": edges.tolist(), "counts": counts.astype(float).tolist()}


def training_section(cycles_path: Path, tables: EventTables) -> dict[str, Any]:
    """Cycle counts and history; ``sim_ts``: when a cycle went live on the simulated clock
    (interpolated from the clicks' wall and simulated times, exact even when the
    drivers fell behind their pace)."""
    cycles = (
        [json.loads(line) for line in cycles_path.read_text().splitlines()]
        if cycles_path.exists()
        else []
    )
    keep = (
        "version",
        "published",
        "trained",
        "promoted",
        "kept",
        "base_rate",
        "failed",
        "rows",
        "seconds",
        "finished_at",
        "model_kinds",
    )
    return {
        "cycles": len(cycles),
        "published": sum(bool(c.get("published")) for c in cycles),
        "failed_fits": sum(int(c.get("failed", 0)) for c in cycles),
        "mean_cycle_seconds": float(np.mean([c["seconds"] for c in cycles])) if cycles else None,
        "history": [{k: c.get(k) for k in keep} | {"sim_ts": _sim_at(c, tables)} for c in cycles],
    }


def _sim_at(cycle: dict[str, Any], tables: EventTables) -> float | None:
    wall = cycle.get("finished_at")
    if wall is None or not len(tables) or not tables.wall_ts.min() <= wall <= tables.wall_ts.max():
        return None
    order = np.argsort(tables.wall_ts, kind="stable")
    return float(np.interp(wall, tables.wall_ts[order], tables.sim_ts[order]))


def live_records(store_dir: Path) -> tuple[str | None, dict[str, Any]]:
    """The live version and its manifest's per-campaign records."""
    from clickrouter.modelstore import ModelStore

    store = ModelStore(store_dir)
    version = store.current()
    return version, (store.manifest(version).get("campaigns", {}) if version else {})


def final_by_campaign(
    tables: EventTables,
    values: dict[str, np.ndarray],
    sample: np.ndarray,
    records: dict[str, Any],
    top: int,
) -> list[dict[str, Any]]:
    """The final quarter's uplift over the best single offer, split by campaign shown.

    Each row also gives the campaign's model kind in the live version.
    """
    final = final_rows(tables.sim_ts[sample], FINAL_SHARE)
    shown = np.asarray(tables.campaign_id, dtype=object)[sample][final]
    rows = uplift_by_campaign(shown, values["live"][final], values["single"][final], top)
    for row in rows:
        row["kind"] = (
            records.get(row["campaign_id"], {}).get("kind") if row["campaign_id"] else None
        )
    return rows


def model_quality(
    version: str | None, records: dict[str, Any], tables: EventTables, top: int
) -> dict[str, Any]:
    """Held-out metrics of the live version's models for the most-chosen campaigns."""
    ids, counts = np.unique(np.array(tables.campaign_id, dtype=object), return_counts=True)
    sales: dict[str, int] = {}
    for cid, revenue in zip(tables.campaign_id, tables.sale_revenue, strict=True):
        sales[cid] = sales.get(cid, 0) + int(revenue > 0)
    rows = []
    for i in np.argsort(-counts, kind="stable")[:top]:
        cid = str(ids[i])
        record = records.get(cid, {})
        metrics = record.get("metrics") or {}
        rows.append(
            {
                "campaign_id": cid,
                "clicks": int(counts[i]),
                "sales": int(sales.get(cid, 0)),
                "kind": record.get("kind"),
                "decision": record.get("decision"),
                "holdout_rows": metrics.get("rows"),
                "holdout_sales": metrics.get("positives"),
                "roc_auc": metrics.get("roc_auc"),
                "calibration": metrics.get("calibration"),
            }
        )
    kinds: dict[str, int] = {}
    for record in records.values():
        kinds[str(record.get("kind"))] = kinds.get(str(record.get("kind")), 0) + 1
    return {"version": version, "model_kinds": kinds, "top": rows}


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(value), indent=1, default=_jsonable, allow_nan=False))
    tmp.replace(path)


def _finite(value: Any) -> Any:
    """NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
