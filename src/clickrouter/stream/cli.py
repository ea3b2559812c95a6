"""``clickrouter consume``: ingest the event stream into Parquet datasets."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("consume", help="ingest events (log dir or Redis stream) to Parquet")
    p.add_argument("--source", required=True, help="event log DIR or redis://HOST:PORT/STREAM")
    p.add_argument("--data", required=True, type=Path, help="dataset directory")
    p.add_argument("--once", action="store_true", help="drain what is there now, then exit")
    p.add_argument(
        "--flush-all", action="store_true", help="with --once: close all windows at the end"
    )
    p.add_argument("--window-seconds", type=_positive_float, default=None)
    p.add_argument("--lateness-seconds", type=_non_negative_float, default=3600.0)
    p.add_argument("--commit-events", type=_positive_int, default=200_000)
    p.add_argument("--commit-seconds", type=_positive_float, default=5.0)
    p.add_argument(
        "--min-file-rows",
        type=_positive_int,
        default=20_000,
        help="hold records per partition until",
    )
    p.add_argument(
        "--max-hold-seconds", type=_non_negative_float, default=60.0, help="... or for at most"
    )
    p.add_argument(
        "--retention-days", type=_positive_float, default=None, help="drop older data (event time)"
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
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


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
    CPUs: it measured faster in wall time there (docs/benchmarks.md)."""
    if args.decode_worker or args.in_process:
        return bool(args.decode_worker)
    return len(os.sched_getaffinity(0)) >= 2


def run_consume(args: argparse.Namespace) -> int:
    from clickrouter.config import Settings
    from clickrouter.datastore.manager import DataManager
    from clickrouter.stream.buffer import RecordBuffer
    from clickrouter.stream.consumer import ConsumerManager
    from clickrouter.stream.progress import ProgressDisplay, print_summary

    if args.flush_all and not args.once:
        raise InvalidInput("--flush-all needs --once (a live stream never closes every window)")
    window = args.window_seconds or Settings.from_env().attribution_window_seconds
    source = open_source(
        args.source, group=args.group, consumer=args.consumer, follow=not args.once
    )
    with DataManager(args.data, writable=True, durable=not args.no_fsync) as data:
        display = ProgressDisplay(source.describe(), enabled=not args.quiet)
        consumer = ConsumerManager(
            source,
            data,
            window_seconds=window,
            lateness_seconds=args.lateness_seconds,
            commit_events=args.commit_events,
            commit_seconds=args.commit_seconds,
            retention_seconds=args.retention_days * 86400 if args.retention_days else None,
            buffer=RecordBuffer(
                min_file_rows=args.min_file_rows, max_hold_seconds=args.max_hold_seconds
            ),
            progress=display.update,
            decode_worker=use_decode_worker(args),
        )
        try:
            with display:
                stats = _run(consumer, args)
        finally:
            consumer.close()
    print_summary(stats, SUMMARY_ROWS)
    return 0


def _run(consumer: Any, args: argparse.Namespace) -> dict[str, int]:
    if args.once:
        return dict(consumer.run_once(flush_all=args.flush_all))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return dict(consumer.run_forever(stop))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clickrouter.stream.cli consume ...``: the same command without
    importing every other stage's CLI (fast start for fault tests and scripts)."""
    parser = argparse.ArgumentParser(prog="clickrouter")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ClickrouterError as exc:
        print(f"clickrouter {args.command}: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
