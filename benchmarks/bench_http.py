"""HTTP predictor benchmark: /v1/decide over loopback with 5,000 campaigns.

Measures, in one run:

* the baseline: a server that loops sklearn ``predict_proba`` over every campaign
  model per request (the original system), a handful of requests;
* the HTTP stack choice: ``clickrouter serve`` on uvicorn with uvloop + httptools
  and the inline protocol for the hot routes (the default) against uvicorn's own
  httptools protocol (every request through ASGI), uvicorn's pure-Python
  defaults (asyncio + h11) and granian, one worker;
* saturated throughput and p50/p99 of ``clickrouter serve`` with 1 and 2 workers
  (load from ``wrk`` when installed, else a raw-socket asyncio client in its own
  process);
* p50/p99 at a fixed 1,000 requests/s (open loop: latency counted from each
  request's scheduled send time, so a stalled server cannot hide its queue);
* the cost of durability: the default (``--durability write``: a click event
  reaches the OS before its answer leaves, one ``write(2)`` per read) against
  ``--durability async`` (queued, written by a thread every 20 ms: what a kill
  loses) and ``--durability fsync``, as ratios of one run. ``--suite
  durability`` runs only these.

The sample model directory and the compiled-bank cache are built once under
``--out`` and reused. Every server is a real subprocess on 127.0.0.1.

    .venv/bin/python benchmarks/bench_http.py [--campaigns 5000] [--duration 8] [--out bench-out]
    .venv/bin/python benchmarks/bench_http.py --suite durability [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"


# ---------------------------------------------------------------- load client


def _request_bytes(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _closed_loop(
    port: int, requests: list[bytes], connections: int, duration: float, count: int | None
):
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + duration

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        i = k
        while time.perf_counter() < deadline and (count is None or len(latencies) < count):
            start = time.perf_counter()
            status = await _exchange(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
            i += connections
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(connections)))
    return latencies, statuses, time.perf_counter() - started


async def _open_loop(port: int, requests: list[bytes], connections: int, rate: float, n: int):
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(HOST, port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(scheduled: float, data: bytes) -> None:
        reader, writer = await idle.get()  # waiting for a free connection counts as latency
        try:
            status = await _exchange(reader, writer, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            # the server closed the connection (a limit or timeout under overload):
            # counted as status 0, and the connection replaced
            writer.close()
            statuses[0] = statuses.get(0, 0) + 1
            idle.put_nowait(await asyncio.open_connection(HOST, port))
            return
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait((reader, writer))

    tasks = []
    started = time.perf_counter() + 0.05
    for i in range(n):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    return latencies, statuses, time.perf_counter() - started


def client_main(spec: dict[str, Any]) -> None:
    """Runs in its own process; prints one JSON line of results."""
    import uvloop

    requests = [_request_bytes(spec["path"], b.encode()) for b in spec["bodies"]]
    if spec["mode"] == "closed":
        coro = _closed_loop(
            spec["port"], requests, spec["connections"], spec["duration"], spec.get("count")
        )
    else:
        coro = _open_loop(spec["port"], requests, spec["connections"], spec["rate"], spec["n"])
    latencies, statuses, seconds = uvloop.run(coro)
    # a file, not stdout: a large result on a pipe was seen cut short under load
    Path(spec["result_file"]).write_text(
        json.dumps({"latencies": latencies, "statuses": statuses, "seconds": seconds})
    )


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        result_file = Path(tmp) / "result.json"
        answer = subprocess.run(
            [sys.executable, __file__, "--client"],
            input=json.dumps({**spec, "result_file": str(result_file)}),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if answer.returncode != 0:
            raise SystemExit(f"load client failed:\n{answer.stderr}")
        raw = json.loads(result_file.read_text())
    return summarise(raw["latencies"], raw["statuses"], raw["seconds"])


def summarise(latencies: list[float], statuses: dict[Any, int], seconds: float) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1e3
    ok = sum(n for s, n in statuses.items() if int(s) == 200)
    return {
        "requests": len(latencies),
        "non_200": len(latencies) - ok,
        "rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


# ------------------------------------------------------------------------ wrk

_WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
bodies = %s
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter %% #bodies) + 1])
end
"""
# paces each connection: `connections` connections x one request per `gap` ms ~ the rate
_WRK_DELAY = """
delay = function()
  return %d
end
"""


def run_wrk(
    port: int, bodies: list[str], connections: int, duration: float, gap_ms: int | None = None
) -> dict[str, Any]:
    lua_bodies = "{" + ",".join(json.dumps(b) for b in bodies) + "}"  # JSON strings are Lua strings
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_LUA % lua_bodies + ("" if gap_ms is None else _WRK_DELAY % gap_ms))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        script.name,
    ]
    out = subprocess.run(
        [*command, f"http://{HOST}:{port}/v1/decide"], capture_output=True, text=True, check=True
    ).stdout
    os.unlink(script.name)
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": total,
        "non_200": int(bad[1]) if bad else 0,
        "socket_errors": errors[1] if errors else "",
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": _wrk_ms(out, "50%"),
        "p99_ms": _wrk_ms(out, "99%"),
    }


