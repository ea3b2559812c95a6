"""``report.html`` (self-contained page next to its PNGs) and the terminal summary."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.table import Table

from clickrouter.demo.plots import LABELS
from clickrouter.demo.revenue import POLICIES


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def headline_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(policy, per 1k clicks over the whole run, over its final quarter)."""
    overall, final = report["revenue"]["overall"]["per_1k"], report["revenue"]["final"]["per_1k"]
    return [(LABELS[p], f"{overall[p]:,.1f}", f"{final[p]:,.1f}") for p in POLICIES]


def ratio_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    revenue = report["revenue"]
    out = []
    for key, label, spec in (
        ("uplift_over_random", "uplift over uniform random", "+.1%"),
        ("uplift_over_single", "uplift over best single offer", "+.1%"),
        ("uplift_over_first_page", "uplift over right campaign, first page", "+.1%"),
        ("share_of_oracle", "share of the oracle", ".1%"),  # a share, not a change: no sign
    ):
        overall, final = revenue["overall"][key], revenue["final"][key]
        out.append((label, format(overall, spec), format(final, spec)))
    return out


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title="expected revenue per 1,000 clicks (oracle values, same requests)")
    table.add_column("")
    table.add_column("whole run", justify="right")
    table.add_column("final quarter", justify="right")
    for row in [*headline_rows(report), *ratio_rows(report)]:
        table.add_row(*row)
    traffic, server = report["traffic"], report["run"]["server"]
    latency = traffic["latency_ms"]
    table.caption = (
        f"{traffic['decisions']:,} decisions at {traffic['decisions_per_second']:,.0f}/s, "
        f"predictor p50 {server.get('latency_p50_ms') or 0:.2f} ms, "
        f"p99 {server.get('latency_p99_ms') or 0:.2f} ms (client round trip "
        f"p50 {latency.get('p50', 0):.2f} ms, p99 {latency.get('p99', 0):.2f} ms, "
        f"{_per_write(report)}), failed requests {traffic['failed_requests']}, "
        f"reloads {report['run']['server']['reloads_ok']:.0f}, "
        f"training cycles {report['training']['cycles']}"
    )
    return table


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = (
    "body{font-family:sans-serif;max-width:960px;margin:2em auto}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"
)


def write_html(report: dict[str, Any], images: dict[str, str], path: Path) -> None:
    sections = [
        "<h1>clickrouter demo report</h1>",
        _intro(report),
        *_revenue_section(report, images["revenue"]),
        *_predictor_section(report, images["latency"]),
        *_training_section(report),
        "<h2>Knobs</h2>",
        _table(["knob", "value"], [[k, v] for k, v in report["config"].items()]),
    ]
    head = f"<meta charset='utf-8'><title>clickrouter demo</title><style>{STYLE}</style>"
    path.write_text(
        f"<!doctype html><html><head>{head}</head><body>{''.join(sections)}</body></html>"
    )


def _intro(report: dict[str, Any]) -> str:
    config, events, pages = report["config"], report["events"], report["pages"]
    days = (events["sim_end"] - events["sim_start"]) / 86400
    return (
        f"<p>{config['campaigns']:,} campaigns running {pages['offers']:,} offers (landing "
        f"pages; {pages['campaigns_with_several_pages']:,} campaigns run more than one), "
        f"{events['clicks']:,} clicks over {days:.1f} "
        f"simulated days (speed-up x{config['speedup']:g}), policy "
        f"{html.escape(_policy(config))}, a training cycle "
        f"every {config['retrain_hours']:g} simulated hours, starting from a cold store (one "
        "base rate for every campaign).</p>"
    )


def _policy(config: dict[str, Any]) -> str:
    if config["policy"] == "epsilon-greedy":
        return f"epsilon-greedy (epsilon {config['epsilon']:g})"
    if config["policy"] in ("thompson", "gamma-thompson"):
        scale = config.get("thompson_scale", 1.0)
        spread = config.get("thompson_profile_spread", 0.0)
        kind = "Thompson sampling" if config["policy"] == "thompson" else "Gamma Thompson sampling"
        return f"{kind} (scale {scale:g}, profile spread {spread:g})"
    return str(config["policy"])


def _revenue_section(report: dict[str, Any], image: str) -> list[str]:
    events, pages = report["events"], report["pages"]
    scored = report["revenue"]["overall"]["clicks_scored"]
    rows = [list(r) for r in [*headline_rows(report), *ratio_rows(report)]]
    return [
        "<h2>Revenue</h2>",
        f'<img src="{image}" alt="revenue per 1,000 clicks over simulated time">',
        "<p>Expected revenue (true P(sale) x payout, from the world's oracle) per 1,000 "
        "clicks of the offer (campaign and landing page) each policy would show, on the "
        f"same logged requests ({scored:,} clicks scored against every offer).</p>",
        _table(["per 1,000 clicks", "whole run", "final quarter"], rows),
        "<p>The two <em>right campaign</em> rows send each request to the oracle's campaign "
        "without choosing its page: its first eligible page, or a uniformly random one. "
        "The gap from them to the oracle is what choosing the page earns once the campaign "
        "is right; a live system above the first-page row earns more than a perfect choice "
        "of campaign would on each campaign's first page.</p>",
        f"<p>Realised: {events['sales']:,} sales posted back, revenue "
        f"{events['revenue']:,.2f}; orphan sales {events['orphan_sales']}.</p>",
        f"<p>The live system showed {pages['offers_shown']:,} offers of "
        f"{pages['campaigns_shown']:,} campaigns; {pages['share_off_first_page']:.1%} of its "
        "clicks went to a page other than their campaign's first; "
        f"{pages['clicks_on_unknown_offers']:,} clicks named an offer the world does not "
        "have (counted as earning nothing).</p>",
        *_uplift_section(report),
    ]


