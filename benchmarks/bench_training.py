"""Training benchmark: 5,000 campaigns from 10M labelled events, and model quality vs truth.

The synthetic world (``clickrouter.sim``) supplies traffic and the true P(sale)
of every (profile, campaign) pair. Clicks are routed to eligible campaigns
with a Zipf-like share by expected value (rank 1 gets the most traffic, as a
greedy predictor would give it), labelled by the truth, and committed through
the DataManager. Then, measured in one run:

* a cold-start publish, then one full TrainingManager cycle (local worker
  processes), split into plan / read / encode / fit / publish;
* the baseline: the plain sklearn way, ``Pipeline(OneHotEncoder,
  LogisticRegression).fit`` on every row of a campaign, serially, timed on a
  sample of campaigns and extrapolated by rows;
* quality on fresh traffic: for campaigns with >= 50 sales in the training
  window, expected ROC AUC of the model vs the oracle's (label noise removed
  by weighting each row as a positive by p and a negative by 1 - p) and
  calibration (predicted / true expected sales); base-rate campaigns'
  calibration in aggregate;
* the published version loads into the ModelBank fully compiled.

Run: ``.venv/bin/python benchmarks/bench_training.py`` (``--events 1000000
--campaigns 500`` for a quick look; ``--seed 1 --out bench-out/training-seed1``
for another world; ``--hour-harmonics 0`` for the one-hot-only hour fit;
``--learner hierarchical`` for the fit towards shared effects, ``--posterior``
to publish the Laplace posteriors too).
Exits non-zero when a budget is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clickrouter.datastore import DataManager, as_records
from clickrouter.profile import CATEGORICAL_FIELDS
from clickrouter.serving.bank import ModelBank
from clickrouter.sim import World, WorldConfig
from clickrouter.training import TrainingManager, TrainingSettings

BUDGET_SECONDS = 180.0
ZIPF = 1.0


def main() -> int:
    args = _args()
    out = Path(args.out)
    world = World.generate(
        args.campaigns, seed=args.seed, config=_config(args.events, args.shared_structure)
    )
    shares = _campaign_shares(world, np.random.default_rng([args.seed, 5]))
    data_dir = out / "data"
    _ensure_dataset(world, shares, data_dir, args)
    store_dir = out / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    catalog = world.campaigns
    manager = TrainingManager(
        DataManager(data_dir),
        store_dir,
        catalog,
        TrainingSettings(
            workers=args.workers,
            hour_harmonics=args.hour_harmonics,
            learner=args.learner,
            global_c=args.global_c,
            shared_by=args.shared_by,
            posterior=args.posterior,
        ),
    )
    cold = manager.publish_cold_start(catalog)
    print(f"cold start: {cold.campaigns} base-rate models in {cold.seconds:.1f} s")
    load_before, cpu_before = os.getloadavg()[0], _cpu_seconds()
    report = manager.run_cycle()
    cpu = _cpu_seconds() - cpu_before
    print(f"cycle: {report.to_dict() | {'failures': len(report.failures)}}")
    results: dict[str, Any] = {
        "events": report.rows,
        "campaigns": report.campaigns,
        "cycle_seconds": round(report.seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average_before": round(load_before, 1),
        "load_average_after": round(os.getloadavg()[0], 1),
        "stages": report.stages,
        "trained": report.trained,
        "logistic": report.promoted - report.base_rate,
        "base_rate": report.base_rate,
        "kept": report.kept,
        "failed": report.failed,
    }
    results["baseline"] = _baseline(manager, args)
    results["quality"] = _quality(world, shares, manager, args)
    results["bank"] = _bank(manager)
    print(json.dumps(results, indent=1))
    return _verdict(results)


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the worker pool)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-out/training")
    parser.add_argument("--baseline-campaigns", type=int, default=60)
    parser.add_argument("--fresh", type=int, default=100_000, help="fresh rows per campaign")
    parser.add_argument(
        "--hour-harmonics", type=int, default=1, help="TrainingSettings.hour_harmonics (0: off)"
    )
    parser.add_argument("--learner", choices=("independent", "hierarchical"), default="independent")
    parser.add_argument("--global-c", type=float, default=1.0, help="TrainingSettings.global_c")
    parser.add_argument("--shared-by", choices=("all", "vertical"), default="vertical")
    parser.add_argument("--posterior", action="store_true", help="publish Laplace posteriors")
    parser.add_argument(
        "--shared-structure", type=float, default=0.0, help="WorldConfig.shared_structure"
    )
    return parser.parse_args()


def _config(events: int, shared: float = 0.0) -> WorldConfig:
    # one simulated day of clicks
    return WorldConfig(requests_per_day=float(events), shared_structure=shared)


# -- data ----------------------------------------------------------------------------


def _campaign_shares(world: World, rng: np.random.Generator) -> np.ndarray:
    """Traffic share per campaign: Zipf by rank of expected value on a profile sample."""
    profiles = [p for _, p in world.render(rng, world.draw_spread(rng, 2000))]
    value = world.true_proba(profiles).mean(axis=0) * world.payouts * world.active
    rank = np.empty(len(value), dtype=np.int64)
    rank[np.argsort(-value)] = np.arange(1, len(value) + 1)
    share = np.where(world.active, rank.astype(np.float64) ** -ZIPF, 0.0)
    return np.asarray(share / share.sum())


def _route(
    world: World, shares: np.ndarray, slots: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """An eligible campaign per row drawn by share (rejection; -1 when none found)."""
    n = len(slots["country"])
    campaign = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(20):
        pick = rng.choice(len(shares), size=len(todo), p=shares)
        ok = world.active[pick]
        ok &= world.country_ok[slots["country"][todo], pick]
        ok &= world.os_ok[slots["os"][todo], pick]
        campaign[todo[ok]] = pick[ok]
        todo = todo[~ok]
        if not len(todo):
            break
    return campaign


def _ensure_dataset(world: World, shares: np.ndarray, root: Path, args: Any) -> None:
    marker = root / "_bench.json"
    spec = {"events": args.events, "campaigns": args.campaigns, "seed": args.seed}
    if args.shared_structure:
        spec["shared_structure"] = args.shared_structure
    if marker.exists() and json.loads(marker.read_text()) == spec:
        print(f"reusing dataset {root}")
        return
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    rng = np.random.default_rng([args.seed, 6])
    draw = world.draw(rng, args.events)
    slots = world.audience.slots(draw)
    campaign = _route(world, shares, slots, rng)
    keep = campaign >= 0
    slots = {f: v[keep] for f, v in slots.items()}
    campaign, ts = campaign[keep], draw.ts_ms[keep] / 1000.0
    label = rng.random(len(ts)) < world.true_proba_slots(slots, campaign)
    table = _records(world, slots, campaign, ts, label, shares)
    with DataManager(root, writable=True, durable=False) as manager:
        manager.commit(table, source={"bench": spec})
    marker.write_text(json.dumps(spec))
    took = time.perf_counter() - started
    print(f"dataset: {len(ts):,} events, {int(label.sum()):,} sales, {took:.0f} s")


def _records(
    world: World,
    slots: dict[str, np.ndarray],
    campaign: np.ndarray,
    ts: np.ndarray,
    label: np.ndarray,
    shares: np.ndarray,
) -> pa.Table:
    vocab = world.audience.vocabulary.values
    ids = pa.array(world.campaign_ids, pa.string())
    columns: dict[str, Any] = {
        "click_id": pa.array(np.arange(len(ts))).cast(pa.string()),
        "campaign_id": ids.take(pa.array(campaign)),
        "ts": pa.array(ts),
    }
    for f in CATEGORICAL_FIELDS:
        columns[f] = pa.array(vocab[f], pa.string()).take(pa.array(slots[f]))
    columns["local_hour"] = pa.array(slots["local_hour"].astype(np.int8))
    columns["local_weekday"] = pa.array(slots["local_weekday"].astype(np.int8))
    columns["label"] = pa.array(label.astype(np.int8))
    columns["revenue"] = pa.array(np.where(label, world.payouts[campaign], 0.0))
    columns["sale_ts"] = pa.array(np.where(label, ts + 600.0, np.nan), from_pandas=True)
    columns["propensity"] = pa.array(shares[campaign])
    columns["model_version"] = pa.array(np.full(len(ts), "bench"), pa.string())
    return as_records(pa.table(columns))


# -- baseline ------------------------------------------------------------------------


def _baseline(manager: TrainingManager, args: Any) -> dict[str, Any]:
    """The plain sklearn way: CPU seconds of its fits, estimated for all campaigns.

    Stratified: the 20 largest campaigns are timed exactly, plus a uniform
    sample of the rest scaled up to their number. Process CPU time, so the
    estimate does not depend on how busy the shared machine is; reading the
    data is not charged to the baseline.
    """
    data = manager.data
    sizes = data.read_all()["campaign_id"].value_counts()
    top = [str(c) for c in sizes.index[:20]]
    rest = [str(c) for c in sizes.index[20:]]
    rng = np.random.default_rng(args.seed)
    sample = [str(c) for c in rng.choice(rest, min(args.baseline_campaigns, len(rest)), False)]
    top_cpu = sum(_plain_fit_cpu(data.read_training_set(c)) for c in top)
    sample_cpu = sum(_plain_fit_cpu(data.read_training_set(c)) for c in sample)
    estimate = top_cpu + sample_cpu / max(1, len(sample)) * len(rest)
    return {
        "top_campaigns": len(top),
        "top_cpu_seconds": round(top_cpu, 1),
        "sample_campaigns": len(sample),
        "sample_cpu_seconds": round(sample_cpu, 2),
        "estimated_cpu_seconds_all": round(estimate, 1),
    }


def _plain_fit_cpu(frame: Any) -> float:
    """CPU seconds of Pipeline(OneHotEncoder, LogisticRegression).fit on every row."""
    import warnings

    from sklearn.compose import make_column_transformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from clickrouter.profile import CANONICAL_FIELDS

    y = frame["label"].to_numpy()
    if not 0 < y.sum() < len(y):
        return 0.0  # sklearn cannot fit one class: the plain way has no model here
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), list(CANONICAL_FIELDS))),
        LogisticRegression(max_iter=300),
    )
    started = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(frame[list(CANONICAL_FIELDS)], y)
    return time.process_time() - started


# -- quality -------------------------------------------------------------------------


def _fresh(world: World, n: int, rng: np.random.Generator, later: bool) -> dict[str, np.ndarray]:
    """Vocabulary slots of ``n`` new requests.

    Same day: new draws over the simulated day the training data covers (the
    acceptance test: fresh samples of the same traffic). Later: the day three
    days on, a different weekday, which one day of training data cannot know.
    """
    if later:
        return world.audience.slots(world.draw(rng, n, start_ts=world.start_ts + 3 * 86400.0))
    return world.audience.slots(world.draw_spread(rng, n, days=1.0))


def _frame(world: World, slots: dict[str, np.ndarray], rows: np.ndarray) -> Any:
    import pandas as pd

    vocab = world.audience.vocabulary.values
    frame = pd.DataFrame(
        {f: np.asarray(vocab[f], dtype=object)[slots[f][rows]] for f in CATEGORICAL_FIELDS}
    )
    frame["local_hour"] = slots["local_hour"][rows].astype(np.int64)
    frame["local_weekday"] = slots["local_weekday"][rows].astype(np.int64)
    return frame


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float:
    """AUC against labels drawn from ``p``, in expectation (each row both ways, weighted)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    return float(roc_auc_score(y, np.r_[score, score], sample_weight=np.r_[p, 1 - p]))


