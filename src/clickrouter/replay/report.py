"""A replay's numbers: per seed the demo report's revenue section, across seeds the spread.

Per seed (all on the same requests): revenue per 1,000 clicks of the live
loop, of the greedy choice on the same models, of a uniform random offer, of
the best single offer, of the right campaign (the oracle's) on its first
eligible page and on a uniformly random eligible page, of the oracle, and of
the oracle among the campaigns the loop has reached (those whose served model
rests on records: what a learner that never explores further could earn), per
time bin, over the whole run and over its final quarter, and the final
quarter's uplift over the best single offer split by the campaign shown
(:mod:`clickrouter.demo.revenue` computes them as for the demo's report).
Across seeds: mean, standard deviation, best and worst of each headline number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.demo.plots import COLOURS, LABELS
from clickrouter.demo.report import FINAL_SHARE, write_json
from clickrouter.demo.revenue import final_rows, per_1k_by_bin, summary, uplift_by_campaign
from clickrouter.replay.loop import SeedRun
from clickrouter.replay.settings import ReplaySettings

TOP_CAMPAIGNS = 15
HEADLINE = (
    "live",
    "greedy",
    "random",
    "single",
    "campaign_first_page",
    "campaign_random_page",
    "oracle",
    "oracle_reached",
)
RATIOS = ("share_of_oracle", "uplift_over_single", "uplift_over_first_page", "uplift_over_random")
# the table's per-1k columns after the live loop's and its ratios
TABLE_VALUES = {
    "greedy": "greedy",
    "single": "single",
    "campaign_first_page": "first page",
    "campaign_random_page": "random page",
    "oracle": "oracle",
}


def seed_report(run: SeedRun) -> dict[str, Any]:
    """The revenue numbers of one seed's replay."""
    ts, shown, values = run.sampled
    edges = run.edges
    counts = run.all_counts
    curves: dict[str, Any] = {
        "bin_start": edges[:-1].tolist(),
        "bin_end": edges[1:].tolist(),
        "clicks": counts.tolist(),
        "sampled": np.histogram(ts, edges)[0].tolist(),
    }
    for name in HEADLINE:
        curves[name] = per_1k_by_bin(ts, values[name], edges)
    for name, sums in run.all_sums.items():
        curves[f"{name}_all"] = [
            1000.0 * s / c if c else None for s, c in zip(sums, counts, strict=True)
        ]
    totals = summary(values, ts, FINAL_SHARE)
    final = final_rows(ts, FINAL_SHARE)
    for label, rows in (("overall", np.ones(len(ts), bool)), ("final", final)):
        for name in ("greedy", "oracle_reached"):  # the replay's own, not the demo's
            totals[label]["per_1k"][name] = 1000.0 * float(values[name][rows].mean())
    ids = np.asarray(run.campaign_ids, dtype=object)
    return {
        "traffic_seed": run.traffic_seed,
        "clicks": int(counts.sum()) + run.no_fill,
        "no_fill": run.no_fill,
        "curves": curves,
        **totals,
        "final_by_campaign": uplift_by_campaign(
            ids[shown[final]], values["live"][final], values["single"][final], TOP_CAMPAIGNS
        ),
        "cycles": run.cycles,
    }


