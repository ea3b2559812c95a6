"""``clickrouter train`` and ``clickrouter models list|show|rollback``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickrouter.cli.parser import (
    COLD_AT_PRIOR_HELP,
    GLOBAL_C_HELP,
    add_log_format,
    global_c_option,
)
from clickrouter.durations import duration_type
from clickrouter.errors import InvalidInput

if TYPE_CHECKING:
    from rich.table import Table

log = logging.getLogger(__name__)
duration = duration_type()  # seconds from "90", "30s", "5m", "2h" or "7d"


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_models(subparsers)


def _register_train(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="retrain campaign models into a model store",
        description="Fit one model per campaign and publish a new store version."
        " Durations take 30s, 5m, 3h, 7d (a plain number: seconds).",
    )
    train.add_argument("--data", type=Path, help="labelled-record dataset (from consume)")
    train.add_argument("--store", required=True, type=Path, help="model store directory")
    train.add_argument("--catalog", type=Path, help="campaigns.json (default: the live one's)")
    train.add_argument("--watch", action="store_true", help="run a cycle every --every")
    train.add_argument("--every", type=duration, default=300.0, help="with --watch: cycle period")
    train.add_argument("--cycles", type=_positive_int, help="with --watch: stop after N cycles")
    train.add_argument("--cold-start", action="store_true", help="publish base-rate models only")
    train.add_argument(
        "--dask-scheduler",
        help="tcp://HOST:PORT of a Dask cluster, or 'local': a cluster of --workers "
        "processes of the trainer's own, ended with it",
    )
    train.add_argument(
        "--workers",
        dest="train_workers",
        type=_non_negative_int,
        help="local worker processes (0 = in-process; default: one per CPU)",
    )
    train.add_argument(
        "--window", type=duration, help="train on the last e.g. 7d of records (default: all)"
    )
    train.add_argument(
        "--late-sales-after",
        type=duration,
        metavar="WINDOW",
        help="the consumer's attribution window, e.g. 1h: base-rate models also count "
        "the sales that arrived after it (delayed feedback)",
    )
    train.add_argument(
        "--negative-rate",
        dest="negative_sampling_rate",
        type=_share,
        help="share of negatives kept, in (0, 1]",
    )
    train.add_argument(
        "--min-positives", type=_positive_int, help="sales a campaign needs, below: base-rate model"
    )
    train.add_argument(
        "--keep", dest="keep_versions", type=_positive_int, help="versions to keep in the store"
    )
    train.add_argument(
        "--learner",
        choices=("independent", "hierarchical"),
        default="independent",
        help="hierarchical: each campaign's model is pulled towards effects its vertical's "
        "campaigns share instead of towards 0 (default: independent)",
    )
    train.add_argument(
        "--global-c",
        type=global_c_option,
        default=None,
        metavar="GLOBAL_C",
        help=GLOBAL_C_HELP,
    )
    train.add_argument(
        "--shared-by",
        choices=("vertical", "all"),
        default="vertical",
        help="with --learner hierarchical: which campaigns share effects, those of one "
        "catalogue vertical or all of them",
    )
    train.add_argument(
        "--hierarchy-min-positives",
        type=_positive_int,
        help="with --learner hierarchical: sales a campaign needs for a model pulled towards "
        "the shared effects, at most --min-positives (default: --min-positives)",
    )
    train.add_argument("--cold-at-prior", action="store_true", help=COLD_AT_PRIOR_HELP)
    train.add_argument(
        "--posterior",
        action="store_true",
        help="publish each logistic model's Laplace posterior beside it (<id>.posterior.json)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_format(train)
    train.add_argument(
        "--signing-key-file",
        type=Path,
        help="sign each published manifest with this key (mode 600; default: setting "
        "model_signing_key_file); predictors holding it trust the files it lists",
    )
    train.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="with --watch: serve Prometheus metrics (cycles, decisions, live version "
        "quality) on this port, on 127.0.0.1 unless a HOST is given; default: off "
        "(docs/reference/metrics.md)",
    )
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
            action.add_argument("version", help="version name, as models list shows it")
        action.add_argument("--store", required=True, type=Path, help="model store directory")
        if name == "show":
            action.add_argument("--campaign", help="print one campaign's record as JSON")
    models.set_defaults(handler=run_models)


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run_train(args: argparse.Namespace) -> int:
    # rich and the trainer come with the 'train' extra: imported when the command runs
    from rich.console import Console

    from clickrouter.training import TrainingManager, open_training_data
    from clickrouter.training.report import summary_table

    if args.metrics_port is not None and not args.watch:
        raise InvalidInput("--metrics-port needs --watch (one cycle exits before a scrape)")
    as_json = _log_format(args) == "json"  # stderr then carries log lines only
    console = Console(stderr=True)
    manager = TrainingManager(
        None if args.cold_start else open_training_data(_required_data(args)),
        _store(args),
        args.catalog,
        _settings(args),
        dask_scheduler=args.dask_scheduler,
        console=None if args.quiet or as_json else console,
    )
    if args.cold_start:
        console.print(summary_table(manager.publish_cold_start()))
        return 0

    metrics = _export_metrics(manager, args.metrics_port)

    def show(report: Any) -> None:
        if as_json:
            log.info("cycle done", extra=report.to_dict())
        else:
            console.print(summary_table(report))
        if metrics is not None:
            metrics.cycle_done(report)
            metrics.read_live(manager.store)

    def complain(exc: Any) -> None:  # the loop goes on; the live version is untouched
        if as_json:
            log.error("cycle failed: %s", exc.message, extra={"status": exc.status})
        else:
            console.print(f"clickrouter train: cycle failed: {exc.message}")
        if metrics is not None:
            metrics.cycle_failed()

    if args.watch:
        manager.watch(args.every, cycles=args.cycles, on_report=show, on_error=complain)
    else:
        show(manager.run_cycle())
    return 0


def _export_metrics(manager: Any, spec: str | None) -> Any:
    """The trainer's metrics, served on ``spec`` (None: not exported)."""
    if spec is None:
        return None
    from clickrouter.stream.metrics import serve_metrics
    from clickrouter.training.metrics_export import TrainerMetrics

    metrics = TrainerMetrics()
    metrics.read_live(manager.store)
    serve_metrics(metrics.registry, spec, "--metrics-port")
    return metrics


