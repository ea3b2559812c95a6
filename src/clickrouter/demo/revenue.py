"""Revenue per 1,000 clicks of the live system and of the baselines, over simulated time.

Everything here is computed from the event log (what the predictor actually
chose, on which requests) and the world's truth (what each choice was worth in
expectation), so the live system and the baselines are compared on exactly the
same requests. What is chosen, valued and compared is an *offer*, a (campaign,
landing page) pair: the live value is that of the offer the click event names
(campaign and ``landing_page_id``). See :mod:`clickrouter.demo.oracle` for the
baselines; two of them isolate what choosing the page earns: the right
campaign (the oracle's) sent to its first eligible page, or to a uniformly
random eligible page of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clickrouter.demo.eventlog import EventTables
from clickrouter.demo.oracle import OracleScorer

POLICIES = (
    "live",
    "random",
    "single",
    "campaign_first_page",
    "campaign_random_page",
    "oracle",
)


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices scored against every offer (all rows when ``size`` is 0)."""
    if size == 0 or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 99]).choice(n, size, replace=False))


def policy_values(
    tables: EventTables, scorer: OracleScorer, sample: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Expected revenue per sampled click under each policy; also ``live_all`` (every click).

    A click naming an offer the world does not have is worth 0 (the report
    counts them: ``pages.clicks_on_unknown_offers``); the baselines see the
    world's pages as they were at each click's simulated time.
    """
    chosen = scorer.world.offer_index(tables.campaign_id, tables.landing_page_id)
    live_all = scorer.chosen_values(tables.profiles, chosen)
    rank = scorer.single_ranking(seed)
    profiles = [tables.profiles[i] for i in sample]
    values = scorer.baselines(profiles, rank, tables.sim_ts[sample])
    return {"live": live_all[sample], **values, "live_all": live_all}


def bin_edges(sim_ts: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = float(sim_ts.min()), float(sim_ts.max())
    return np.linspace(lo, hi + 1e-6, bins + 1)


def per_1k_by_bin(ts: np.ndarray, values: np.ndarray, edges: np.ndarray) -> list[float | None]:
    """1000 x mean value of the rows falling in each bin (None for an empty bin)."""
    which = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(which, weights=values, minlength=len(edges) - 1)
    counts = np.bincount(which, minlength=len(edges) - 1)
    return [1000.0 * s / c if c else None for s, c in zip(sums, counts, strict=True)]


def curves(
    tables: EventTables, values: dict[str, np.ndarray], sample: np.ndarray, bins: int
) -> dict[str, Any]:
    """Per simulated-time bin: clicks, each policy per 1k clicks, realised revenue per 1k."""
    edges = bin_edges(tables.sim_ts, bins)
    ts = tables.sim_ts[sample]
    out: dict[str, Any] = {
        "bin_start": edges[:-1].tolist(),
        "bin_end": edges[1:].tolist(),
        "clicks": np.histogram(tables.sim_ts, edges)[0].tolist(),
        "sampled": np.histogram(ts, edges)[0].tolist(),
    }
    for name in POLICIES:
        out[name] = per_1k_by_bin(ts, values[name], edges)
    out["live_all"] = per_1k_by_bin(tables.sim_ts, values["live_all"], edges)
    out["realised"] = per_1k_by_bin(tables.sim_ts, tables.sale_revenue, edges)
    return out


def final_rows(ts: np.ndarray, final_share: float) -> np.ndarray:
    """Mask of the rows in the final ``final_share`` of the simulated time ``ts`` spans."""
    lo, hi = float(ts.min()), float(ts.max())
    return np.asarray(ts >= hi - final_share * (hi - lo))


def summary(values: dict[str, np.ndarray], ts: np.ndarray, final_share: float) -> dict[str, Any]:
    """Per 1k clicks over the whole run and over its final ``final_share`` of simulated time."""
    final = final_rows(ts, final_share)
    result: dict[str, Any] = {"final_share": final_share}
    for label, rows in (("overall", np.ones(len(ts), bool)), ("final", final)):
        per_1k = {p: 1000.0 * float(values[p][rows].mean()) for p in POLICIES}
        result[label] = {
            "clicks_scored": int(rows.sum()),
            "per_1k": per_1k,
            "uplift_over_random": _ratio(per_1k["live"], per_1k["random"]) - 1,
            "uplift_over_single": _ratio(per_1k["live"], per_1k["single"]) - 1,
            "uplift_over_first_page": _ratio(per_1k["live"], per_1k["campaign_first_page"]) - 1,
            "share_of_oracle": _ratio(per_1k["live"], per_1k["oracle"]),
            "stderr_live_minus_single": _paired_se(values["live"][rows], values["single"][rows]),
            "stderr_live_minus_first_page": _paired_se(
                values["live"][rows], values["campaign_first_page"][rows]
            ),
        }
    return result


def uplift_by_campaign(
    shown: np.ndarray, live: np.ndarray, single: np.ndarray, top: int
) -> list[dict[str, Any]]:
    """Split an uplift over the best single offer by the campaign the live system showed.

    ``shown``, ``live`` and ``single``: per scored click, the campaign shown (on
    whichever of its pages) and the expected revenue of the live choice and of
    the best single offer's. A campaign's contribution is what its clicks
    earned minus what the best single offer would have earned on the same
    requests, over everything the best single offer would have earned:
    contributions add up to the uplift (live / single - 1). A run's result
    usually rests on a few campaigns that beat the best single offer where they
    are shown, minus those still being explored; this says which. The ``top``
    campaigns by absolute contribution are listed, the others summed into one
    last row (``campaign_id`` None).
    """
    total_single = float(single.sum())
    if len(shown) == 0 or total_single <= 0:
        return []
    ids, which = np.unique(np.asarray(shown, dtype=object), return_inverse=True)
    clicks = np.bincount(which, minlength=len(ids))
    earned = np.bincount(which, weights=live, minlength=len(ids))
    baseline = np.bincount(which, weights=single, minlength=len(ids))
    points = (earned - baseline) / total_single
    order = np.argsort(-np.abs(points), kind="stable")
    groups = [[int(i)] for i in order[:top]]
    if len(order) > top:
        groups.append([int(i) for i in order[top:]])
    rows = []
    for group in groups:
        n = int(clicks[group].sum())
        rows.append(
            {
                "campaign_id": str(ids[group[0]]) if len(group) == 1 else None,
                "campaigns": len(group),
                "click_share": n / len(shown),
                "live_per_1k": 1000.0 * float(earned[group].sum()) / n,
                "single_per_1k": 1000.0 * float(baseline[group].sum()) / n,
                "uplift_points": float(points[group].sum()),
            }
        )
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error (per 1k clicks) of the paired difference of two policies' means."""
    diff = a - b
    return 1000.0 * float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