def replay_report(settings: ReplaySettings, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """``replay.json``: the settings, every seed's report and the spread over seeds."""
    return {
        "settings": settings.to_dict(),
        "seeds": [s["traffic_seed"] for s in seeds],
        "summary": {label: spread(seeds, label) for label in ("final", "overall")},
        "runs": seeds,
    }


def spread(seeds: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Mean, sd, min, max (and which seed) of each headline number of ``label``."""
    out: dict[str, Any] = {}
    names = [(n, ("per_1k", n)) for n in HEADLINE] + [(r, (r,)) for r in RATIOS]
    for name, path in names:
        values = np.array([_get(s[label], path) for s in seeds], dtype=np.float64)
        worst = int(np.nanargmin(values)) if np.isfinite(values).any() else 0
        out[name] = {
            "mean": float(np.nanmean(values)),
            "sd": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.nanmin(values)),
            "max": float(np.nanmax(values)),
            "worst_seed": seeds[worst]["traffic_seed"],
        }
    return out


def _get(section: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = section
    for key in path:
        value = value[key]
    return float("nan") if value is None else float(value)


def write_report(out: Path, report: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "replay.json"
    write_json(path, report)
    return path


def write_plot(out: Path, report: dict[str, Any]) -> Path:
    """``replay.png``: the live loop's learning curve per seed, the baselines' mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.8))
    runs = report["runs"]
    start = runs[0]["curves"]["bin_start"][0]
    mid = [
        (a + b) / 2 / 86400.0 - start / 86400.0
        for a, b in zip(runs[0]["curves"]["bin_start"], runs[0]["curves"]["bin_end"], strict=True)
    ]
    for i, run in enumerate(runs):
        axis.plot(
            mid,
            _nan(run["curves"]["live_all"]),
            color="#1f77b4",
            alpha=0.35 if len(runs) > 1 else 1.0,
            lw=1.2,
            label="clickrouter (one line per seed)" if i == 0 else None,
        )
    if len(runs) > 1:
        mean = np.nanmean([_nan(r["curves"]["live_all"]) for r in runs], axis=0)
        axis.plot(mid, mean, color="#1f77b4", lw=2.4, label="clickrouter, mean of seeds")
    for name in ("oracle", "campaign_first_page", "campaign_random_page", "single", "random"):
        mean = np.nanmean([_nan(r["curves"][name]) for r in runs], axis=0)
        axis.plot(mid, mean, color=COLOURS[name], ls="--", lw=1.5, label=LABELS[name])
    axis.set_xlabel("simulated days")
    axis.set_ylabel("expected revenue per 1,000 clicks")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(f"replay: {len(runs)} seed(s), {report['settings']['clicks']:,} clicks each")
    path = out / "replay.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def summary_table(report: dict[str, Any]) -> Any:
    """The one-screen table: per seed and across seeds, final quarter and whole run."""
    from rich.table import Table

    table = Table(title="revenue per 1,000 clicks (expected, from the world's truth)")
    columns = ("seed", "final live", "vs single", "vs first page", "of oracle")
    for column in (*columns, *TABLE_VALUES.values(), "whole run: of oracle"):
        table.add_column(column, justify="right")
    for run in report["runs"]:
        final, overall = run["final"], run["overall"]
        table.add_row(
            str(run["traffic_seed"]),
            f"{final['per_1k']['live']:.0f}",
            _pct(final["uplift_over_single"], signed=True),
            _pct(final["uplift_over_first_page"], signed=True),
            _pct(final["share_of_oracle"]),
            *(f"{final['per_1k'][name]:.0f}" for name in TABLE_VALUES),
            _pct(overall["share_of_oracle"]),
        )
    if len(report["runs"]) > 1:
        final, overall = report["summary"]["final"], report["summary"]["overall"]
        for stat in ("mean", "sd"):
            table.add_row(
                stat,
                f"{final['live'][stat]:.0f}",
                _pct(final["uplift_over_single"][stat], signed=stat == "mean"),
                _pct(final["uplift_over_first_page"][stat], signed=stat == "mean"),
                _pct(final["share_of_oracle"][stat]),
                *(f"{final[name][stat]:.0f}" for name in TABLE_VALUES),
                _pct(overall["share_of_oracle"][stat]),
            )
        table.add_row(
            "worst",
            f"seed {final['share_of_oracle']['worst_seed']}",
            "",
            "",
            _pct(final["share_of_oracle"]["min"]),
            *([""] * len(TABLE_VALUES)),
            _pct(overall["share_of_oracle"]["min"]),
        )
    return table


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.1%}" if signed else f"{value:.1%}"
