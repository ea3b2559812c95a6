"""uvicorn's httptools protocol with the hot routes answered inline.

Measured on this machine (wrk over loopback): uvicorn + httptools spends ~90 us
of server CPU per request before the application does anything (scope dict,
``RequestResponseCycle``, an asyncio task per request, receive/send coroutine
hops), where a bare httptools protocol spends ~20 us. A decision itself never
awaits, so for routes declared with an inline handler
(:func:`~clickrouter.serving.http.app.inline_route`: ``POST /v1/decide``,
``GET /v1/click``) this protocol parses the request, calls the handler
straight from the parser callback and writes the response, with no task.
The answers to the inline requests of one read (a client pipelining them)
leave in one write: on loopback the ``send`` per response was about a third
of the server's CPU per decision (py-spy, in the demo).

Everything else, and every request that is not plainly simple, goes through
uvicorn's own ASGI path unchanged: another request still in flight on the
connection (answers must keep their order), a paused transport, HTTP/1.0 or
``Connection: close``, ``Expect: 100-continue``, a body without a
``Content-Length`` or larger than the limit (the ASGI path answers 413),
percent-encoded paths. Worker supervision, lifespan and graceful shutdown stay
uvicorn's; header limits, timeouts and the connection cap are the base class's
(:mod:`~clickrouter.serving.http.limits`), the same on both paths.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)
from uvicorn.server import ServerState

from clickrouter.errors import ClickrouterError
from clickrouter.serving.http.app import (
    PredictorApp,
    Request,
    Response,
    Route,
    error_response,
    parse_query,
)
from clickrouter.serving.http.limits import GuardedHttpToolsProtocol

# an answer held until its read's events are committed:
# (bytes, route template, status, perf_counter at start, sink.emitted after it)
_Answer = tuple[bytes, str, int, float, int]


class InlineHttpToolsProtocol(GuardedHttpToolsProtocol):
    """HttpToolsProtocol that answers inline routes from ``on_message_complete``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.predictor = predictor_app(self.app)
        self.inline = self.predictor.inline_routes() if self.predictor is not None else {}
        self.max_body = self.predictor.max_body_bytes if self.predictor is not None else 0
        self._route: Route | None = None  # the inline route of the request being read
        self._body: list[bytes] = []
        self._closing = False  # shutdown began while an inline request was being read
        # inline answers of the current read, held until the read's events are committed
        self._answers: list[_Answer] | None = None
        # the commit hook: events emitted by the answers reach the log before they leave
        self._events = self.predictor.events if self.predictor is not None else None
        self._read_mark = 0  # events emitted before the first held answer

    def data_received(self, data: bytes) -> None:
        """Parse one read; the inline answers it produced are written together, after
        one commit of the events they emitted (group commit)."""
        self._answers = []
        self._read_mark = self._emitted()
        try:
            super().data_received(data)
        finally:
            self._flush()
            self._answers = None

    def send_400_response(self, msg: str) -> None:
        self._flush()  # the answers to the requests before the bad one go first
        super().send_400_response(msg)

    def _flush(self) -> None:
        """Commit the held answers' events, then write the answers in one go; when the
        commit fails, every answer that emitted an event becomes the commit's error."""
        answers = self._answers
        if not answers:
            return
        self._answers = []
        refusal = self._commit()
        predictor = self.predictor
        assert predictor is not None
        mark = self._read_mark
        out = []
        now = time.perf_counter()
        for data, template, status, started, emitted in answers:
            if refusal is not None and emitted > mark:
                data, status = refusal
            mark = emitted
            out.append(data)
            predictor.observe(template, status, now - started)
        self._read_mark = mark
        if not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def _emitted(self) -> int:
        return self._events.emitted if self._events is not None else 0

    def _commit(self) -> tuple[bytes, int] | None:
        """Commit every event emitted so far; the error answer when that failed."""
        if self._events is None:
            return None
        try:
            self._events.commit()
        except ClickrouterError as exc:
            refusal = error_response(exc.status, exc.message)
            return http_response(refusal, self.server_state.default_headers), exc.status
        return None

    def _hold(self, data: bytes, template: str, status: int, started: float) -> None:
        """Hold an answer until the events of its read are committed (see _flush)."""
        answer = (data, template, status, started, self._emitted())
        if self._answers is None:  # answered outside a read: commit and write it alone
            self._answers = [answer]
            self._read_mark = -1  # unknown: treat it as having emitted
            try:
                self._flush()
            finally:
                self._answers = None
        else:
            self._answers.append(answer)

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
        path, _, query = self.url.partition(b"?")
        request = Request(
            self.parser.get_method().decode("ascii"),
            path.decode("ascii"),
            parse_query(query),
            dict(self.headers),
            body,
        )
        response = self.predictor.respond_inline(route, request)
        if self._closing:
            response.headers.append((b"connection", b"close"))
        data = http_response(response, self.server_state.default_headers)
        if self.transport.is_closing():
            return  # the client went away while we decided (the event is logged regardless)
        self._hold(data, route.template, response.status, started)
        self.server_state.total_requests += 1
        if self._closing:
            self._flush()
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self._became_idle()  # closed after an idle spell (limits.ConnectionBook)


def http_response(response: Response, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive response (headers checked as uvicorn does)."""
    extra = default_headers + response.headers
    for name, value in extra:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            response = error_response(500, "internal error: invalid response header")
            extra = default_headers
            break
    parts = [
        STATUS_LINE[response.status],
        b"content-type: ",
        response.content_type,
        b"\r\ncontent-length: ",
        str(len(response.body)).encode("ascii"),
        b"\r\n",
    ]
    for name, value in extra:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"\r\n", response.body]
    return b"".join(parts)


def predictor_app(app: Any) -> PredictorApp | None:
    """The PredictorApp inside uvicorn's middleware wrappers (proxy headers, ...)."""
    for _ in range(8):
        if isinstance(app, PredictorApp):
            return app
        app = getattr(app, "app", None)
    return None
