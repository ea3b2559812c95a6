"""The demo's trainer process: a training cycle every few simulated hours.

``python -m clickrouter.demo.trainer ...`` runs
:meth:`TrainingManager.run_cycle` every ``--every`` wall seconds on the records
of clicks older than ``--label-delay`` seconds (a click younger than its
attribution window plus the consumer's lateness and hold time may still miss
its label, and training on it would bias the rates), and appends one JSON line
per cycle to ``--log``. SIGTERM ends it between cycles.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clickrouter.demo.trainer")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--catalog", required=True, type=Path)
    p.add_argument("--every", required=True, type=float, help="wall seconds between cycles")
    p.add_argument("--label-delay", required=True, type=float, help="wall seconds")
    p.add_argument("--settings", required=True, help="TrainingSettings fields as JSON")
    p.add_argument("--log", required=True, type=Path)
    return p.parse_args(argv)


def cycle_line(manager: Any, report: Any, cutoff: float, wall_started: float) -> dict[str, Any]:
    """What the demo records of one cycle: its report plus the live version's model mix."""
    kinds: dict[str, int] = {}
    if report.version is not None:
        records = manager.store.manifest(report.version).get("campaigns", {})
        for record in records.values():
            kind = str(record.get("kind", "?"))
            kinds[kind] = kinds.get(kind, 0) + 1
    return {
        **report.to_dict(),
        "started_at": wall_started,
        "finished_at": time.time(),
        "cutoff": cutoff,
        "model_kinds": kinds,
        "data_campaigns": len(manager.data.campaigns()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from clickrouter.datastore import DataManager
    from clickrouter.modelstore import ModelStore
    from clickrouter.training import TrainingManager, TrainingSettings

    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = TrainingSettings(**json.loads(args.settings))
    while not (args.data / "_state" / "manifest.json").exists():  # the consumer's first commit
        if stop.wait(0.2):
            return 0
    data = DataManager(args.data)  # the trainer scans its committed files itself
    manager = TrainingManager(data, ModelStore(args.store), args.catalog, settings)
    next_at = time.time() + args.every
    while not stop.wait(max(0.0, next_at - time.time())):
        started = time.time()
        cutoff = started - args.label_delay
        report = manager.run_cycle(now=cutoff)
        line = cycle_line(manager, report, cutoff, started)
        with args.log.open("a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
        next_at = max(next_at + args.every, time.time())
    return 0


if __name__ == "__main__":
    sys.exit(main())
