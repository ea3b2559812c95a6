"""``clickrouter consume``: ingest the event stream into Parquet datasets."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickrouter.cli.parser import Parser, add_log_format, setting_overrides
from clickrouter.durations import duration_type
from clickrouter.errors import ClickrouterError, InvalidInput

SUMMARY_ROWS = (
    ("events read", "events_read"),
    ("records labelled", "records_labelled"),
    ("  of which sales (label 1)", "positives_labelled"),
    ("records written to Parquet", "records_written"),
    ("records held for fuller files", "records_held"),
    ("pending clicks", "pending"),
    ("orphan sales (waiting for their click)", "orphan_sales"),
    ("duplicates dropped", "duplicates"),
    ("late sales", "late_sales"),
    ("late clicks", "late_clicks"),
    ("dead-lettered", "dead_lettered"),
    ("  of which beyond the clock + skew", "future_events"),
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "consume",
        help="ingest events (log dir or Redis stream) to Parquet",
        description="Join clicks and sales into labelled records, written as Parquet."
        " Durations take 30s, 5m, 3h, 7d; a plain number is in the option's unit.",
    )
    p.add_argument("--source", required=True, help="event log DIR or redis://HOST:PORT/STREAM")
    p.add_argument("--data", required=True, type=Path, help="dataset directory")
    p.add_argument("--once", action="store_true", help="drain what is there now, then exit")
    p.add_argument(
        "--flush-all", action="store_true", help="with --once: close all windows at the end"
    )
    p.add_argument(
        "--window-seconds",
        dest="attribution_window_seconds",
        type=duration_type(),
        default=None,
        help="attribution window: a sale counts for its click if it arrives within it",
    )
    p.add_argument(
        "--lateness-seconds",
        type=duration_type(allow_zero=True),
        default=3600.0,
        help="how long a window stays open for events that arrive out of order",
    )
    p.add_argument(
        "--clock-skew",
        dest="clock_skew_seconds",
        type=duration_type(allow_zero=True),
        default=None,
        help="events further ahead of this clock are dead-lettered",
    )
    p.add_argument(
        "--commit-events",
        type=_positive_int,
        default=200_000,
        help="commit (write Parquet, then acknowledge the source) after this many events",
    )
    p.add_argument(
        "--commit-seconds",
        type=duration_type(),
        default=5.0,
        help="... or after this long, whichever comes first",
    )
    p.add_argument(
        "--min-file-rows",
        type=_positive_int,
        default=20_000,
        help="hold a partition's records until it has this many rows",
    )
    p.add_argument(
        "--max-hold-seconds",
        type=duration_type(allow_zero=True),
        default=60.0,
        help="... or for at most this long",
    )
    p.add_argument(
        "--retention-days",
        type=duration_type(unit=86400.0),
        default=None,
        help="drop data older than this (event time; a plain number: days; default: keep all)",
    )
    p.add_argument("--group", default="clickrouter", help="Redis consumer group")
    p.add_argument("--consumer", default="consumer-1", help="Redis consumer name")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (tests, benchmarks)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--decode-worker",
        action="store_true",
        help="decode in a second process, beside the join (default with >= 2 CPUs)",
    )
    where.add_argument(
        "--in-process", action="store_true", help="decode in this process (default with 1 CPU)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_log_format(p)
    p.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        default=None,
        help="serve Prometheus metrics (lag, commits, dead letters) on this port, on "
        "127.0.0.1 unless a HOST is given; needs a running consumer (not --once); "
        "default: off (docs/reference/metrics.md)",
    )
    p.set_defaults(handler=run_consume)


def _number(kind: type, test: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")


def open_source(spec: str, *, group: str, consumer: str, follow: bool) -> Any:
    """``redis://HOST:PORT/STREAM`` or an event-log directory."""
    if spec.startswith("redis://"):
        import redis

        from clickrouter.stream.redis_stream import RedisStreamSource

        try:
            source = RedisStreamSource.from_url(
                spec, group=group, consumer=consumer, block_ms=500 if follow else None
            )
        except redis.ConnectionError as exc:
            raise InvalidInput(f"--source: cannot connect to {spec}: {exc}") from None
        return source
    from clickrouter.stream.local_source import LocalLogSource

    return LocalLogSource(spec)


def use_decode_worker(args: argparse.Namespace) -> bool:
    """A decode worker when asked, or by default when this process may use two
    CPUs: it is faster in wall time there (docs/benchmarks.md)."""
    if args.decode_worker or args.in_process:
        return bool(args.decode_worker)
    return len(os.sched_getaffinity(0)) >= 2


def run_consume(args: argparse.Namespace) -> int:
    from clickrouter.config import Settings
    from clickrouter.datastore.manager import DataManager
    from clickrouter.logs import configure_logging
    from clickrouter.stream.buffer import RecordBuffer
    from clickrouter.stream.consumer import ConsumerManager
    from clickrouter.stream.progress import ProgressDisplay, print_summary

    if args.flush_all and not args.once:
        raise InvalidInput("--flush-all needs --once (a live stream never closes every window)")
    if args.metrics_port is not None and args.once:
        raise InvalidInput("--metrics-port needs a running consumer: drop --once")
    settings = Settings.from_env(**setting_overrides(args))
    configure_logging(settings.log_format, "consume")
    as_json = settings.log_format == "json"  # stderr then carries log lines only
    window = settings.attribution_window_seconds
    source = open_source(
        args.source, group=args.group, consumer=args.consumer, follow=not args.once
    )
    with DataManager(args.data, writable=True, durable=not args.no_fsync) as data:
        display = ProgressDisplay(source.describe(), enabled=not (args.quiet or as_json))
        consumer = ConsumerManager(
            source,
            data,
            window_seconds=window,
            clock_skew_seconds=settings.clock_skew_seconds,
            lateness_seconds=args.lateness_seconds,
            commit_events=args.commit_events,
            commit_seconds=args.commit_seconds,
            retention_seconds=args.retention_days,
            buffer=RecordBuffer(
                min_file_rows=args.min_file_rows, max_hold_seconds=args.max_hold_seconds
            ),
            progress=display.update,
            decode_worker=use_decode_worker(args),
        )
        if args.metrics_port is not None:
            _export_metrics(consumer, display, args.metrics_port)
        try:
            with display:
                stats = _run(consumer, args)
        finally:
            consumer.close()
    if as_json:
        logging.getLogger("clickrouter.cli.consume").info(
            "consume finished", extra={"stats": stats}
        )
    else:
        print_summary(stats, SUMMARY_ROWS)
    return 0


def _export_metrics(consumer: Any, display: Any, spec: str) -> None:
    """Serve the consumer's metrics, updated after every step and commit."""
    from clickrouter.stream.metrics import ConsumerMetrics, backlog_of, serve_metrics

    metrics = ConsumerMetrics(backlog_of(consumer.source))

    def progress(stats: dict[str, int]) -> None:
        display.update(stats)
        metrics.after_step(stats, consumer.source.position())

    metrics.after_step(consumer.stats(), consumer.source.position())
    consumer.progress = progress
    consumer.on_commit = metrics.committed
    serve_metrics(metrics.registry, spec, "--metrics-port")


def _run(consumer: Any, args: argparse.Namespace) -> dict[str, int]:
    if args.once:
        return dict(consumer.run_once(flush_all=args.flush_all))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return dict(consumer.run_forever(stop))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clickrouter.cli.consume consume ...``: the same command without
    importing every other stage's CLI (fast start for fault tests and scripts)."""
    parser = Parser(prog="clickrouter")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ClickrouterError as exc:
        print(f"clickrouter {args.command}: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
