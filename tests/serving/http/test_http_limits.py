"""One client cannot exhaust the predictor, and hostile input never gets a 500.

Real ``clickrouter serve`` processes on 127.0.0.1 (short timeouts so the
timeout tests take a second or two), raw sockets doing the attacks: huge or
endless headers, long URLs, idle and trickling connections, thousands of
connections, deeply nested JSON, upgrade requests. Each test checks the
answer and that the server kept its memory and descriptors and went on
serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serving.http.http_support import PROFILE

KEEP_ALIVE = 1.0
READ_TIMEOUT = 1.0
MAX_CONNECTIONS = 1000
MAX_BODY = 256 * 1024
PROTOCOLS = ["httptools", "httptools-asgi", "h11"]


class Served:
    """`python -m clickrouter.cli serve` on a free port, waited on until ready."""

    def __init__(self, tmp: Path, models: Path, *extra: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        port_file = tmp / "port"
        command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
        command += ["--port", "0", "--port-file", str(port_file), "--events", str(tmp / "ev")]
        command += ["--cache-dir", str(tmp.parent / "cache")]
        command += ["--keep-alive", str(KEEP_ALIVE), "--request-read-timeout", str(READ_TIMEOUT)]
        env = {
            **os.environ,
            "CLICKROUTER_POSTBACK_AUTH": "off",  # postback bodies get parsed
            "CLICKROUTER_MAX_BODY_BYTES": str(MAX_BODY),  # room for 100,000 brackets
        }
        self.process = subprocess.Popen([*command, *extra], env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while not port_file.exists():
            assert self.process.poll() is None, "server exited while starting"
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        while not self.ready():
            assert self.process.poll() is None, "server exited while starting"
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def serve(
    sample_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Served]]:
    """serve(protocol, *flags): one server per distinct configuration, kept for the module."""
    started: dict[tuple[str, ...], Served] = {}
    root = tmp_path_factory.mktemp("limits")

    def get(protocol: str = "httptools", *flags: str) -> Served:
        key = (protocol, *flags)
        if key not in started:
            args = ["--http", protocol, "--max-connections", str(MAX_CONNECTIONS), *flags]
            started[key] = Served(root / f"s{len(started)}", sample_models, *args)
        return started[key]

    yield get
    for server in started.values():
        server.stop()


def exchange(server: Served, data: bytes, *, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one answer until the server closes: (status, headers, body)."""
    with server.connect() as sock:
        sock.settimeout(timeout)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # refused before reading all of it: the answer is still there
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    buffer = b""
    try:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    except ConnectionResetError:
        pass
    if b"\r\n\r\n" not in buffer:
        return 0, {}, buffer  # closed without an answer
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    pairs = (line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in pairs}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: x", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


DECIDE = request("POST", "/v1/decide", body=json.dumps(PROFILE).encode())


def assert_serving(server: Served) -> None:
    assert exchange(server, DECIDE)[0] == 200


def error_of(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str)
    return message