def _wrk_ms(out: str, label: str) -> float:
    value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


# -------------------------------------------------------------------- servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its direct children (the workers)."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    ticks = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A server subprocess on a free loopback port, ready when /v2/health/ready is 200."""

    def __init__(
        self,
        command: list[str],
        work: Path,
        ready_path: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.events = work  # set by predictor()
        self.port_file = work / f"port-{time.monotonic_ns()}"
        self.log = open(work / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        if port is None:
            command = [*command, "--port-file", str(self.port_file)]
        else:
            self.port_file.write_text(str(port))
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env)
        self.port = self._wait(ready_path)

    def _wait(self, ready_path: str, timeout: float = 900) -> int:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}; see server.log")
            if self.port_file.exists():
                port = int(self.port_file.read_text())
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}{ready_path}", timeout=5):
                        return port
                except OSError:
                    pass
            time.sleep(0.2)
        raise SystemExit("server not ready in time")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()


def predictor(
    models: Path,
    cache: Path,
    work: Path,
    workers: int,
    stack: tuple[str, str],
    durability: str = "write",
) -> Server:
    if stack[0] == "granian":
        return granian_predictor(models, cache, work, workers)
    events = Path(tempfile.mkdtemp(prefix="events-", dir=work))
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
    command += ["--port", "0", "--workers", str(workers), "--cache-dir", str(cache)]
    command += ["--events", str(events), "--loop", stack[0], "--http", stack[1]]
    command += ["--durability", durability]
    server = Server(command, work, "/v2/health/ready")
    server.events = events
    return server


def granian_predictor(models: Path, cache: Path, work: Path, workers: int) -> Server:
    """The same ASGI app under granian (Rust HTTP server), built by ``granian_app`` below."""
    from clickrouter.config import Settings
    from clickrouter.serving.http.server import CONFIG_ENV, ServeConfig, bind_socket

    events = Path(tempfile.mkdtemp(prefix="events-", dir=work))
    config = ServeConfig(
        models=str(models), events=str(events), settings=Settings.from_env({}), cache_dir=str(cache)
    )
    with bind_socket(HOST, 0) as probe:  # a free port (granian binds it itself)
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("granian")), "--interface", "asgi"]
    command += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    command += ["--loop", "uvloop", "--no-log", "bench_http:granian_app"]
    env = {**os.environ, CONFIG_ENV: json.dumps(_plain(config))}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    server = Server(command, work, "/v2/health/ready", port=port, env=env)
    server.events = events
    return server