def uplift_rows(report: dict[str, Any]) -> list[list[str]]:
    """The final quarter's uplift over the best single offer, per campaign shown."""
    rows = []
    for row in report["revenue"].get("final_by_campaign", []):
        name = row["campaign_id"] or f"{row['campaigns']:,} other campaigns"
        rows.append(
            [
                name,
                row["kind"] or "-",
                f"{row['click_share']:.1%}",
                f"{row['live_per_1k']:,.0f}",
                f"{row['single_per_1k']:,.0f}",
                f"{100 * row['uplift_points']:+.1f}",
            ]
        )
    return rows


def uplift_table(report: dict[str, Any], rows: int = 5) -> Table | None:
    """The campaigns that moved the final quarter's uplift most (terminal summary)."""
    found = uplift_rows(report)
    if not found:
        return None
    total = report["revenue"]["final"]["uplift_over_single"]
    table = Table(
        title=f"where the final quarter's uplift over the best single offer ({total:+.1%})"
        " comes from"
    )
    for header in ("campaign shown", "model", "clicks", "live / 1k", "single / 1k", "points"):
        table.add_column(header, justify="left" if header == "campaign shown" else "right")
    shown = found[:rows]
    if len(found) > rows:  # the rest in one row, so the points still add up
        rest = report["revenue"]["final_by_campaign"][rows:]
        clicks = sum(r["click_share"] for r in rest)
        points = sum(r["uplift_points"] for r in rest)
        n = sum(r["campaigns"] for r in rest)
        shown.append(
            [f"{n:,} other campaigns", "-", f"{clicks:.1%}", "", "", f"{100 * points:+.1f}"]
        )
    for row in shown:
        table.add_row(*row)
    return table


def _uplift_section(report: dict[str, Any]) -> list[str]:
    rows = uplift_rows(report)
    if not rows:
        return []
    total = report["revenue"]["final"]["uplift_over_single"]
    headers = [
        "campaign shown",
        "model (live version)",
        "share of clicks",
        "live per 1,000",
        "best single offer per 1,000 (same requests)",
        "points of uplift",
    ]
    return [
        "<h3>Where the final quarter's uplift over the best single offer comes from</h3>",
        "<p>Per campaign the live system showed in the final quarter (any of its pages): "
        "what its clicks earned, what the best single offer would have earned on the "
        "same requests, and the difference in points of the total uplift "
        f"({100 * total:+.1f} points; the rows add up to it).</p>",
        _table(headers, rows),
    ]


def _predictor_section(report: dict[str, Any], image: str) -> list[str]:
    traffic, server = report["traffic"], report["run"]["server"]
    counts = [
        traffic["decisions"],
        f"{traffic['decisions_per_second']:.0f}",
        traffic["failed_requests"],
        traffic["no_fill"],
        server.get("reloads_ok"),
        server.get("reloads_rejected"),
        report["events"]["model_versions_served"],
    ]
    headers = ["decisions", "decisions/s", "failed requests", "no-fill", "reloads"]
    headers += ["rejected reloads", "versions served"]
    latency = traffic["latency_ms"]
    return [
        "<h2>Predictor</h2>",
        f'<img src="{image}" alt="latency distribution">',
        _table(headers, [counts]),
        _table(
            ["client-side latency (ms)", *latency],
            [[f"round trip ({_per_write(report)})", *(f"{v:.3f}" for v in latency.values())]],
        ),
        f"<p>Server-side (its histogram): p50 {_fmt(server.get('latency_p50_ms'))} ms, "
        f"p99 {_fmt(server.get('latency_p99_ms'))} ms.</p>",
    ]


def _per_write(report: dict[str, Any]) -> str:
    """How the drivers sent their decisions: a pipelined write's round trip counts
    the time the predictor spends on the requests ahead in the same write."""
    pipeline = int(report["config"].get("pipeline", 1))
    return "one request per write" if pipeline == 1 else f"{pipeline} requests per write"


def _training_section(report: dict[str, Any]) -> list[str]:
    training, models = report["training"], report["models"]
    headers = ["campaign", "clicks", "sales", "model", "held-out rows", "held-out sales"]
    headers += ["ROC AUC", "calibration"]
    keys = ("campaign_id", "clicks", "sales", "kind", "holdout_rows", "holdout_sales")
    rows = [[m[k] for k in (*keys, "roc_auc", "calibration")] for m in models["top"]]
    return [
        "<h2>Training</h2>",
        f"<p>{training['cycles']} cycles, {training['published']} published, mean "
        f"{_fmt(training['mean_cycle_seconds'])} s per cycle; live version "
        f"{html.escape(str(models['version']))} with models "
        f"{html.escape(str(models['model_kinds']))}.</p>",
        "<h3>Model quality of the most-chosen campaigns (held-out slice of their last fit)</h3>",
        _table(headers, rows),
    ]
