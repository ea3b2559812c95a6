"""What delayed feedback adds to a training cycle, against the cycle's own read.

A dataset of ``--clicks`` labelled records over ``--days`` simulated days for
``--campaigns`` campaigns is committed through the real DataManager, with the
simulator's sale delays: sales within the one-hour attribution window label
their click, later ones (seen by the cut-off) go to the ``late_sales``
sidecar as the consumer writes them. Then, timed in one run:

* the baseline: the cycle's read of every campaign's training columns (the
  projected Arrow scan ``TrainingManager`` uses);
* the same read with delayed feedback: reading the sidecar and finding each
  late sale's click (``LateSales.update``: one scan of the ``click_id``
  column), the per-campaign counts, the scan with the two extra columns, and
  the per-record late flags and exposures (``DelayedFeedback.feedback``).

Run: ``.venv/bin/python benchmarks/bench_late.py`` (``--clicks 200000`` for a
quick look). Prints what it adds to the read. Exits non-zero when it more
than doubles the read (its budget).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from clickrouter.datastore import DataManager, as_records
from clickrouter.profile import CATEGORICAL_FIELDS
from clickrouter.sim.config import DelayConfig
from clickrouter.sim.delays import DelayModel
from clickrouter.training.late import FEEDBACK_COLUMNS, SIDECAR, DelayedFeedback
from clickrouter.training.scan import committed_files, scan

HOUR, DAY = 3600.0, 86400.0
START = 1_790_000_000.0


def main() -> int:
    args = _args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    end = START + args.days * DAY
    late_count = _write(root, args, end)
    data = DataManager(root)
    files = committed_files(data)
    if files is None:
        raise SystemExit("the DataManager did not list its files: nothing to measure")
    ids = sorted(files)
    read = _best(args.repeat, lambda: scan(data, files, ids, None, end))
    late = _best(args.repeat, lambda: _with_delayed_feedback(data, files, ids, end))
    result = {
        "clicks": args.clicks,
        "files": sum(len(paths) for paths in files.values()),
        "campaigns": len(ids),
        "late_sales": late_count,
        "read_seconds": round(read, 3),
        "read_with_delayed_feedback_seconds": round(late, 3),
        "added_to_read": f"{(late - read) / read:+.0%}",
    }
    print(json.dumps(result, indent=2))
    return 0 if late <= 2 * read else 1


def _with_delayed_feedback(
    data: DataManager, files: dict[str, list[Path]], ids: list[str], end: float
) -> None:
    """What the cycle's read becomes: late sales found, extra columns, exposures."""
    feedback = DelayedFeedback(data, HOUR)  # a fresh one: the whole sidecar is read
    feedback.versions(dict.fromkeys(ids, "v"), None, end)
    frame = scan(data, files, ids, None, end, FEEDBACK_COLUMNS)
    if frame is None:
        raise SystemExit("the scan failed: nothing to measure")
    feedback.feedback(frame, end)
    if not feedback.sales.sale_ts:
        raise SystemExit("no late sale was resolved: nothing was measured")


def _best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _write(root: Path, args: argparse.Namespace, end: float) -> int:
    """Commit the records and the late-sale lines; return how many late sales."""
    rng = np.random.default_rng(args.seed)
    n = args.clicks
    ts = np.sort(rng.uniform(START, end, n))
    rates = np.exp(rng.normal(np.log(0.003), 1.0, args.campaigns))
    campaign = rng.integers(0, args.campaigns, n)
    sold = rng.random(n) < np.minimum(rates[campaign], 0.5)
    delay = np.where(sold, DelayModel(DelayConfig()).sample(rng, n), np.inf)
    in_window = delay <= HOUR
    columns: dict[str, object] = {
        "click_id": [f"k{i:09d}" for i in range(n)],
        "campaign_id": [f"c{c:05d}" for c in campaign],
        "ts": ts,
        **{f: rng.choice(["a", "b", "c", "d"], n) for f in CATEGORICAL_FIELDS},
        "local_hour": ((ts % DAY) // HOUR).astype(np.int8),
        "local_weekday": ((ts // DAY) % 7).astype(np.int8),
        "label": in_window.astype(np.int8),
        "revenue": np.where(in_window, 10.0, 0.0),
        "sale_ts": np.where(in_window, ts + delay, np.nan),
        "propensity": np.ones(n),
        "model_version": ["v0"] * n,
    }
    table = as_records(pa.table(columns))
    late = np.flatnonzero(~in_window & (ts + delay <= end))
    lines = [_late_line(f"k{i:09d}", ts[i] + delay[i]) for i in late]
    with DataManager(root, writable=True, durable=False) as manager:
        manager.commit(table, source={"bench": 1}, sidecars={SIDECAR: lines})
    return len(lines)


def _late_line(click_id: str, ts: float) -> bytes:
    event = {"type": "sale", "id": f"s{click_id}", "click_id": click_id, "ts": ts, "revenue": 10.0}
    return json.dumps(
        {"reason": "unknown or closed click", "watermark": ts, "event": event}
    ).encode()


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clicks", type=int, default=2_000_000)
    p.add_argument("--campaigns", type=int, default=5000)
    p.add_argument("--days", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-out/late")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(main())
