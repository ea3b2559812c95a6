"""Ingest throughput: event stream -> labelled, hive-partitioned Parquet.

Measures, in one run on the same synthetic events (clicks, delayed sales,
duplicates, out-of-order postbacks, malformed lines):

* baseline: ``json.loads`` per line, a dict join, one pandas ``to_parquet``
  with partition columns at the end (no dead letters, no state, no fsync);
* ConsumerManager, local event log -> Parquet (the CLI's code path: atomic
  commits with fsync, durable attribution state, dead letters, compaction),
  once in-process (``consume --in-process``) and once with the decode worker
  (decoding in a second process, ``consume``'s default with >= 2 CPUs; its
  CPU time is added to the CPU column);
* ConsumerManager, Redis Streams -> Parquet (consumer group, XACK), against a
  redis-server started here on a free loopback port.

``--repeat N`` runs the two local-log rows N times each, alternating, and
prints every run and the worst/median/best (the target is about the worst).

Run: ``.venv/bin/python benchmarks/bench_ingest.py [--clicks 300000] [--repeat 5]``.
Fails loudly (exit 1) if redis-server is missing or any stage errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pandas as pd
import redis

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import Event
from clickrouter.redislog import RedisStreamWriter
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from clickrouter.stream.redis_stream import RedisStreamSource
from support import sample_lines

WINDOW = 7 * 86400.0
TARGET = 100_000


def write_log(directory: Path, lines: list[bytes], writers: int = 2) -> None:
    outs = [EventLogWriter(directory, f"w{i}") for i in range(writers)]
    for i, out in enumerate(outs):
        out.write_raw(b"".join(lines[i::writers]))
        out.close()


def naive_ingest(log: Path, out: Path) -> int:
    """The obvious script: json.loads per line, dict join, pandas partitioned write."""
    clicks: dict[str, dict[str, Any]] = {}
    sales: dict[str, dict[str, Any]] = {}
    n = 0
    for path in sorted(log.glob("*.jsonl")):
        with path.open("rb") as fh:
            for line in fh:
                n += 1
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("type") == "click" and isinstance(event.get("profile"), dict):
                    clicks.setdefault(event["click_id"], event)
                elif event.get("type") == "sale":
                    sales.setdefault(event.get("click_id"), event)
    rows = []
    for click_id, c in clicks.items():
        sale = sales.get(click_id)
        hit = sale is not None and sale["ts"] - c["ts"] <= WINDOW
        rows.append(
            {
                "click_id": click_id,
                "campaign_id": c["campaign_id"],
                "ts": c["ts"],
                **c["profile"],
                "label": int(hit),
                "revenue": sale["revenue"] if hit else 0.0,
                "sale_ts": sale["ts"] if hit else None,
                "propensity": c["propensity"],
                "model_version": c["model_version"],
                "date": dt.datetime.fromtimestamp(c["ts"], dt.UTC).date().isoformat(),
            }
        )
    pd.DataFrame(rows).to_parquet(out, partition_cols=["campaign_id", "date"], index=False)
    return n


def decode_only(lines: list[bytes]) -> int:
    """The parsing floor: msgspec-decode the lines in 1,000-line blocks, nothing else."""
    decoder = msgspec.json.Decoder(Event)
    n = 0
    for i in range(0, len(lines), 1000):
        block = lines[i : i + 1000]
        try:
            n += len(decoder.decode_lines(b"".join(block)))
        except msgspec.DecodeError:  # a malformed line in the block: one by one
            for line in block:
                try:
                    decoder.decode(line)
                    n += 1
                except msgspec.DecodeError:
                    pass
    return n


class Timing(NamedTuple):
    wall: float
    cpu: float  # this process's CPU seconds, all threads (not redis-server's)


def timed(label: str, fn: Any) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    print(f"  {label}: {timing.wall:.2f} s wall, {timing.cpu:.2f} s CPU", flush=True)
    return timing, result


def consume(source: Any, data: Path, *, worker: bool = False) -> dict[str, Any]:
    """The CLI's ``consume --once``: ingest (commits with fsync), then compaction.

    ``stats["worker_cpu"]``: CPU seconds of the decode worker process, which
    :func:`timed` cannot see (it measures this process only).
    """
    with DataManager(data, writable=True) as dm:
        consumer = ConsumerManager(source, dm, window_seconds=WINDOW, decode_worker=worker)
        start = time.perf_counter()
        stats: dict[str, Any] = consumer.run_once(compact=False)
        stats["ingest_seconds"] = time.perf_counter() - start
        consumer.maintain()
        stats["worker_cpu"] = consumer.pipeline.worker_cpu_seconds()
        consumer.close()
        return stats


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench_ingest: redis-server not found (make services installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("bench_ingest: redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=300_000)
    parser.add_argument("--redis-clicks", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="local-log rows: runs of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        lines = list(
            sample_lines(args.clicks, seed=1, campaigns=args.campaigns, span_seconds=86400)
        )
        write_log(work / "log", lines)
        mb = sum(map(len, lines)) / 1e6
        print(f"{len(lines):,} events ({mb:.0f} MB) in 2 writers' segments, {args.campaigns} "
              "campaigns", flush=True)  # fmt: skip
        t_parse, _ = timed("floor: msgspec decode only", lambda: decode_only(lines))
        t_naive, _ = timed(
            "baseline json.loads + pandas", lambda: naive_ingest(work / "log", work / "naive")
        )
        locals_: list[Timing] = []
        workers: list[Timing] = []
        for k in range(args.repeat):
            t_local, stats = timed(
                "ConsumerManager local log (consume --once --in-process)",
                lambda k=k: consume(LocalLogSource(work / "log"), work / f"data{k}"),
            )
            t_worker, wstats = timed(
                "ConsumerManager local log, decode worker (consume --once)",
                lambda k=k: consume(LocalLogSource(work / "log"), work / f"wdata{k}", worker=True),
            )
            print(f"    (decode worker process: {wstats['worker_cpu']:.2f} s CPU)", flush=True)
            locals_.append(t_local)
            workers.append(t_worker._replace(cpu=t_worker.cpu + wstats["worker_cpu"]))
            assert stats["events_read"] == wstats["events_read"] == len(lines), stats
            shutil.rmtree(work / f"data{k}")
            shutil.rmtree(work / f"wdata{k}")
        proc, port = start_redis(work)
        try:
            url = f"redis://127.0.0.1:{port}/events"
            rlines = lines[: int(len(lines) * args.redis_clicks / args.clicks)]
            with RedisStreamWriter.from_url(url, batch_size=2000) as sink:
                t_xadd, _ = timed(
                    "XADD (sink)", lambda: sink.write_raw(b"".join(rlines)) or sink.flush()
                )
            source = RedisStreamSource.from_url(url, count=10_000)
            t_redis, rstats = timed(
                "ConsumerManager redis", lambda: consume(source, work / "rdata")
            )
            assert rstats["events_read"] == len(rlines), rstats
        finally:
            proc.terminate()
            proc.wait()
    report(len(lines), t_parse, t_naive, locals_, workers, stats, len(rlines), t_redis, t_xadd)


def _median(timings: list[Timing]) -> Timing:
    return sorted(timings, key=lambda t: t.wall)[len(timings) // 2]


def report(n: int, t_parse: Timing, t_naive: Timing, locals_: list[Timing],
           workers: list[Timing], stats: dict[str, Any], rn: int, t_redis: Timing,
           t_xadd: Timing) -> None:  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nresults (events/s; {os.cpu_count()} cores, load average {load}; the worker"
          " row's CPU includes the decode worker process; wall = the whole `consume --once`:"
          " open, ingest with fsync, compaction, close)")  # fmt: skip
    print(f"  {'':42} {'wall':>9} {'per CPU-s':>10}")
    t_local, t_worker = _median(locals_), _median(workers)
    many = len(locals_) > 1
    rows = [
        ("floor: msgspec decode alone", n, t_parse),
        ("baseline json.loads + pandas", n, t_naive),
        ("local log -> Parquet (in-process)" + (", median" if many else ""), n, t_local),
        ("  the same, decode worker" + (", median" if many else ""), n, t_worker),
        ("Redis Streams -> Parquet", rn, t_redis),
        ("Redis XADD (sink, pipelined)", rn, t_xadd),
    ]
    for label, count, t in rows:
        print(f"  {label:42} {count / t.wall:>9,.0f} {count / t.cpu:>10,.0f}")
    wall_ratio, cpu_ratio = t_naive.wall / t_local.wall, t_naive.cpu / t_local.cpu
    print(f"  local vs baseline: x{wall_ratio:.2f} wall, x{cpu_ratio:.2f} CPU")
    for label, runs in (("in-process", locals_), ("decode worker (consume's default)", workers)):
        rates = sorted(n / t.wall for t in runs)
        met = sum(rate >= TARGET for rate in rates)
        print(f"  {label}: {len(rates)} run(s), worst {rates[0]:,.0f} median "
              f"{rates[(len(rates) - 1) // 2]:,.0f} best {rates[-1]:,.0f} events/s wall; "
              f"target {TARGET:,}/s met in {met} of {len(rates)}")  # fmt: skip
    print(f"  compaction after ingest (last in-process run): "
          f"{locals_[-1].wall - stats['ingest_seconds']:.2f} s wall")  # fmt: skip
    print(f"  records {stats['records_written']:,}, commits {stats['commits']}, "
          f"dead letters {stats['dead_lettered']}, late sales {stats['late_sales']}")  # fmt: skip


if __name__ == "__main__":
    main()
