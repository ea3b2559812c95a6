"""The traffic driver's HTTP/1.1 client: one keep-alive connection, requests pipelined.

``http.client`` (and urllib3, httpx, requests) send one request and wait for
its answer before the next. On a small box shared with the predictor that
costs a send and a receive system call on each side per decision, a large
share of the predictor's CPU per decision in the demo. This client
writes several requests at once and reads their answers in order (HTTP/1.1
pipelining, RFC 9112 section 9.3.2), parsing them with httptools, the parser
uvicorn uses; ``request_many`` of one request is a plain keep-alive exchange.

No request is ever sent twice unless the server cannot have processed it:
when a reused connection turns out closed before any byte of an answer
arrived (the server dropped it while idle), or when the server announced
``Connection: close`` on an earlier answer (it processes nothing after that).
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httptools
import msgspec

from clickrouter.errors import InvalidInput

Request = tuple[str, str, bytes | None]  # method, path (with query), JSON body


@dataclass(frozen=True)
class Answer:
    """One response: status, decoded JSON body (None if none or not JSON), and the
    seconds from the write that carried its request to its last byte."""

    status: int
    body: Any
    seconds: float


class _Responses:
    """httptools callbacks collecting the answers of one connection."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, bytes, bool]] = []  # status, body, keep-alive
        self._body: list[bytes] = []
        self.started = False  # some byte of an answer has arrived

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        self.done.append(
            (parser.get_status_code(), b"".join(self._body), parser.should_keep_alive())
        )


class PredictorClient:
    """A keep-alive HTTP/1.1 connection to the predictor that can pipeline requests."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise InvalidInput(f"target: expected http://HOST:PORT, got {base_url!r}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.timeout = timeout
        self._host_header = f"host: {self.host}:{self.port}\r\n".encode("ascii")
        self._sock: socket.socket | None = None
        self._used = False  # the connection has carried an exchange already

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body or None); OSError when no answer came."""
        answer = self.request_many([(method, path, body)])[0]
        if answer is None:
            raise ConnectionError(f"no answer to {method} {path}")
        return answer.status, answer.body

    def request_many(self, requests: Sequence[Request]) -> list[Answer | None]:
        """The answers to ``requests``, in order, written in one go; None for a request
        that got no answer (connection lost or timed out: it is not resent)."""
        answers: list[Answer | None] = []
        while len(answers) < len(requests):
            pending = requests[len(answers) :]
            got, resend = self._exchange(pending)
            answers += got
            if len(got) < len(pending) and not resend:
                answers += [None] * (len(pending) - len(got))
        return answers

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _exchange(self, requests: Sequence[Request]) -> tuple[list[Answer], bool]:
        """Answers to a prefix of ``requests`` on one connection, and whether the rest
        may be sent again (the server cannot have processed them)."""
        reused = self._sock is not None and self._used
        try:
            sock = self._connection()
            started = time.perf_counter()
            sock.sendall(b"".join(self._encode(*r) for r in requests))
        except OSError:
            self.close()
            return [], reused  # a dropped idle connection refuses the write: nothing sent
        self._used = True
        responses = _Responses()
        answers: list[Answer] = []
        try:
            while len(answers) < len(requests):
                data = sock.recv(65536)
                if not data:
                    break
                responses.started = True
                responses.parser.feed_data(data)
                for status, body, keep_alive in responses.done[len(answers) :]:
                    answers.append(Answer(status, _json(body), time.perf_counter() - started))
                    if not keep_alive:
                        self.close()
                        return answers, True  # "close": nothing after it was processed
        except TimeoutError:  # the server may still be working on them: never resent
            self.close()
            return answers, False
        except (OSError, httptools.HttpParserError):
            self.close()  # a reset before any answer on a reused connection: dropped while idle
            return answers, reused and not responses.started
        if len(answers) < len(requests):  # the server closed the connection
            self.close()
            return answers, reused and not responses.started
        return answers, False

    def _connection(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._used = sock, False
        return self._sock

    def _encode(self, method: str, path: str, body: bytes | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n".encode("ascii") + self._host_header
        if body is None:
            return head + b"\r\n"
        length = f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        return head + length.encode("ascii") + body


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