def _log_format(args: argparse.Namespace) -> str:
    from clickrouter.config import Settings
    from clickrouter.logs import configure_logging

    log_format = Settings.from_env(log_format=args.log_format).log_format
    configure_logging(log_format, "train")
    return log_format


def _store(args: argparse.Namespace) -> Any:
    """The model store, holding the signing key when one is configured."""
    from clickrouter.config import Settings
    from clickrouter.modelstore import ModelStore
    from clickrouter.modelstore.signing import read_key_file

    key_file = args.signing_key_file or Settings.from_env().model_signing_key_file
    key = None if key_file is None else read_key_file(key_file, option="--signing-key-file")
    return ModelStore(args.store, signing_key=key)


def _settings(args: argparse.Namespace) -> Any:
    from clickrouter.config import Settings
    from clickrouter.training import TrainingSettings

    env = Settings.from_env()
    min_positives = _first(args.min_positives, env.min_positives)
    low = args.hierarchy_min_positives
    if low is not None and low > min_positives:
        raise InvalidInput(
            f"--hierarchy-min-positives: expected at most --min-positives ({min_positives}), "
            f"got {low}"
        )
    return TrainingSettings(
        negative_rate=_first(args.negative_sampling_rate, env.negative_sampling_rate),
        min_positives=min_positives,
        keep_versions=_first(args.keep_versions, env.keep_versions),
        window_seconds=args.window,
        attribution_seconds=args.late_sales_after,
        workers=args.train_workers,
        learner=args.learner,
        global_c=args.global_c,
        shared_by=args.shared_by,
        hierarchy_min_positives=low,
        posterior=args.posterior,
        cold_at_prior=args.cold_at_prior,
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
        from rich.console import Console

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
    from rich.table import Table

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
