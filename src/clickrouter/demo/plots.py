"""The report's figures (matplotlib, Agg backend; PNG files)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {
    "live": "#1f77b4",
    "random": "#7f7f7f",
    "single": "#ff7f0e",
    "campaign_first_page": "#9467bd",
    "campaign_random_page": "#8c564b",
    "oracle": "#2ca02c",
}
LABELS = {
    "live": "clickrouter (live)",
    "random": "uniform random",
    "single": "best single offer",
    "campaign_first_page": "right campaign, first page",
    "campaign_random_page": "right campaign, random page",
    "oracle": "oracle",
}
# the page baselines are drawn dashed: they sit between the live curve and the
# oracle, and must not be read as curves of the running system
DASHED = ("campaign_first_page", "campaign_random_page")


def write_plots(report: dict[str, Any], directory: Path) -> dict[str, str]:
    """Write every figure into ``directory``; returns {name: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "revenue": _save(revenue_figure(report), directory / "revenue.png"),
        "latency": _save(latency_figure(report), directory / "latency.png"),
    }


def _save(figure: Any, path: Path) -> str:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return f"{path.parent.name}/{path.name}"


def revenue_figure(report: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    curves = report["revenue"]["curves"]
    mid = [(a + b) / 2 for a, b in zip(curves["bin_start"], curves["bin_end"], strict=True)]
    origin = report["run"]["world_start_ts"]
    x = [(m - origin) / 3600 for m in mid]
    figure, ax = plt.subplots(figsize=(9, 4.6))
    for name in (
        "oracle",
        "campaign_first_page",
        "campaign_random_page",
        "live",
        "single",
        "random",
    ):
        y = np.array([np.nan if v is None else v for v in curves[name]], dtype=float)
        ax.plot(x, y, marker="o", ms=3, lw=2.2 if name == "live" else 1.4,
                ls="--" if name in DASHED else "-",
                color=COLOURS[name], label=LABELS[name])  # fmt: skip
    for cycle_ts in _cycle_sim_times(report):
        ax.axvline((cycle_ts - origin) / 3600, color="#dddddd", lw=0.8, zorder=0)
    ax.set_ylabel("expected revenue per 1,000 clicks")
    start = datetime.fromtimestamp(origin, UTC)
    ax.set_xlabel(f"simulated hours since {start:%a %d %b %H:%M} UTC; grey lines: training cycles")
    ax.set_xticks(range(0, int(max(x)) + 7, 6))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    # lower right, above the random baseline: the end of the live curve, the part
    # a reader looks for, runs through the middle right
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.06), fontsize=9)
    final = report["revenue"]["final"]
    ax.set_title(
        f"Learning from a cold start: {final['share_of_oracle']:.0%} of the oracle at the end, "
        f"{final['uplift_over_single']:+.1%} vs best single offer, "
        f"{final['uplift_over_first_page']:+.1%} vs right campaign on its first page",
        fontsize=10,
    )
    return figure


def _cycle_sim_times(report: dict[str, Any]) -> list[float]:
    """When each published cycle went live, on the simulated clock."""
    history = report["training"]["history"]
    return [c["sim_ts"] for c in history if c.get("published") and c.get("sim_ts") is not None]


def latency_figure(report: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    histogram = report["traffic"]["latency_histogram"]
    edges = np.array(histogram["edges_s"]) * 1000
    counts = np.array(histogram["counts"])
    figure, ax = plt.subplots(figsize=(7, 3.4))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#1f77b4", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("decision round trip, client side (ms, log scale)")
    ax.set_ylabel("requests")
    for name, value in report["traffic"]["latency_ms"].items():
        if name in ("p50", "p99") and value is not None:
            ax.axvline(value, color="#d62728", ls="--", lw=1)
            ax.text(value, ax.get_ylim()[1] * 0.9, f" {name} {value:.2f} ms", color="#d62728")
    ax.grid(alpha=0.3)
    return figure
