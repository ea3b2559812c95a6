"""What one client may hold of a worker: header sizes, time, connections.

httptools parses whatever it is sent (a header of any size is buffered whole
before the parser reports it) and uvicorn arms no timer on a connection until
its first response, cancelling it again at the first byte of the next request.
So by themselves they let one client fill the memory with one request, hold a
connection forever by sending nothing or one byte at a time, and open
connections until the process runs out of file descriptors.
:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with those
limits (:class:`ServerLimits`), enforced on every request whatever path then
answers it:

* request target longer than ``max_url_bytes``: 414; more than
  ``max_headers`` header lines or ``max_header_bytes`` of them: 431. Counted
  as the parser reports them, and for a head still incomplete after a read,
  on the raw bytes received, so an unterminated header line is cut off too;
* a request must arrive whole (head and body) within ``read_timeout`` of its
  first byte (else 408 and close); a connection with no request under way is
  closed after ``keep_alive`` (also before its first request, and bytes that
  start no request, such as blank lines, do not keep it open);
* at most ``max_connections`` per worker: a new connection beyond that closes
  the connection idle the longest, or, when none is idle, is answered 503 and
  closed at once;
* ``Connection: upgrade`` and ``CONNECT`` get a 400: this server speaks only
  HTTP/1.1 and httptools would skip the body of such a request.

Every refusal is a JSON ``{"error": ...}`` answer with ``connection: close``,
counted in ``clickrouter_http_refusals_total`` by reason. :class:`GuardedH11Protocol`
applies the same limits to uvicorn's h11 protocol.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import h11
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

# descriptors a worker keeps for itself beyond its connections (listening socket,
# event-log segments, memory-mapped tables, pipes to the model pool, logs)
RESERVED_FDS = 256
# a head is measured on raw bytes only from its second read: the first read of a
# head may also carry the requests before it, so up to one read goes uncounted
_REQUEST_LINE_SLACK = 1024


@dataclass(frozen=True)
class ServerLimits:
    """The per-connection limits of one worker (see the module docstring)."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_url_bytes: int = 8 * 1024
    read_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 4096

    @property
    def max_head_bytes(self) -> int:
        """Raw bytes a request head may take: its target, its header lines and framing."""
        return self.max_url_bytes + self.max_header_bytes + _REQUEST_LINE_SLACK