def _quality(world: World, shares: np.ndarray, manager: TrainingManager, args: Any) -> Any:
    store = manager.store
    records = store.manifest(store.current() or "")["campaigns"]
    rng = np.random.default_rng([args.seed, 9])
    same_day, later = _fresh(world, 1_000_000, rng, False), _fresh(world, 1_000_000, rng, True)
    frequent = [c for c, r in records.items() if (r.get("positives") or 0) >= 50]
    rows = []
    for cid in frequent:
        row = {"campaign": cid, "sales": records[cid]["positives"], "C": records[cid]["C"]}
        row.update(_campaign_quality(world, store, records[cid], cid, same_day, args.fresh))
        later_row = _campaign_quality(world, store, records[cid], cid, later, args.fresh)
        row.update({f"later_{k}": v for k, v in later_row.items()})
        rows.append(row)
    return {
        "frequent": rows,
        "base_rate": _base_rate_calibration(world, shares, records, same_day, rng),
        "base_rate_later": _base_rate_calibration(world, shares, records, later, rng),
    }


def _campaign_quality(
    world: World, store: Any, record: dict[str, Any], cid: str, pool: Any, n: int
) -> dict[str, float]:
    import joblib

    j = world.campaign_index[cid]
    ok = world.country_ok[pool["country"], j] & world.os_ok[pool["os"], j]
    rows = np.flatnonzero(ok)[:n]
    truth = world.true_proba_slots({f: v[rows] for f, v in pool.items()}, np.full(len(rows), j))
    model = joblib.load(store.current_path() / record["file"])
    proba = model.predict_proba(_frame(world, pool, rows))[:, 1]
    return {
        "auc": round(_expected_auc(proba, truth), 4),
        "oracle_auc": round(_expected_auc(truth, truth), 4),
        "calibration": round(float(proba.sum() / truth.sum()), 3),
    }


