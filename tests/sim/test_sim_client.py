"""The driver's pipelining HTTP client against scripted raw-socket servers on loopback.

Each server logs the requests it processed, so the tests check what the
client promises: answers in order, and a request sent again only when the
server cannot have processed it (an idle connection it had closed, or
requests after an answer that said ``Connection: close``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import pytest

from clickrouter.errors import InvalidInput
from clickrouter.sim.client import PredictorClient

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"


class _Requests:
    """httptools callbacks: the paths of the complete requests of one read loop."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.paths: list[str] = []
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_complete(self) -> None:
        self.paths.append(self._url.decode())


class ScriptedServer:
    """Answers ``{"path": ...}`` per request; ``mode`` says how it treats its connections:

    keep-alive: answers everything; close-each: answers one request per connection
    with ``Connection: close`` and ignores the rest; crash-after-first: answers one
    request per connection, then drops it without a word; idle-close: closes each
    connection once it has answered everything sent so far; silent: never answers.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.processed: list[str] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        requests, answered = _Requests(), 0
        with conn:
            while data := conn.recv(65536):
                requests.parser.feed_data(data)
                if self.mode == "silent":
                    continue
                for path in requests.paths[answered:]:
                    answered += 1
                    self.processed.append(path)
                    last = self.mode in ("close-each", "crash-after-first")
                    header = b"connection: close\r\n" if self.mode == "close-each" else b""
                    body = b'{"path": "%s"}' % path.encode()
                    conn.sendall(ANSWER % (len(body), header, body))
                    if last:
                        return
                if self.mode == "idle-close":
                    time.sleep(0.05)  # let the answers leave, then drop the idle connection
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ScriptedServer]:
    scripted = ScriptedServer(request.param)
    yield scripted
    scripted.close()


def _paths(n: int, tag: str = "r") -> list[tuple[str, str, bytes | None]]:
    return [("POST", f"/{tag}{i}", b"{}") for i in range(n)]


def _answered(answers: list[Any]) -> list[str | None]:
    return [a.body["path"] if a is not None else None for a in answers]


@pytest.mark.parametrize("server", ["keep-alive"], indirect=True)
def test_pipelined_answers_come_back_in_order_on_one_connection(server: ScriptedServer) -> None:
    client = PredictorClient(f"http://127.0.0.1:{server.port}")
    answers = client.request_many(_paths(8))
    assert _answered(answers) == [f"/r{i}" for i in range(8)]
    assert all(a is not None and a.status == 200 and a.seconds > 0 for a in answers)
    assert client.request("GET", "/single") == (200, {"path": "/single"})
    client.close()
    assert server.connections == 1 and server.processed == [
        *(f"/r{i}" for i in range(8)),
        "/single",
    ]


@pytest.mark.parametrize("server", ["close-each"], indirect=True)
def test_requests_after_a_close_answer_are_sent_again(server: ScriptedServer) -> None:
    client = PredictorClient(f"http://127.0.0.1:{server.port}")
    answers = client.request_many(_paths(5))
    assert _answered(answers) == [f"/r{i}" for i in range(5)]
    assert server.processed == [f"/r{i}" for i in range(5)]  # each exactly once
    assert server.connections == 5


@pytest.mark.parametrize("server", ["crash-after-first"], indirect=True)
def test_requests_lost_with_the_connection_are_not_sent_again(server: ScriptedServer) -> None:
    client = PredictorClient(f"http://127.0.0.1:{server.port}")
    answers = client.request_many(_paths(4))
    assert _answered(answers) == ["/r0", None, None, None]
    time.sleep(0.1)
    assert server.processed == ["/r0"] and server.connections == 1


@pytest.mark.parametrize("server", ["idle-close"], indirect=True)
def test_an_idle_connection_the_server_closed_is_reopened(server: ScriptedServer) -> None:
    client = PredictorClient(f"http://127.0.0.1:{server.port}")
    assert _answered(client.request_many(_paths(3, "a"))) == ["/a0", "/a1", "/a2"]
    time.sleep(0.2)  # the server has dropped the connection meanwhile
    assert _answered(client.request_many(_paths(3, "b"))) == ["/b0", "/b1", "/b2"]
    client.close()
    assert server.processed == ["/a0", "/a1", "/a2", "/b0", "/b1", "/b2"]
    assert server.connections == 2


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_a_timeout_fails_the_requests_without_resending(server: ScriptedServer) -> None:
    client = PredictorClient(f"http://127.0.0.1:{server.port}", timeout=0.2)
    assert client.request_many(_paths(3)) == [None, None, None]
    with pytest.raises(OSError):
        client.request("GET", "/x")
    assert server.connections == 2  # one per call: nothing sent twice on a connection


def test_unreachable_server_and_bad_urls() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    assert PredictorClient(f"http://127.0.0.1:{port}").request_many(_paths(2)) == [None, None]
    with pytest.raises(InvalidInput, match="target"):
        PredictorClient("ftp://nowhere")