def connection_capacity(wanted: int) -> int:
    """Connections a worker can hold: ``wanted``, within the descriptor limit.

    Raises the soft ``RLIMIT_NOFILE`` towards the hard one when it is too low for
    ``wanted``; when even the hard limit is, the capacity shrinks (and says so):
    a worker out of descriptors can accept nothing, not even its own files.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    capacity = max(1, soft - RESERVED_FDS)
    log.warning(
        "max_connections %d exceeds the file descriptor limit (%d): %d connections per worker",
        wanted,
        soft,
        capacity,
    )
    return capacity


def refusal(status: int, message: str) -> bytes:
    """The bytes of a JSON error answer after which the connection closes."""
    body = msgspec.json.encode({"error": message})
    head = [STATUS_LINE[status], b"content-type: application/json\r\n"]
    head.append(b"content-length: %d\r\nconnection: close\r\n" % len(body))
    if status == 503:
        head.append(b"retry-after: 1\r\n")
    return b"".join([*head, b"\r\n", body])


class _Refused(Exception):
    """Stops the parser: the answer is in ``GuardedHttpToolsProtocol._refusal``."""


class Guarded(Protocol):
    """A connection as the book sees it (both guarded protocols)."""

    transport: asyncio.Transport
    flow: FlowControl

    def evict(self) -> None: ...

    def read_timed_out(self) -> None: ...


class ConnectionBook:
    """The connections of one server: the cap, and the sweep that ends stalled ones.

    ``idle`` holds the connections with no request under way, ``reading`` those
    whose request has begun but not fully arrived, each in the order it entered
    (with that time): the timeouts are the same for all, so the sweep only looks
    at the front of each until it finds one still in time.
    """

    def __init__(
        self, limits: ServerLimits, loop: asyncio.AbstractEventLoop, count: Callable[[str], None]
    ) -> None:
        self.limits = limits
        self.loop = loop
        self.count = count
        self.idle: OrderedDict[Guarded, float] = OrderedDict()
        self.reading: OrderedDict[Guarded, float] = OrderedDict()
        self.open = 0
        self._sweeping = False
        # short enough that a timeout is late by a fraction of itself at most
        self.period = max(0.05, min(1.0, limits.keep_alive / 4, limits.read_timeout / 4))

    def admit(self, conn: Guarded) -> bool:
        """Count a new connection; False if it must be refused (no room, none idle)."""
        if self.open >= self.limits.max_connections:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            oldest.evict()
        self.open += 1
        self.idle[conn] = self.loop.time()
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(self.period, self._sweep)
        return True

    def forget(self, conn: Guarded) -> None:
        self.open -= 1
        self.idle.pop(conn, None)
        self.reading.pop(conn, None)

    def _sweep(self) -> None:
        now = self.loop.time()
        idle, reading = self.idle, self.reading
        expired = now - self.limits.keep_alive
        while idle:
            conn = next(iter(idle))
            if idle[conn] > expired:
                break
            del idle[conn]
            conn.transport.close()
        expired = now - self.limits.read_timeout
        while reading:
            conn = next(iter(reading))
            if reading[conn] > expired:
                break
            del reading[conn]
            if conn.flow.read_paused:  # the server stopped reading, not the client
                reading[conn] = now
            else:
                conn.read_timed_out()
        if self.open > 0:
            self.loop.call_later(self.period, self._sweep)
        else:
            self._sweeping = False


# one book per server (uvicorn's ServerState), so in-process servers stay apart
_books: weakref.WeakKeyDictionary[ServerState, ConnectionBook] = weakref.WeakKeyDictionary()


def _book(server_state: ServerState, app: Any, loop: asyncio.AbstractEventLoop) -> ConnectionBook:
    book = _books.get(server_state)
    if book is None:
        limited = _limited_app(app)
        limits = limited.limits if limited is not None else ServerLimits()
        metrics = getattr(limited, "metrics", None)
        count = metrics.refused if metrics is not None else _uncounted
        book = _books[server_state] = ConnectionBook(limits, loop, count)
    return book


def _limited_app(app: Any) -> Any:
    """The app carrying ``limits`` inside uvicorn's middleware wrappers, or None."""
    for _ in range(8):
        if isinstance(getattr(app, "limits", None), ServerLimits):
            return app
        app = getattr(app, "app", None)
    return None


