"""Load and inspection helpers of the durability tests: a pipelining raw-socket
client (several requests per read, so answers are group-committed), a
`clickrouter serve` process, and a strict reader of the event log."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clickrouter.events import ClickEvent, decode_event
from reference.sample_models import make_sample_directory
from serving.http.http_support import N_CAMPAIGNS, PROFILE

STARTED: list[ServeProcess] = []  # every server process of the current test
BODY = json.dumps(PROFILE).encode()
DECIDE = (
    b"POST /v1/decide HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class Tally:
    """What the clients saw: click ids of 200 answers, and every other status."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clicks: list[str] = []
        self.statuses: dict[int, int] = {}
        self.refusals: list[bytes] = []

    def add(self, status: int, body: bytes) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.clicks.append(json.loads(body)["click_id"])
            elif len(self.refusals) < 5:
                self.refusals.append(body)


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes] | None:
    """One HTTP/1.1 response from ``sock`` (``buf`` holds bytes read ahead); None on EOF."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    start = len(head) + 4
    while len(buf) < start + length:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    body = bytes(buf[start : start + length])
    del buf[: start + length]
    return int(head[9:12]), body


def pipelined_client(
    port: int, tally: Tally, stop: threading.Event, depth: int = 8, rate: float | None = None
) -> None:
    """Sends ``depth`` decisions per write until ``stop`` (or the server goes away);
    at most ``rate`` decisions per second when given."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return
    buf = bytearray()
    started, sent = time.monotonic(), 0
    with sock:
        while not stop.is_set():
            if rate is not None:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            try:
                sock.sendall(DECIDE * depth)
                for _ in range(depth):
                    answer = read_response(sock, buf)
                    if answer is None:
                        return
                    tally.add(*answer)
            except OSError:
                return  # killed server: a request without an answer is not counted
            sent += depth


def run_clients(
    port: int, tally: Tally, n: int = 3, **kwargs: object
) -> tuple[threading.Event, list[threading.Thread]]:
    """``n`` pipelining clients (see :func:`pipelined_client`) and their stop switch."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=pipelined_client, args=(port, tally, stop), kwargs=kwargs)
        for _ in range(n)
    ]
    for thread in threads:
        thread.start()
    return stop, threads


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_stray_servers() -> Iterator[None]:
    """Kill the servers a failed test left running."""
    yield
    while STARTED:
        served = STARTED.pop()
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(timeout=30)
        served.log.close()


class ServeProcess:
    """`python -m clickrouter.cli serve` on a free port, waited on until ready."""

    def __init__(self, work: Path, models: Path, events: str, *extra: str) -> None:
        self.port_file = work / f"port-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
        command += ["--port", "0", "--port-file", str(self.port_file), "--events", events]
        self.log = open(work / "serve.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, *extra], env={**os.environ}, stdout=self.log, stderr=self.log
        )
        STARTED.append(self)
        wait_for(lambda: self.port_file.exists() or self.process.poll() is not None, 60, "port")
        assert self.process.poll() is None, (work / "serve.log").read_text()
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self.ready, 60, "ready")

    def ready(self) -> bool:
        assert self.process.poll() is None, "server exited while starting"
        try:
            return httpx.get(self.url + "/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def logged_clicks(directory: Path) -> list[str]:
    """Click ids of every record in the event log, strictly: each line of a segment
    must decode; only a segment's unterminated last line (a write cut short by a
    kill, never answered) is left out."""
    clicks = []
    for segment in sorted(directory.glob("*.jsonl")):
        data = segment.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            event = decode_event(line)
            if isinstance(event, ClickEvent):
                clicks.append(event.click_id)
    return clicks


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int) -> None:
    """Write ``path`` until the disk is full, then give back ``leave`` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = 0
        while True:
            try:
                size += os.write(fd, bytes(4096))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        os.ftruncate(fd, max(size - leave, 0))
    finally:
        os.close(fd)


@pytest.fixture(name="sample_models", scope="session")
def sample_models_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``http_support.sample_models`` for test directories outside tests/serving/http."""
    return make_sample_directory(tmp_path_factory.mktemp("models") / "sample", N_CAMPAIGNS)
