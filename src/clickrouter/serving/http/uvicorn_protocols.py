"""The seam with uvicorn's HTTP protocol classes: the only module that imports them.

uvicorn's protocols (``uvicorn.protocols.http.*``) are not a public API: the
classes here subclass them and rely on their parser callbacks and attributes
(``parser``, ``url``, ``headers``, ``cycle``, ``flow``, ``pipeline``), so a
uvicorn upgrade is this file's concern alone. What they enforce and answer
lives elsewhere, free of uvicorn:

* :class:`GuardedHttpToolsProtocol` and :class:`GuardedH11Protocol`: uvicorn's
  httptools and h11 protocols within the server limits
  (:mod:`~clickrouter.serving.http.limits`); both admit connections through
  :class:`ConnectionAdmission`;
* :class:`InlineHttpToolsProtocol`: the guarded httptools protocol answering
  the hot routes inline (:mod:`~clickrouter.serving.http.inline`).

``clickrouter serve`` names them by import string (see ``server.http_protocol``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from clickrouter.serving.http.app import Response, Route
from clickrouter.serving.http.inline import HeldAnswers, inline_request, predictor_app
from clickrouter.serving.http.limits import (
    REASONS,
    BoundedH11Connection,
    ConnectionBook,
    ServerLimits,
    connection_book,
)
from clickrouter.serving.http.wire import http_response, refusal


class _Refused(Exception):
    """Stops the parser: the answer is in ``GuardedHttpToolsProtocol._refusal``."""


class ConnectionAdmission:
    """Admission to the server's :class:`~clickrouter.serving.http.limits.ConnectionBook`,
    eviction and the read timeout: the same for both guarded protocols.

    The protocol calls :meth:`_join_book` from ``__init__``, :meth:`_admit` from
    ``connection_made`` and :meth:`_release` from ``connection_lost``.
    """

    # uvicorn's protocols set these
    transport: asyncio.Transport
    flow: Any
    cycle: Any

    def _join_book(self, server_state: ServerState, app: Any, loop: Any) -> None:
        self.book: ConnectionBook = connection_book(server_state, app, loop)
        self.limits: ServerLimits = self.book.limits
        self._admitted = False

    def _admit(self, transport: asyncio.Transport) -> None:
        """Count the new connection in the book, or answer 503 and close it."""
        self._admitted = self.book.admit(self)
        if not self._admitted:
            self.book.count("connection_limit")
            limit = self.limits.max_connections
            message = f"the server is at its limit of {limit} connections; retry later"
            transport.write(refusal(503, message))
            transport.close()

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            self.book.forget(self)

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


class GuardedHttpToolsProtocol(ConnectionAdmission, HttpToolsProtocol):
    """uvicorn's httptools protocol within the server limits (every request via ASGI)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._join_book(server_state, self.app, self.loop)
        self._heads = 0  # requests begun on this connection
        self._in_head = False  # a request line or header lines are being read
        self._head_bytes = 0  # raw bytes of the current head, from its second read
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: bytes | None = None

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admit(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
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

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close (the answers before it leave first)."""
        self._refusal = refusal(status, message)
        self.book.count(REASONS[status])
        self.send_400_response(message)

    def _stop(self, status: int, message: str) -> None:
        """Refuse from a parser callback: the parser stops, the answer follows."""
        self._refusal = refusal(status, message)
        self.book.count(REASONS[status])
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


class InlineHttpToolsProtocol(GuardedHttpToolsProtocol):
    """The guarded httptools protocol, answering inline routes from ``on_message_complete``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.predictor = predictor_app(self.app)
        predictor = self.predictor
        self.inline = predictor.inline_routes() if predictor is not None else {}
        self.max_body = predictor.max_body_bytes if predictor is not None else 0
        self._route: Route | None = None  # the inline route of the request being read
        self._body: list[bytes] = []
        self._closing = False  # shutdown began while an inline request was being read
        # inline answers of the current read: their events reach the log before they leave
        self.held = HeldAnswers(
            predictor.events if predictor is not None else None,
            predictor.observe if predictor is not None else _unobserved,
            self._encode,
            self._write,
        )

    def _encode(self, response: Response) -> bytes:
        return http_response(response, self.server_state.default_headers)

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        """Parse one read; the inline answers it produced leave together (see HeldAnswers)."""
        self.held.begin_read()
        try:
            super().data_received(data)
        finally:
            self.held.end_read()

    def send_400_response(self, msg: str) -> None:
        self.held.flush()  # the answers to the requests before the bad one go first
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        # uvicorn builds the ASGI scope here; an inline request never needs it, so
        # it is built in on_headers_complete once the request turns out not inline
        self._request_began()
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        self._head_complete()
        route = self._inline_route() if self.inline else None
        if route is None:
            self._route = None
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            # uvicorn's own steps: the limits' bookkeeping of this request is done
            HttpToolsProtocol.on_message_begin(self)  # the scope, around a fresh headers list
            self.url, self.expect_100_continue = url, expect
            self.headers.extend(headers)
            HttpToolsProtocol.on_headers_complete(self)
        else:
            self._route = route
            self._body = []

    def on_body(self, body: bytes) -> None:
        if self._route is None:
            super().on_body(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        route = self._route
        if route is None:
            super().on_message_complete()
            return
        self._route = None
        self._request_read()
        self._answer(route, b"".join(self._body))
        self._body = []

    def shutdown(self) -> None:
        """Graceful shutdown: an inline request still arriving is answered, then closed
        (uvicorn does the same for its in-flight requests)."""
        if self._route is None:
            super().shutdown()
        else:
            self._closing = True

    def _inline_route(self) -> Route | None:
        """The inline route of the request whose headers just arrived, if it may be inline."""
        parser = self.parser
        path, _, _query = self.url.partition(b"?")
        route = self.inline.get((parser.get_method(), path))
        if route is None or b"%" in path or b"#" in self.url:
            return None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return None  # an ASGI request is still in flight: keep the answers in order
        if self.flow.write_paused or self.expect_100_continue or self.limit_concurrency:
            return None
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            return None
        return route if self._body_size_ok() else None

    def _body_size_ok(self) -> bool:
        length = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return False
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return False
                length = int(value)
        return length is None or length <= self.max_body

    def _answer(self, route: Route, body: bytes) -> None:
        assert self.predictor is not None
        started = time.perf_counter()
        request = inline_request(self.parser.get_method(), self.url, self.headers, body)
        response = self.predictor.respond_inline(route, request)
        if self._closing:
            response.headers.append((b"connection", b"close"))
        data = self._encode(response)
        if self.transport.is_closing():
            return  # the client went away while we decided (the event is logged regardless)
        self.held.hold(data, route.template, response.status, started)
        self.server_state.total_requests += 1
        if self._closing:
            self.held.flush()
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self._became_idle()  # closed after an idle spell (limits.ConnectionBook)


def _unobserved(route: str, status: int, seconds: float) -> None:
    pass


class GuardedH11Protocol(ConnectionAdmission, H11Protocol):
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
        self._join_book(server_state, self.app, self.loop)
        self.conn = self.bounded = BoundedH11Connection(self.limits)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admit(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
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
        self.book.count(REASONS[status] if status != 400 else "malformed")
        self.transport.write(refusal(status, message))
        self.transport.close()