def _uncounted(reason: str) -> None:
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within :class:`ServerLimits` (every request via ASGI)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.book = _book(server_state, self.app, self.loop)
        self.limits = self.book.limits
        self._admitted = False
        self._heads = 0  # requests begun on this connection
        self._in_head = False  # a request line or header lines are being read
        self._head_bytes = 0  # raw bytes of the current head, from its second read
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: bytes | None = None

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.book.admit(self)
        if not self._admitted:
            self.book.count("connection_limit")
            limit = self.limits.max_connections
            message = f"the server is at its limit of {limit} connections; retry later"
            transport.write(refusal(503, message))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.book.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads, in_head = self._heads, self._in_head
        super().data_received(data)
        if self._in_head and in_head and heads == self._heads and self._refusal is None:
            # the whole read belongs to one unfinished head: httptools buffers
            # a header line until its end, so count what it is holding
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser stopped on: a refusal of ours, or malformed HTTP."""
        answer = self._refusal or refusal(400, "malformed HTTP request")
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
        if self._refusal is None:
            self.book.count("malformed")
        self._refusal = None

    def evict(self) -> None:
        """Closed to make room for a new connection (it was idle the longest)."""
        self._admitted = False
        self.book.count("connection_evicted")
        self.transport.close()

    def read_timed_out(self) -> None:
        """The request under way did not arrive within ``read_timeout``: 408, close."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is half sent: no room for another
            return
        self.book.count("read_timeout")
        timeout = self.limits.read_timeout
        self.transport.write(refusal(408, f"request not received within {timeout:g} s"))
        self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close (the answers before it leave first)."""
        self._refusal = refusal(status, message)
        self.book.count(_REASONS[status])
        self.send_400_response(message)

    def _stop(self, status: int, message: str) -> None:
        """Refuse from a parser callback: the parser stops, the answer follows."""
        self._refusal = refusal(status, message)
        self.book.count(_REASONS[status])
        raise _Refused

    # request progress, shared with the inline protocol

    def _request_began(self) -> None:
        book = self.book
        book.idle.pop(self, None)
        book.reading[self] = book.loop.time()
        self._heads += 1
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0

    def _head_complete(self) -> None:
        self._in_head = False
        if self.parser.should_upgrade():
            if self.parser.get_method() == b"CONNECT":
                self._stop(400, "method CONNECT is not supported")
            upgrade = dict(self.headers).get(b"upgrade", b"").decode("latin-1")[:64]
            self._stop(
                400,
                f"protocol upgrade ({upgrade!r}) is not supported: send the request"
                " without 'Connection: upgrade'",
            )

    def _request_read(self) -> None:
        self.book.reading.pop(self, None)

    def _became_idle(self) -> None:
        book = self.book
        if self._admitted and self not in book.reading and not self.transport.is_closing():
            book.idle[self] = book.loop.time()

    # parser callbacks

    def on_message_begin(self) -> None:
        self._request_began()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(414, f"request target exceeds {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        limits = self.limits
        if self._header_count > limits.max_headers:
            self._stop(431, f"more than {limits.max_headers} request header lines")
        if self._header_bytes > limits.max_header_bytes:
            self._stop(431, f"request headers exceed {limits.max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_complete()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._request_read()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a queued request starts now: not idle
        super().on_response_complete()
        if not queued:
            self._became_idle()


_REASONS = {
    400: "upgrade",
    408: "read_timeout",
    414: "url_too_long",
    431: "headers_too_large",
    503: "connection_limit",
}


class _BoundedH11Connection(h11.Connection):
    """h11's connection with the head limits checked on each request it parses.

    h11 bounds only a head still incomplete (``max_incomplete_event_size``); a
    whole one arriving in one read is parsed at any size.
    """

    def __init__(self, limits: ServerLimits) -> None:
        super().__init__(h11.SERVER, limits.max_url_bytes + limits.max_header_bytes)
        self.limits = limits
        self.refusal: tuple[int, str] | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:  # the incomplete head outgrew the bound
                self.refusal = (431, f"request headers exceed {self.limits.max_header_bytes} bytes")
            raise
        if isinstance(event, h11.Request):
            self._check(event)
        return event

    def _check(self, request: h11.Request) -> None:
        limits = self.limits
        if len(request.target) > limits.max_url_bytes:
            self.refusal = (414, f"request target exceeds {limits.max_url_bytes} bytes")
        elif len(request.headers) > limits.max_headers:
            self.refusal = (431, f"more than {limits.max_headers} request header lines")
        elif sum(len(n) + len(v) + 4 for n, v in request.headers) > limits.max_header_bytes:
            self.refusal = (431, f"request headers exceed {limits.max_header_bytes} bytes")
        if self.refusal is not None:
            raise h11.RemoteProtocolError(self.refusal[1], self.refusal[0])


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol within the same limits (h11 serves an upgrade request
    as plain HTTP: no refusal needed)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.book = _book(server_state, self.app, self.loop)
        self.limits = self.book.limits
        self.conn = self.bounded = _BoundedH11Connection(self.limits)
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.book.admit(self)
        if not self._admitted:
            self.book.count("connection_limit")
            limit = self.limits.max_connections
            message = f"the server is at its limit of {limit} connections; retry later"
            transport.write(refusal(503, message))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.book.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def _track(self) -> None:
        """File the connection as reading a request, idle, or neither (the app's turn)."""
        book = self.book
        if not self._admitted or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
            if self not in book.reading:
                book.idle.pop(self, None)
                book.reading[self] = book.loop.time()
            return
        book.reading.pop(self, None)
        cycle = self.cycle
        waiting = state is h11.IDLE and (cycle is None or cycle.response_complete)
        if waiting and self not in book.idle:
            book.idle[self] = book.loop.time()

    def send_400_response(self, msg: str) -> None:
        status, message = self.bounded.refusal or (400, "malformed HTTP request")
        self.book.count(_REASONS[status] if status != 400 else "malformed")
        self.transport.write(refusal(status, message))
        self.transport.close()

    def evict(self) -> None:
        self._admitted = False
        self.book.count("connection_evicted")
        self.transport.close()

    def read_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        self.book.count("read_timeout")
        timeout = self.limits.read_timeout
        self.transport.write(refusal(408, f"request not received within {timeout:g} s"))
        self.transport.close()
