"""Server CPU per decision of two versions of the code, measured alternately.

On a shared machine wall-clock throughput follows the neighbours' load; the
CPU time the server processes spend per request much less so, and running the
two versions alternately puts both under the same conditions. "before" is
another checkout's ``src/`` run by the same venv (``PYTHONPATH``):

    mkdir -p /tmp/before && git archive 5dc0802 src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_http_ab.py --before /tmp/before/src --workers 1

Each run: ``clickrouter serve`` with 5,000 campaigns (``bench_http``'s sample
directory and cache), 2 s of ``wrk`` warm-up, then a saturated ``wrk`` run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_http as bench


def serve(models: Path, cache: Path, workers: int, src: str | None) -> bench.Server:
    work = Path(tempfile.mkdtemp(prefix="bench-http-ab-"))
    events = work / "events"
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
    command += ["--port", "0", "--workers", str(workers), "--cache-dir", str(cache)]
    server = bench.Server([*command, "--events", str(events)], work, "/v2/health/ready", env=env)
    server.events = events
    return server


def measure(server: bench.Server, bodies: list[str], seconds: float) -> dict[str, float]:
    bench.saturate(server.port, bodies, 2.0, 16)  # warm-up (and the second worker's load)
    load = os.getloadavg()[0]
    cpu_before = bench.cpu_seconds(server.process.pid)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = bench.saturate(server.port, bodies, seconds, 16)
    cpu = bench.cpu_seconds(server.process.pid) - cpu_before
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
    n = result["requests"]
    if result.get("non_200"):
        raise SystemExit(f"{result['non_200']} failed requests")
    return {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]} | {
        "server_us": 1e6 * cpu / n,
        "client_us": 1e6 * wrk / n,
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="src/ directory of the other version")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    models = bench.sample_directory(args.out, 5000)
    bodies = bench.request_bodies()
    per_request: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for label, src in (("before", args.before), ("after", None)):
            server = serve(models, args.out / "bank-cache", args.workers, src)
            try:
                time.sleep(3.0 if args.workers > 1 else 0.5)
                r = measure(server, bodies, args.duration)
            finally:
                server.stop()
            per_request[label].append(r["server_us"])
            print(
                f"{label:<6} workers={args.workers} {r['rps']:7,.0f} req/s"
                f"  p50 {r['p50_ms']:.2f} ms"
                f"  p99 {r['p99_ms']:.2f} ms  {r['server_us']:.0f} us server CPU per request"
                f" ({1e6 / r['server_us']:,.0f} per CPU-s)  wrk {r['client_us']:.0f} us"
                f"  events per worker {bench.events_per_writer(server.events)}"
                f"  load {r['load']:.1f}",
                flush=True,
            )
    before, after = (statistics.median(per_request[k]) for k in ("before", "after"))
    print(f"median server CPU per request: {before:.0f} -> {after:.0f} us ({before / after:.2f}x)")


if __name__ == "__main__":
    main()
