"""`clickrouter serve` as a real process: SIGTERM drains every event; workers share weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from clickrouter.events import ClickEvent, SaleEvent
from clickrouter.serving.http.postback_auth import signed_query
from serving.http.http_support import PROFILE, read_events
from serving.http.postback_support import CLICK_SECRET, GLOBAL_SECRET


class Served:
    """`python -m clickrouter.cli serve ...` on a free port, waited on until ready."""

    def __init__(self, tmp_path: Path, models: Path, *extra: str) -> None:
        self.port_file = tmp_path / "port"
        self.events = tmp_path / "events"
        command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
        command += ["--port", "0", "--port-file", str(self.port_file), "--events", str(self.events)]
        env = {**os.environ, "CLICKROUTER_RELOAD_POLL_SECONDS": "0.2"}
        # every worker verifies the click ids any of them issued
        env |= {
            "CLICKROUTER_POSTBACK_SECRET": GLOBAL_SECRET,
            "CLICKROUTER_CLICK_SECRET": CLICK_SECRET,
        }
        self.process = subprocess.Popen([*command, *extra], env=env, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self._port()}"
        self._wait_ready()

    def _port(self) -> int:
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            assert self.process.poll() is None, self.process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.05)
        return int(self.port_file.read_text())

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "server exited while starting"
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.05)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process.stderr.close()  # type: ignore[union-attr]
        return code


def decided(client: httpx.Client) -> str:
    """A decision's click id; a worker still loading its bank says so with a 503 (retried)."""
    deadline = time.monotonic() + 60
    while True:
        answer = client.post("/v1/decide", json=PROFILE)
        if answer.status_code == 200:
            return str(answer.json()["click_id"])
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, "a worker stayed unready"
        time.sleep(0.05)


def decide_until(url: str, stop: threading.Event, answered: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                answer = client.post("/v1/decide", json=PROFILE)
            except httpx.TransportError:
                return  # the server went away: expected during shutdown
            if answer.status_code == 200:
                answered.append(answer.json()["click_id"])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_loses_no_event(tmp_path: Path, sample_models: Path, workers: str):
    cache = tmp_path / "cache"
    served = Served(tmp_path, sample_models, "--workers", workers, "--cache-dir", str(cache))
    if workers == "2":
        assert_workers_share_one_table(served.process.pid, cache)
    with httpx.Client(base_url=served.url) as client:
        sales = [decided(client) for _ in range(50)]
        for click_id in sales:  # each on whichever worker takes the connection
            sale = {"click_id": click_id, "revenue": "1.5"}
            with httpx.Client(base_url=served.url) as fresh:
                answer = fresh.get("/v1/postback", params=signed_query(GLOBAL_SECRET, sale))
            assert answer.status_code == 200, answer.text
    answered: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=decide_until, args=(served.url, stop, answered)) for _ in range(4)
    ]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 60
    while len(answered) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    before_scrape = len(answered)
    counted = decisions_counted(httpx.get(served.url + "/metrics").text)
    assert counted >= before_scrape  # one worker's own count would be about half of it
    assert served.terminate() == 0  # SIGTERM while the clients are still sending
    stop.set()
    for thread in clients:
        thread.join()
    events = read_events(served.events)
    logged_clicks = {e.click_id for e in events if isinstance(e, ClickEvent)}
    assert len(answered) >= 100
    assert set(answered) <= logged_clicks  # every answered decision was logged
    assert sorted(e.click_id for e in events if isinstance(e, SaleEvent)) == sorted(sales)
    segments = list(served.events.glob("*.jsonl"))
    assert len({s.name.split(".")[0] for s in segments}) == int(workers)  # one writer per worker
    assert all(Path(f"{s}.done").exists() for s in segments)  # sealed on shutdown


def decisions_counted(metrics: str) -> float:
    prefix = 'clickrouter_http_request_duration_seconds_count{route="/v1/decide"}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


def worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


def mapped_tables(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if line.endswith("table.npy")}


def assert_workers_share_one_table(parent: int, cache: Path) -> None:
    """Both worker processes memory-map the same compiled table file from the cache."""
    deadline = time.monotonic() + 60
    while True:  # ready means one worker answered; the other may still be loading
        tables = [mapped_tables(pid) for pid in worker_pids(parent)]
        tables = [t for t in tables if t]  # multiprocessing helpers map nothing
        if len(tables) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(tables) == 2 and tables[0] == tables[1]
    assert next(iter(tables[0])).startswith(str(cache))


def test_each_worker_serves_its_own_share_of_connections(tmp_path: Path, sample_models: Path):
    """One SO_REUSEPORT socket per worker: the kernel spreads new connections over both."""
    served = Served(tmp_path, sample_models, "--workers", "2", "--cache-dir", str(tmp_path / "c"))
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 16:  # both workers loaded: 16 fresh connections in a row answer ready
            status = httpx.get(served.url + "/v2/health/ready").status_code
            ready = ready + 1 if status == 200 else 0
            assert time.monotonic() < deadline, "workers not ready"
        for _ in range(32):  # a fresh connection each (no client: no keep-alive pool)
            assert httpx.post(served.url + "/v1/decide", json=PROFILE).status_code == 200
    finally:
        assert served.terminate() == 0
    clicks: dict[str, int] = {}
    for segment in served.events.glob("*.jsonl"):
        writer = segment.name.split(".")[0]
        lines = segment.read_bytes().splitlines()
        clicks[writer] = clicks.get(writer, 0) + sum(b'"type":"click"' in line for line in lines)
    assert sum(clicks.values()) == 32
    assert len(clicks) == 2 and min(clicks.values()) > 0, clicks  # P(all on one) = 2**-31


def test_reuseport_sockets_listen_on_one_port() -> None:
    import socket

    from clickrouter.serving.http.server import reuseport_sockets

    sockets = reuseport_sockets("127.0.0.1", 0, 3)
    try:
        assert len({s.getsockname()[1] for s in sockets}) == 1
        assert len({s.fileno() for s in sockets}) == 3
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_reuseport_sockets_refuse_a_port_in_use() -> None:
    from clickrouter.errors import ClickrouterError
    from clickrouter.serving.http.server import reuseport_sockets

    first = reuseport_sockets("127.0.0.1", 0, 2)
    try:
        with pytest.raises(ClickrouterError, match="cannot listen"):
            for s in reuseport_sockets("127.0.0.1", first[0].getsockname()[1], 2):
                s.close()  # only reached when it wrongly succeeds
    finally:
        for s in first:
            s.close()
