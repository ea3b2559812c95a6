"""The demo's consumer process: ``clickrouter consume`` with the hold time applied.

Same objects as ``clickrouter consume --source DIR --data DIR`` (a
:class:`~clickrouter.stream.consumer.ConsumerManager` following the local
event log into a writable DataManager). It exists because
``ConsumerManager(buffer=RecordBuffer(...))`` currently keeps its default
buffer when the given one is empty (``buffer or RecordBuffer()``; an empty
buffer is falsy), so the CLI's ``--min-file-rows`` / ``--max-hold-seconds``
do not take effect and records wait up to 60 s of wall time: a whole
simulated half-day at the demo's speed-up. Here the limits are set on the
consumer's own buffer after construction (which also keeps any restored
held records).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clickrouter.demo.consume")
    p.add_argument("--source", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--window-seconds", required=True, type=float)
    p.add_argument("--lateness-seconds", required=True, type=float)
    p.add_argument("--commit-seconds", type=float, default=1.0)
    p.add_argument("--min-file-rows", type=int, default=5000)
    p.add_argument("--max-hold-seconds", type=float, default=3.0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from clickrouter.datastore.manager import DataManager
    from clickrouter.stream.consumer import ConsumerManager
    from clickrouter.stream.local_source import LocalLogSource

    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with DataManager(args.data, writable=True, durable=False) as data:
        consumer = ConsumerManager(
            LocalLogSource(args.source),
            data,
            window_seconds=args.window_seconds,
            lateness_seconds=args.lateness_seconds,
            commit_seconds=args.commit_seconds,
        )
        consumer.buffer.min_file_rows = args.min_file_rows
        consumer.buffer.max_hold_seconds = args.max_hold_seconds
        stats = consumer.run_forever(stop)
        consumer.close()
    print(" ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
