"""Pipelined decisions: CPU per decision of the predictor and of the driver's client.

The demo's traffic drivers share the 2-core box with the predictor, so what a
decision costs both sides in CPU decides how many decisions per second the demo
can send. This benchmark starts ``clickrouter serve`` (a real subprocess on
127.0.0.1, the sample 5,000-campaign directory of ``bench_http.py``) and sends
the same decision bodies through the driver's own client
(:class:`clickrouter.sim.client.PredictorClient`) from ``--connections``
threads, writing ``depth`` requests at a time (HTTP/1.1 pipelining). For each
depth it measures the server's CPU seconds (``/proc``, workers included), this
process's CPU seconds and the wall time over ``--decisions`` decisions; rounds
alternate the depths, the best round of each is kept, and the ratios are
against depth 1 (one request per write, what ``http.client`` does) in the same
run.

    .venv/bin/python benchmarks/bench_pipeline.py [--decisions 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_http import cpu_seconds, predictor, request_bodies, sample_directory
from clickrouter.sim.client import PredictorClient

DEPTHS = (1, 2, 4, 8, 16)


def drive(port: int, bodies: list[bytes], depth: int, decisions: int, connections: int) -> int:
    """Closed loop: each connection sends its share in writes of ``depth``; failures."""
    failures = [0] * connections

    def one(k: int) -> None:
        client = PredictorClient(f"http://127.0.0.1:{port}")
        share = decisions // connections
        try:
            for lo in range(0, share, depth):
                batch = [
                    ("POST", "/v1/decide", bodies[(lo + i) % len(bodies)]) for i in range(depth)
                ]
                answers = client.request_many(batch[: share - lo])
                failures[k] += sum(a is None or a.status != 200 for a in answers)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(failures)


def measure(port: int, pid: int, bodies: list[bytes], depth: int, args: Any) -> dict[str, float]:
    server_before, client_before = cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    failed = drive(port, bodies, depth, args.decisions, args.connections)
    wall = time.perf_counter() - started
    if failed:
        raise SystemExit(f"depth {depth}: {failed} decisions failed")
    n = args.decisions
    return {
        "server_us": 1e6 * (cpu_seconds(pid) - server_before) / n,
        "client_us": 1e6 * (time.process_time() - client_before) / n,
        "per_s": n / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = sample_directory(args.out, args.campaigns)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    bodies = [b.encode() for b in request_bodies()]
    server = predictor(models, args.out / "bank-cache", work, 1, ("uvloop", "httptools"))
    best: dict[int, dict[str, float]] = {}
    try:
        drive(server.port, bodies, 8, 4000, args.connections)  # warm-up, discarded
        for _ in range(args.rounds):
            for depth in DEPTHS:
                got = measure(server.port, server.process.pid, bodies, depth, args)
                if depth not in best or got["server_us"] + got["client_us"] < sum(
                    best[depth][k] for k in ("server_us", "client_us")
                ):
                    best[depth] = got
    finally:
        server.stop()
    base = best[1]
    rounds = f"best of {args.rounds}"
    print(f"{args.decisions:,} decisions per round, {args.connections} connections, {rounds}")
    print("depth  server us/decision  client us/decision  decisions/s  CPU of both, depth 1 / this")
    for depth in DEPTHS:
        r = best[depth]
        ratio = (base["server_us"] + base["client_us"]) / (r["server_us"] + r["client_us"])
        print(
            f"{depth:>5}  {r['server_us']:>18.0f}  {r['client_us']:>18.0f}"
            f"  {r['per_s']:>11,.0f}  {ratio:>8.2f}x"
        )


if __name__ == "__main__":
    main()
