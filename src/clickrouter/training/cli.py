"""``clickrouter train`` and ``clickrouter models list|show|rollback``."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from clickrouter.errors import InvalidInput

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_models(subparsers)


def _register_train(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="retrain campaign models into a model store")
    train.add_argument("--data", type=Path, help="labelled-record dataset")
    train.add_argument("--store", required=True, type=Path, help="model store directory")
    train.add_argument("--catalog", type=Path, help="campaigns.json (default: the live one's)")
    train.add_argument("--watch", action="store_true", help="run a cycle every --every")
    train.add_argument("--every", type=duration, default=300.0, help="e.g. 30s, 5m (default 5m)")
    train.add_argument("--cycles", type=_positive_int, help="with --watch: stop after N cycles")
    train.add_argument("--cold-start", action="store_true", help="publish base-rate models only")
    train.add_argument("--dask-scheduler", help="tcp://HOST:PORT of a Dask cluster")
    train.add_argument("--workers", type=int, help="local worker processes (0 = in-process)")
    train.add_argument("--window", type=duration, help="train on the last e.g. 7d of records")
    train.add_argument(
        "--late-sales-after",
        type=duration,
        metavar="WINDOW",
        help="the consumer's attribution window, e.g. 1h: base-rate models also count "
        "the sales that arrived after it (delayed feedback)",
    )
    train.add_argument("--negative-rate", type=float, help="share of negatives kept (0-1]")
    train.add_argument("--min-positives", type=_positive_int, help="below: base-rate model")
    train.add_argument("--keep", type=_positive_int, help="versions to keep in the store")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)


def _register_models(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="list, inspect or roll back model versions")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "published versions, live one marked"),
        ("show", "a version's manifest summary"),
        ("rollback", "make an older version live again"),
    ):
        action = actions.add_parser(name, help=help_text)
        if name != "list":
            action.add_argument("version")
        action.add_argument("--store", required=True, type=Path)
        if name == "show":
            action.add_argument("--campaign", help="print one campaign's record as JSON")
    models.set_defaults(handler=run_models)


def duration(text: str) -> float:
    """Seconds from "90", "30s", "5m", "2h" or "7d"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 5m, 7d; got {text!r}")
    return float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1.0)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run_train(args: argparse.Namespace) -> int:
    from clickrouter.training import TrainingManager, open_training_data
    from clickrouter.training.report import summary_table

    console = Console(stderr=True)
    manager = TrainingManager(
        None if args.cold_start else open_training_data(_required_data(args)),
        args.store,
        args.catalog,
        _settings(args),
        dask_scheduler=args.dask_scheduler,
        console=None if args.quiet else console,
    )
    if args.cold_start:
        console.print(summary_table(manager.publish_cold_start()))
        return 0

    def show(report: Any) -> None:
        console.print(summary_table(report))

    def complain(exc: Any) -> None:  # the loop goes on; the live version is untouched
        console.print(f"clickrouter train: cycle failed: {exc.message}")

    if args.watch:
        manager.watch(args.every, cycles=args.cycles, on_report=show, on_error=complain)
    else:
        show(manager.run_cycle())
    return 0


def _settings(args: argparse.Namespace) -> Any:
    from clickrouter.config import Settings
    from clickrouter.training import TrainingSettings

    env = Settings.from_env()
    return TrainingSettings(
        negative_rate=_first(args.negative_rate, env.negative_sampling_rate),
        min_positives=_first(args.min_positives, env.min_positives),
        keep_versions=_first(args.keep, env.keep_versions),
        window_seconds=args.window,
        attribution_seconds=args.late_sales_after,
        workers=args.workers,
    )


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def _required_data(args: argparse.Namespace) -> Path:
    if args.data is None:
        raise InvalidInput("--data is required (except with --cold-start)")
    return Path(args.data)


def run_models(args: argparse.Namespace) -> int:
    from clickrouter.modelstore import ModelStore

    store = ModelStore(args.store)
    if not ModelStore.is_store(args.store):
        raise InvalidInput(f"{args.store}: not a model store (no versions/ directory)")
    if args.action == "list":
        Console().print(_versions_table(store))
    elif args.action == "rollback":
        store.rollback(args.version)
        print(f"CURRENT -> {args.version}")
    elif args.campaign:
        record = store.manifest(args.version).get("campaigns", {}).get(args.campaign)
        if record is None:
            raise InvalidInput(f"version {args.version}: no campaign {args.campaign!r}")
        print(json.dumps(record, indent=1))
    else:
        _show(store, args.version)
    return 0


def _versions_table(store: Any) -> Table:
    live = store.current()
    table = Table(title=f"model store {store.root}")
    table.add_column("version", no_wrap=True, min_width=24)  # names must stay copyable
    for name in ("live", "created", "campaigns", "promoted", "kept", "base-rate"):
        table.add_column(name)
    for version in reversed(store.versions()):
        manifest = store.manifest(version)
        decisions = _decision_counts(manifest)
        table.add_row(
            version,
            "*" if version == live else "",
            str(manifest.get("created_at", "")),
            str(len(manifest.get("campaigns", {}))),
            str(decisions.get("promoted", 0)),
            str(decisions.get("kept", 0)),
            str(_base_rate_count(manifest)),
        )
    return table


def _decision_counts(manifest: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in manifest.get("campaigns", {}).values():
        counts[record.get("decision", "?")] = counts.get(record.get("decision", "?"), 0) + 1
    return counts


def _base_rate_count(manifest: dict[str, Any]) -> int:
    return sum(r.get("kind") == "base_rate" for r in manifest.get("campaigns", {}).values())


def _show(store: Any, version: str) -> None:
    manifest = store.manifest(version)
    problems = store.verify(version)
    summary = {
        "version": version,
        "live": version == store.current(),
        "created_at": manifest.get("created_at"),
        "parent": manifest.get("parent"),
        "training_window": manifest.get("training_window"),
        "campaigns": len(manifest.get("campaigns", {})),
        "decisions": _decision_counts(manifest),
        "base_rate": _base_rate_count(manifest),
        "files": len(manifest.get("files", {})),
        "integrity": "ok" if not problems else problems[:10],
    }
    print(json.dumps(summary, indent=1))
