"""A thin raw-ASGI application: routing, body limits, JSON errors, timing.

No framework: the hot route (``POST /v1/decide``) costs one dict lookup for
routing, one msgspec decode and one encode on top of the decision itself.
Every :class:`~clickrouter.errors.ClickrouterError` becomes a JSON
``{"error": ...}`` answer with its status (:func:`exception_response`, the one
mapping of both HTTP paths); anything else is logged and answered 500 (the
fuzzing test keeps that path unreachable).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec

from clickrouter.errors import ClickrouterError, InvalidInput, NotFound
from clickrouter.serving.http.limits import ServerLimits
from clickrouter.serving.http.metrics import RequestSeries, ServiceMetrics

log = logging.getLogger(__name__)

JSON = b"application/json"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# deepest JSON nesting a request body may have: every document of the API is a
# few levels deep, and a deeper one would be parsed, logged and re-encoded by
# recursive code (thousands of levels exhaust the interpreter's stack)
MAX_JSON_DEPTH = 32


class PayloadTooLarge(ClickrouterError):
    status = 413


class MethodNotAllowed(ClickrouterError):
    status = 405

    def __init__(self, message: str, allowed: Iterable[str]) -> None:
        super().__init__(message)
        self.allowed = tuple(allowed)


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[bytes, bytes]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            raise InvalidInput("request body: expected a JSON document, got an empty body")
        body = self.body
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"request body: malformed JSON: {exc}") from None
        except RecursionError:
            raise TooDeep() from None
        # a document can only be as deep as it has brackets: most bodies are not counted
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(value) > (
            MAX_JSON_DEPTH
        ):
            raise TooDeep()
        return value


class TooDeep(InvalidInput):
    def __init__(self) -> None:
        super().__init__(f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def json_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item if isinstance(child, dict | list))
    return deepest


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, msgspec.json.encode(value))


def error_response(status: int, message: str) -> Response:
    response = Response(status, msgspec.json.encode({"error": message}))
    if status == 401:
        response.headers.append((b"www-authenticate", b"Bearer"))
    return response


def exception_response(exc: ClickrouterError) -> Response:
    """The answer to a refused request: the error's status, message and headers."""
    response = error_response(exc.status, exc.message)
    if isinstance(exc, MethodNotAllowed):
        response.headers.append((b"allow", ", ".join(exc.allowed).encode("ascii")))
    return response


class EventCommit(Protocol):
    """The event sink as the HTTP layer commits it (see ``durability.EventRecorder``)."""

    emitted: int

    def commit(self) -> None: ...


Handler = Callable[[Request], Awaitable[Response]]
InlineHandler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    template: str  # "/v2/models/{name}/infer"; also the metrics label
    handler: Handler
    # the same answer computed without awaiting anything: the HTTP protocol may
    # call it directly from its parser callbacks (see fastpath.py), no ASGI task
    inline: InlineHandler | None = None


def inline_route(methods: tuple[str, ...], template: str, handler: InlineHandler) -> Route:
    """A route whose handler never awaits: served inline by the fast protocol, and
    through ASGI (same handler) everywhere else."""

    async def asgi_handler(request: Request) -> Response:
        return handler(request)

    return Route(methods, template, asgi_handler, handler)


class Router:
    """Static paths by dict lookup; templated paths by segment match."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.static: dict[str, list[Route]] = {}
        self.templated: list[tuple[list[str], Route]] = []
        for route in routes:
            if "{" in route.template:
                self.templated.append((route.template.strip("/").split("/"), route))
            else:
                self.static.setdefault(route.template, []).append(route)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        candidates: list[tuple[Route, dict[str, str]]] = [
            (r, {}) for r in self.static.get(path, ())
        ] or self._templated(path)
        if not candidates:
            raise NotFound(f"no route {path!r}")
        for route, params in candidates:
            if method in route.methods:  # no implicit HEAD: GET /v1/click has side effects
                return route, params
        allowed = sorted({m for r, _ in candidates for m in r.methods})
        raise MethodNotAllowed(f"method {method} not allowed on {path!r}; use {allowed}", allowed)

    def _templated(self, path: str) -> list[tuple[Route, dict[str, str]]]:
        parts = path.strip("/").split("/")
        found = []
        for pattern, route in self.templated:
            params = _match_segments(pattern, parts)
            if params is not None:
                found.append((route, params))
        return found


def _match_segments(pattern: list[str], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params = {}
    for expected, actual in zip(pattern, parts, strict=True):
        if expected.startswith("{"):
            if not actual:
                return None
            params[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return params


class PredictorApp:
    """The ASGI callable: HTTP requests through the router, lifespan to the hooks."""

    def __init__(
        self,
        router: Router,
        metrics: ServiceMetrics,
        *,
        max_body_bytes: int,
        limits: ServerLimits | None = None,
        events: EventCommit | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.router = router
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.limits = limits or ServerLimits()  # read by the HTTP protocol (limits.py)
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self._series: dict[tuple[str, int], RequestSeries] = {}
        # the event sink's commit hook: events an answer emitted reach the log
        # before the answer is sent
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        label = "unmatched"
        try:
            route, params = self.router.match(scope["method"], scope["path"])
            label = route.template
            request = await self._request(scope, receive, params)
            emitted = self.events.emitted if self.events is not None else 0
            response = await route.handler(request)
            if self.events is not None and self.events.emitted != emitted:
                self.events.commit()  # raises a 503 error when they could not be persisted
        except ClickrouterError as exc:
            response = exception_response(exc)
        except ClientGone:
            return
        except RecursionError:  # input nested past what recursive code can take
            response = error_response(400, "request: nested too deeply")
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(500, "internal error")
        await _send(send, response)
        self.observe(label, response.status, time.perf_counter() - started)

    async def _request(self, scope: Scope, receive: Receive, params: dict[str, str]) -> Request:
        headers = dict(scope["headers"])
        body = b""
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await _read_body(receive, headers, self.max_body_bytes)
        query = parse_query(scope["query_string"])
        return Request(scope["method"], scope["path"], query, headers, body, params)

    def inline_routes(self) -> dict[tuple[bytes, bytes], Route]:
        """(method, path) -> static route with an inline handler, for the fast protocol."""
        return {
            (method.encode(), path.encode()): route
            for path, routes in self.router.static.items()
            for route in routes
            if route.inline is not None
            for method in route.methods
        }

    def respond_inline(self, route: Route, request: Request) -> Response:
        """The answer of an inline route, with the error mapping of the ASGI path."""
        assert route.inline is not None
        try:
            return route.inline(request)
        except ClickrouterError as exc:
            return exception_response(exc)
        except RecursionError:  # input nested past what recursive code can take
            return error_response(400, "request: nested too deeply")
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal error")

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request in the latency histogram and the status counter."""
        series = self._series.get((route, status))
        if series is None:
            series = self._series[route, status] = self.metrics.request_series(route, status)
        series.observe(seconds)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.on_startup is not None:
                    await self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string as a dict (the last value of a repeated name wins)."""
    if not raw:  # the common case of the hot routes: skip parse_qsl (~4 us)
        return {}
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {int(declared)} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