def _plain(config: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(config)


def events_per_writer(events: Path) -> list[int]:
    """Click events each worker wrote (how evenly the shared socket spread the load)."""
    counts: dict[str, int] = {}
    for segment in events.glob("*.jsonl"):
        writer = segment.name.split(".")[0]
        counts[writer] = counts.get(writer, 0) + segment.read_bytes().count(b"\n")
    return sorted(counts.values())


def baseline_server_main(models: str, port_file: str) -> None:
    """The original system: one sklearn predict_proba per campaign per request."""
    import msgspec
    import uvicorn

    from clickrouter.catalogue import load_catalog
    from clickrouter.profile import extract_profile, profile_frame
    from clickrouter.serving.loading import load_model

    campaigns, _ = load_catalog(Path(models) / "campaigns.json")
    loaded = [(c, load_model(Path(models) / f"{c.id}.joblib")) for c in campaigns]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = b"{}"
        if scope["path"] == "/v1/decide":
            frame = profile_frame([extract_profile(msgspec.json.decode(body))])
            values = [m.predict_proba(frame)[0, 1] * c.payout for c, m in loaded]
            best = int(np.argmax(values))
            answer = msgspec.json.encode({"campaign_id": loaded[best][0].id})
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    config = uvicorn.Config(app, host=HOST, port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    Path(port_file).write_text(str(sock.getsockname()[1]))
    server.run(sockets=[sock])


# ---------------------------------------------------------------------- main


def sample_directory(out: Path, n: int) -> Path:
    from support import make_sample_directory

    path = out / f"models-{n}"
    if not (path / "campaigns.json").exists():  # written last: its presence means complete
        started = time.perf_counter()
        make_sample_directory(path, n, seed=n)
        print(f"built {n} campaign models in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def request_bodies(n: int = 64) -> list[str]:
    from support import random_profiles

    rng = np.random.default_rng(1)
    profiles = random_profiles(rng, n)
    for profile in profiles:  # raw requests: a timestamp to localise, not local fields
        del profile["local_hour"], profile["local_weekday"]
        profile["ts"] = 1780000000 + int(rng.integers(0, 7 * 86400))
    return [json.dumps(p) for p in profiles]


def saturate(port: int, bodies: list[str], duration: float, connections: int) -> dict[str, Any]:
    if shutil.which("wrk"):
        return {"client": "wrk", **run_wrk(port, bodies, connections, duration)}
    spec = {"mode": "closed", "port": port, "path": "/v1/decide", "bodies": bodies}
    spec |= {"connections": connections, "duration": duration}
    return {"client": "asyncio", **run_client(spec)}


def fixed_rate(port: int, bodies: list[str], rate: float, seconds: float) -> dict[str, Any]:
    if shutil.which("wrk"):  # C client: paced connections (latency = send to last byte)
        connections = 10
        gap_ms = round(1e3 * connections / rate)
        return {"client": "wrk paced", **run_wrk(port, bodies, connections, seconds, gap_ms)}
    spec = {"mode": "open", "port": port, "path": "/v1/decide", "bodies": bodies}
    spec |= {"connections": 32, "rate": rate, "n": int(rate * seconds)}
    return {"client": "asyncio open loop", **run_client(spec)}


def measure_baseline(models: Path, work: Path, bodies: list[str], n: int) -> dict[str, Any]:
    started = time.perf_counter()
    command = [sys.executable, __file__, "--baseline-server", str(models)]
    server = Server(command, work, "/")
    print(f"baseline server loaded in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        spec = {"mode": "closed", "port": server.port, "path": "/v1/decide", "bodies": bodies}
        spec |= {"connections": 1, "duration": 3600.0, "count": n}  # n sequential requests
        return run_client(spec)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per saturated run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline-requests", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument(
        "--suite",
        choices=("all", "durability"),
        default="all",
        help="durability: only the durability levels, 1 worker (no sklearn baseline)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="durability: repetitions of the level runs"
    )
    parser.add_argument(
        "--levels",
        default="async,write",
        help="durability: levels to run, comma-separated (async, write, fsync)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-server", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(json.loads(sys.stdin.read()))
    if args.baseline_server:
        return baseline_server_main(args.baseline_server, args.port_file)
    if args.suite == "durability":
        return run_durability(args)
    run(args)


def run(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    models = sample_directory(args.out, args.campaigns)
    cache = args.out / "bank-cache"
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    bodies = request_bodies()
    results: dict[str, Any] = {"campaigns": args.campaigns, "cpus": os.cpu_count()}
    results["load_avg_start"] = os.getloadavg()[0]
    results["baseline"] = measure_baseline(models, work, bodies, args.baseline_requests)
    report("baseline (sklearn loop)", results["baseline"])
    runs = [
        ("uvicorn asyncio+h11, 1 worker", 1, ("asyncio", "h11"), "write"),
        ("uvicorn uvloop+httptools ASGI only, 1 worker", 1, ("uvloop", "httptools-asgi"), "write"),
        ("uvicorn uvloop+httptools, 1 worker", 1, ("uvloop", "httptools"), "write"),
        ("uvicorn uvloop+httptools, 1 worker, async events", 1, ("uvloop", "httptools"), "async"),
        ("uvicorn uvloop+httptools, 2 workers", 2, ("uvloop", "httptools"), "write"),
    ]  # fmt: skip
    if shutil.which("granian") or Path(sys.executable).with_name("granian").exists():
        runs.insert(2, ("granian uvloop, 1 worker", 1, ("granian", ""), "write"))
    for name, workers, stack, durability in runs:
        results[name] = measure_server(
            args, models, cache, work, bodies, workers, stack, durability
        )
        report(name + ", saturated", results[name]["saturated"], results["baseline"])
        report(name + ", 1,000 req/s", results[name]["at_1000_rps"], results["baseline"])
        print(f"  click events written per worker: {results[name]['events_per_worker']}", end="")
        print(f"; load average {results[name]['load_avg']:.1f} at the start of this run")
    report_durability(
        results,
        "uvicorn uvloop+httptools, 1 worker",
        {"async": "uvicorn uvloop+httptools, 1 worker, async events"},
    )
    results["load_avg_end"] = os.getloadavg()[0]
    start, end = results["load_avg_start"], results["load_avg_end"]
    print(f"load average: {start:.1f} at start, {end:.1f} at end")
    (args.out / "bench_http.json").write_text(json.dumps(results, indent=1))
    check(results)


def measure_server(
    args: argparse.Namespace,
    models: Path,
    cache: Path,
    work: Path,
    bodies: list[str],
    workers: int,
    stack: tuple[str, str],
    durability: str,
) -> dict[str, Any]:
    """Saturated throughput (with server CPU) and latency at 1,000 req/s of one server."""
    server = predictor(models, cache, work, workers, stack, durability)
    load = os.getloadavg()[0]
    try:
        saturate(server.port, bodies, 2.0, args.connections)  # warm-up, discarded
        cpu_before = cpu_seconds(server.process.pid)
        saturated = saturate(server.port, bodies, args.duration, args.connections)
        saturated["server_cpu_s"] = cpu_seconds(server.process.pid) - cpu_before
        saturated["per_cpu_s"] = saturated["requests"] / saturated["server_cpu_s"]
        result = {
            "load_avg": load,
            "durability": durability,
            "saturated": saturated,
            "at_1000_rps": fixed_rate(server.port, bodies, 1000.0, 8.0),
        }
    finally:
        server.stop()
    result["events_per_worker"] = events_per_writer(server.events)
    return result


def run_durability(args: argparse.Namespace) -> None:
    """The durability levels on one worker, interleaved ``--rounds`` times, as ratios
    against ``async`` (the behaviour before answers waited for their events)."""
    args.out.mkdir(parents=True, exist_ok=True)
    models = sample_directory(args.out, args.campaigns)
    cache = args.out / "bank-cache"
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    bodies = request_bodies()
    results: dict[str, Any] = {"campaigns": args.campaigns, "cpus": os.cpu_count()}
    stack = ("uvloop", "httptools")
    levels = [level for level in args.levels.split(",") if level]
    if not {"async", "write"} <= set(levels) <= {"async", "write", "fsync"}:
        raise SystemExit(f"--levels {args.levels!r}: expected async,write[,fsync]")
    names = {level: f"1 worker, durability {level}" for level in levels}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names.values()}
    for _ in range(args.rounds):
        for level, name in names.items():
            run = measure_server(args, models, cache, work, bodies, 1, stack, level)
            runs[name].append(run)
            report(name + ", saturated", run["saturated"])
            report(name + ", 1,000 req/s", run["at_1000_rps"])
    for name, measured in runs.items():  # the median round of each level
        results[name] = sorted(measured, key=lambda r: r["saturated"]["rps"])[len(measured) // 2]
    others = {level: name for level, name in names.items() if level != "write"}
    report_durability(results, names["write"], others)
    (args.out / "bench_http_durability.json").write_text(json.dumps(results, indent=1))
    check(results)


def report_durability(results: dict[str, Any], default: str, others: dict[str, str]) -> None:
    """Throughput and CPU per decision of the default level relative to the others."""
    new = results[default]
    for level, name in others.items():
        old = results[name]
        rps = new["saturated"]["rps"] / old["saturated"]["rps"]
        per_cpu = new["saturated"]["per_cpu_s"] / old["saturated"]["per_cpu_s"]
        p99 = new["at_1000_rps"]["p99_ms"] / old["at_1000_rps"]["p99_ms"]
        results[f"durability write / {level}"] = {"rps": rps, "per_cpu_s": per_cpu, "p99": p99}
        print(
            f"durability write vs {level}: saturated throughput x{rps:.3f}, "
            f"decisions per server-CPU-second x{per_cpu:.3f}, p99 at 1,000 req/s x{p99:.2f}"
        )


def report(name: str, r: dict[str, Any], baseline: dict[str, Any] | None = None) -> None:
    ratio = f"  {r['rps'] / baseline['rps']:>9,.0f}x baseline" if baseline else ""
    errors = f"  non-200: {r.get('non_200', 0)}" if r.get("non_200") else ""
    p99 = f"  p99 {r['p99_ms']:7.2f} ms" if "p99_ms" in r else ""
    cpu = f"  {r['per_cpu_s']:,.0f} req/server-CPU-s" if "per_cpu_s" in r else ""
    line = f"{name:<58} {r['rps']:>9,.1f} req/s  p50 {r['p50_ms']:7.2f} ms{p99}{ratio}{cpu}{errors}"
    print(line, flush=True)


def check(results: dict[str, Any]) -> None:
    """Fail loudly on any failed request; report the targets."""
    failed = [
        name
        for name, r in results.items()
        if isinstance(r, dict) and any(m.get("non_200") for m in r.values() if isinstance(m, dict))
    ]
    if failed:
        raise SystemExit(f"requests failed in: {failed}")
    best = max(results[k]["saturated"]["rps"] for k in results if "worker" in k)
    default = (
        results.get("uvicorn uvloop+httptools, 1 worker") or results["1 worker, durability write"]
    )
    p99 = default["at_1000_rps"]["p99_ms"]
    print(
        f"targets: >= 5,000 decisions/s -> {best:,.0f}; p99 <= 5 ms at 1,000 req/s -> {p99:.2f} ms"
    )


def __getattr__(name: str) -> Any:
    """``bench_http:granian_app`` for granian, which takes an app, not a factory."""
    if name == "granian_app":
        from clickrouter.serving.http.server import app_from_env

        return app_from_env()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