def _base_rate_calibration(
    world: World,
    shares: np.ndarray,
    records: dict[str, Any],
    pool: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Predicted / true expected sales over fresh traffic routed to base-rate campaigns."""
    campaign = _route(world, shares, pool, rng)
    routed = campaign >= 0
    slots = {f: v[routed] for f, v in pool.items()}
    campaign = campaign[routed]
    truth = world.true_proba_slots(slots, campaign)
    rate = np.array([records[c].get("rate", np.nan) for c in world.campaign_ids])
    base = np.array([records[c]["kind"] == "base_rate" for c in world.campaign_ids])[campaign]
    return {
        "fresh_clicks": int(base.sum()),
        "true_expected_sales": round(float(truth[base].sum()), 2),
        "predicted_sales": round(float(rate[campaign][base].sum()), 2),
        "calibration": round(float(rate[campaign][base].sum() / truth[base].sum()), 3),
    }


def _bank(manager: TrainingManager) -> dict[str, Any]:
    started = time.perf_counter()
    with ModelBank.from_directory(manager.store.current_path()) as bank:
        return {
            "compiled": bank.n_compiled,
            "generic": bank.n_generic,
            "load_seconds": round(time.perf_counter() - started, 1),
        }


def _verdict(results: dict[str, Any]) -> int:
    """Print the acceptance lines; non-zero exit when one is missed."""
    failures = []
    seconds, cpu = results["cycle_seconds"], results["cpu_seconds"]
    baseline = results["baseline"]["estimated_cpu_seconds_all"]
    print(
        f"cycle {seconds:.1f} s wall, {cpu:.1f} CPU-s (budget {BUDGET_SECONDS:.0f} s); "
        f"plain sklearn fits alone ~{baseline:.0f} CPU-s: {baseline / cpu:.1f}x our whole cycle"
    )
    if seconds > BUDGET_SECONDS:
        failures.append("throughput budget")
    print("| campaign | sales | C | AUC | oracle AUC | gap | calibration | 3 days later |")
    for row in results["quality"]["frequent"]:
        gap = row["oracle_auc"] - row["auc"]
        print(
            f"| {row['campaign']} | {row['sales']} | {row['C']} | {row['auc']:.3f} "
            f"| {row['oracle_auc']:.3f} | {gap:.3f} | {row['calibration']:.2f} "
            f"| {row['later_calibration']:.2f} |"
        )
        if gap > 0.05 or not 0.8 <= row["calibration"] <= 1.25:
            failures.append(f"quality {row['campaign']}")
    base = results["quality"]["base_rate"]["calibration"]
    if not 0.8 <= base <= 1.25:
        failures.append("base-rate calibration")
    if results["bank"]["generic"]:
        failures.append("bank generic models")
    print("FAILED: " + ", ".join(failures) if failures else "all budgets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