def refusals(server: Served, reason: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    prefix = f'clickrouter_http_refusals_total{{reason="{reason}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


# -- request heads -----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_256_kb_header_is_refused_431_and_memory_stays_bounded(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol)
    assert_serving(server)
    before = server.rss_bytes()
    for _ in range(5):
        status, headers, body = exchange(
            server, request("GET", "/v1/models", "X-Big: " + "a" * 262144)
        )
        assert status == 431, body
        assert headers["connection"] == "close" and "exceed" in error_of(body)
    assert server.rss_bytes() - before < 32 * 2**20
    assert refusals(server, "headers_too_large") >= 5
    assert_serving(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_endless_header_line_is_cut_off_early(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol)
    before = server.rss_bytes()
    sent = 0
    with server.connect() as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nX-Endless: ")
        chunk = b"a" * 65536
        try:
            while sent < 256 * 2**20:  # the 256 MB of the original attack, if it came to that
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_answer(sock)
    assert status in (431, 0), body  # 0: the reset overtook the answer
    assert sent < 32 * 2**20  # the server stopped reading long before (socket buffers aside)
    assert server.rss_bytes() - before < 32 * 2**20
    assert_serving(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_many_small_headers_are_refused_431(serve: Callable[..., Served], protocol: str) -> None:
    server = serve(protocol)
    many = [f"X-{i}: v" for i in range(5000)]
    status, _, body = exchange(server, request("GET", "/v1/models", *many))
    assert status == 431 and "header lines" in error_of(body)
    just_enough = [f"X-{i}: v" for i in range(90)]
    assert exchange(server, request("GET", "/v1/models", *just_enough))[0] == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_url_is_refused_414(serve: Callable[..., Served], protocol: str) -> None:
    server = serve(protocol)
    status, headers, body = exchange(server, request("GET", "/v1/click?x=" + "a" * 20000))
    assert status == 414 and "target" in error_of(body)
    assert headers["content-type"] == "application/json"
    status, _, _ = exchange(server, request("GET", "/v1/click?country=FR&x=" + "a" * 4000))
    assert status == 302  # long but within the limit


# -- time ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_idle_connection_is_closed_after_the_keep_alive(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol)
    with server.connect() as sock:  # never sends a byte
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < KEEP_ALIVE + 3
    with server.connect() as sock:  # idle after an answer
        sock.sendall(DECIDE)
        assert read_answer(sock)[0] == 200
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < KEEP_ALIVE + 3


@pytest.mark.parametrize("protocol", ["httptools", "httptools-asgi"])
def test_blank_lines_do_not_keep_a_connection_open(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol)
    with server.connect() as sock:
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - started < 10:
                sock.sendall(b"\r\n")  # starts no request
                time.sleep(0.1)
        assert time.monotonic() - started < KEEP_ALIVE + 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("part", ["head", "body"])
def test_a_trickling_client_is_cut_off_with_408(
    serve: Callable[..., Served], protocol: str, part: str
) -> None:
    server = serve(protocol)
    body = json.dumps(PROFILE).encode()
    head = f"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
    whole = head + b"\r\n" + body
    start = len(head) - 10 if part == "head" else len(head) + 2
    with server.connect() as sock:
        sock.sendall(whole[:start])
        started = time.monotonic()
        try:
            for byte in whole[start : start + 50]:  # a byte every 0.1 s: never done in time
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, answer = read_answer(sock)
        assert time.monotonic() - started < READ_TIMEOUT + 3
    assert status == 408 and "within" in error_of(answer), answer
    assert headers["connection"] == "close"
    assert_serving(server)


# -- connections -----------------------------------------------------------------


# a small cap, long timeouts: only the cap bounds what the tests below hold open
CAPPED = ("--max-connections", "8", "--keep-alive", "60", "--request-read-timeout", "30")


def test_10000_idle_connections_do_not_stop_the_service(serve: Callable[..., Served]) -> None:
    server = serve("httptools", *CAPPED)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 10_000 + 512
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    assert_serving(server)
    rss, fds, evicted = (
        server.rss_bytes(),
        server.open_fds(),
        refusals(server, "connection_evicted"),
    )
    regular = server.connect()  # a client in the middle of a request whenever others arrive
    body = json.dumps(PROFILE).encode()
    idle: list[socket.socket] = []
    try:
        head = "POST /v1/decide HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        while len(idle) < 10_000:
            regular.sendall(head.encode())
            assert read_answer_keep_alive(regular) == 100  # the server is reading its request
            for _ in range(500):
                idle.append(server.connect())
            # the kernel completes connections before the server accepts them: wait
            # until it has, so that the regular connection is still mid-request then
            deadline = time.monotonic() + 30
            while refusals(server, "connection_evicted") - evicted < len(idle) - 8:
                assert time.monotonic() < deadline, "connections not accepted"
                time.sleep(0.02)
            regular.sendall(body)
            assert read_answer_keep_alive(regular) == 200
            assert server.open_fds() <= fds + 8 + 16  # the cap, and connections being closed
        assert_serving(server)  # a new connection too
        assert server.rss_bytes() - rss < 64 * 2**20
        # all but the last few were closed to make room, each when a newer one arrived
        assert refusals(server, "connection_evicted") - evicted >= 10_000 - 8
        assert sum(1 for sock in idle[:-8] if _closed(sock)) == len(idle) - 8
    finally:
        regular.close()
        for sock in idle:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def read_answer_keep_alive(sock: socket.socket) -> int:
    """Status of one content-length framed answer, leaving the connection open."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 100 "):
        return 100
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


@pytest.mark.parametrize("protocol", ["httptools", pytest.param("h11", marks=pytest.mark.slow)])
def test_beyond_the_cap_busy_connections_stay_and_the_new_one_gets_503(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol, *CAPPED)
    busy = [server.connect() for _ in range(8)]
    try:
        for sock in busy:  # each one in the middle of a request: none idle
            sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        with server.connect() as extra:
            status, headers, body = read_answer(extra)
        assert status == 503 and "limit" in error_of(body) and headers["retry-after"] == "1"
        body = json.dumps(PROFILE).encode()
        for sock in busy:  # the held ones are still served
            sock.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert read_answer_keep_alive(sock) == 200
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert_serving(server)


# -- bodies and fields -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["httptools", "httptools-asgi"])
@pytest.mark.parametrize(
    "target", ["/v1/decide", "/v1/score", "/v1/postback", "/v2/models/clickrouter/infer"]
)
def test_deeply_nested_json_is_a_400(
    serve: Callable[..., Served], protocol: str, target: str
) -> None:
    server = serve(protocol)
    for nested in (b"[" * 100_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 33 + b"]" * 33):
        status, _, body = exchange(server, request("POST", target, body=nested))
        assert status == 400, (target, body[:200])
        assert "nested" in error_of(body) or target.startswith("/v2"), body


def test_json_nested_within_the_limit_is_decided(serve: Callable[..., Served]) -> None:
    server = serve("httptools")
    profile = {**PROFILE, "extra": json.loads("[" * 20 + "]" * 20)}
    status, _, body = exchange(
        server, request("POST", "/v1/decide", body=json.dumps(profile).encode())
    )
    assert status == 200, body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tz", "Europe"),
        ("tz", "Europe/" + "x" * 300),
        ("tz", "../../etc/passwd"),
        ("ts", "0001-01-01T00:00:00Z"),
        ("ts", "1900-01-01T00:00:00Z"),
        ("ts", "1969-12-31T23:59:59Z"),
        ("ts", "2999-01-01T00:00:00Z"),
        ("ts", time.time() + 86400),
    ],
)
def test_hostile_tz_and_ts_are_400_on_decide_and_click(
    serve: Callable[..., Served], field: str, value: object
) -> None:
    server = serve("httptools")
    body = json.dumps({**PROFILE, field: value}).encode()
    status, _, answer = exchange(server, request("POST", "/v1/decide", body=body))
    assert status == 400 and f"field '{field}'" in error_of(answer)
    answer_click = httpx.get(server.url + "/v1/click", params={"country": "FR", field: str(value)})
    assert answer_click.status_code == 400 and f"field '{field}'" in answer_click.json()["error"]


# -- methods and upgrades -----------------------------------------------------------


@pytest.mark.parametrize("protocol", ["httptools", "httptools-asgi"])
def test_a_post_with_upgrade_gets_a_clear_answer(
    serve: Callable[..., Served], protocol: str
) -> None:
    server = serve(protocol)
    body = json.dumps(PROFILE).encode()
    for upgrade in ("websocket", "h2c"):
        data = request(
            "POST", "/v1/decide", "Connection: Upgrade", f"Upgrade: {upgrade}", body=body
        )
        started = time.monotonic()
        status, headers, answer = exchange(server, data, timeout=5)
        assert time.monotonic() - started < 5
        assert status == 400 and "upgrade" in error_of(answer)
        assert headers["connection"] == "close"
    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    assert exchange(server, connect)[0] == 400
    assert_serving(server)


def test_h11_serves_a_post_with_upgrade_as_plain_http(serve: Callable[..., Served]) -> None:
    server = serve("h11")
    body = json.dumps(PROFILE).encode()
    data = request("POST", "/v1/decide", "Connection: Upgrade", "Upgrade: h2c", body=body)
    assert exchange(server, data, timeout=5)[0] == 200


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("GET", "/v1/decide", "POST"),
        ("DELETE", "/v1/postback", "GET, POST"),
        ("OPTIONS", "/v1/click", "GET"),
        ("PUT", "/v2/models/clickrouter/infer", "POST"),
    ],
)
def test_405_names_the_allowed_methods(
    serve: Callable[..., Served], method: str, target: str, allowed: str
) -> None:
    server = serve("httptools")
    status, headers, body = exchange(server, request(method, target))
    assert status == 405 and headers["allow"] == allowed
    assert method in error_of(body)
