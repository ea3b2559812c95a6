"""What one client may hold of a worker: header sizes, time, connections.

httptools parses whatever it is sent (a header of any size is buffered whole
before the parser reports it) and uvicorn arms no timer on a connection until
its first response, cancelling it again at the first byte of the next request.
So by themselves they let one client fill the memory with one request, hold a
connection forever by sending nothing or one byte at a time, and open
connections until the process runs out of file descriptors.
The guarded protocols (uvicorn's, subclassed in
:mod:`~clickrouter.serving.http.uvicorn_protocols`) enforce the limits of
:class:`ServerLimits` on every request, whatever path then answers it:

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
counted in ``clickrouter_http_refusals_total`` by reason. This module holds
the limits, the book of a server's connections (:class:`ConnectionBook`) and
the head checks of h11 (:class:`BoundedH11Connection`), none of it tied to
uvicorn.
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


class Flow(Protocol):
    """A connection's flow control as the book reads it."""

    read_paused: bool


class Guarded(Protocol):
    """A connection as the book sees it (both guarded protocols)."""

    @property
    def transport(self) -> asyncio.Transport: ...

    @property
    def flow(self) -> Flow: ...

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


# one book per server (its uvicorn ServerState), so in-process servers stay apart
_books: weakref.WeakKeyDictionary[object, ConnectionBook] = weakref.WeakKeyDictionary()


def connection_book(server: object, app: Any, loop: asyncio.AbstractEventLoop) -> ConnectionBook:
    """The book of ``server``'s connections, the limits of ``app`` (or the defaults)."""
    book = _books.get(server)
    if book is None:
        limited = _limited_app(app)
        limits = limited.limits if limited is not None else ServerLimits()
        metrics = getattr(limited, "metrics", None)
        count = metrics.refused if metrics is not None else _uncounted
        book = _books[server] = ConnectionBook(limits, loop, count)
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


REASONS = {  # the refusal counted for each status of a refusal
    400: "upgrade",
    408: "read_timeout",
    414: "url_too_long",
    431: "headers_too_large",
    503: "connection_limit",
}


class BoundedH11Connection(h11.Connection):
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
