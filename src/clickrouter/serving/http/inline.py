"""The hot routes answered inline: straight from the parser, with no ASGI task.

uvicorn's ASGI path costs several times a decision in server CPU per request
(the scope dict, a request-response cycle, an asyncio task, receive/send
coroutine hops), and a decision never awaits. So for routes declared with an
inline handler (:func:`~clickrouter.serving.http.app.inline_route`:
``POST /v1/decide``, ``GET /v1/click``) the HTTP protocol
(``InlineHttpToolsProtocol`` in :mod:`~clickrouter.serving.http.uvicorn_protocols`)
builds the :class:`~clickrouter.serving.http.app.Request` from the parsed
request (:func:`inline_request`), calls the handler from its parser callback
and holds the answer in :class:`HeldAnswers`. The answers to the inline
requests of one read (a client pipelining them) leave in one write, after one
commit of the events they emitted (group commit): a ``send`` per response
would cost about as much as the decision itself.

Everything else, and every request that is not plainly simple, goes through
uvicorn's own ASGI path unchanged: another request still in flight on the
connection (answers must keep their order), a paused transport, HTTP/1.0 or
``Connection: close``, ``Expect: 100-continue``, a body without a
``Content-Length`` or larger than the limit (the ASGI path answers 413),
percent-encoded paths. Header limits, timeouts and the connection cap are the
same on both paths (:mod:`~clickrouter.serving.http.limits`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clickrouter.errors import ClickrouterError
from clickrouter.serving.http.app import (
    EventCommit,
    PredictorApp,
    Request,
    Response,
    error_response,
    parse_query,
)

# an answer held until its read's events are committed:
# (bytes, route template, status, perf_counter at start, events emitted after it)
_Answer = tuple[bytes, str, int, float, int]


class HeldAnswers:
    """The inline answers of a connection's current read, written in one go after
    one commit of the events they emitted.

    events: the sink's commit hook (None: nothing to commit); observe(route,
    status, seconds) counts an answer once it leaves; encode turns the commit's
    error into bytes; write sends bytes to the client.
    """

    def __init__(
        self,
        events: EventCommit | None,
        observe: Callable[[str, int, float], None],
        encode: Callable[[Response], bytes],
        write: Callable[[bytes], None],
    ) -> None:
        self._events = events
        self._observe = observe
        self._encode = encode
        self._write = write
        self._answers: list[_Answer] | None = None  # None: no read under way
        self._mark = 0  # events emitted before the first held answer

    def begin_read(self) -> None:
        self._answers = []
        self._mark = self._emitted()

    def end_read(self) -> None:
        try:
            self.flush()
        finally:
            self._answers = None

    def hold(self, data: bytes, template: str, status: int, started: float) -> None:
        """Hold an answer until the events of its read are committed (see flush)."""
        answer = (data, template, status, started, self._emitted())
        if self._answers is None:  # answered outside a read: commit and write it alone
            self._answers = [answer]
            self._mark = -1  # unknown: treat it as having emitted
            self.end_read()
        else:
            self._answers.append(answer)

    def flush(self) -> None:
        """Commit the held answers' events, then write the answers in one go; when the
        commit fails, every answer that emitted an event becomes the commit's error."""
        answers = self._answers
        if not answers:
            return
        self._answers = []
        refusal = self._commit()
        mark = self._mark
        out = []
        now = time.perf_counter()
        for data, template, status, started, emitted in answers:
            if refusal is not None and emitted > mark:
                data, status = refusal
            mark = emitted
            out.append(data)
            self._observe(template, status, now - started)
        self._mark = mark
        self._write(b"".join(out))

    def _emitted(self) -> int:
        return self._events.emitted if self._events is not None else 0

    def _commit(self) -> tuple[bytes, int] | None:
        """Commit every event emitted so far; the error answer when that failed."""
        if self._events is None:
            return None
        try:
            self._events.commit()
        except ClickrouterError as exc:
            return self._encode(error_response(exc.status, exc.message)), exc.status
        return None


def inline_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Request:
    """The request an inline handler reads, from the parser's values."""
    path, _, query = target.partition(b"?")
    return Request(
        method.decode("ascii"), path.decode("ascii"), parse_query(query), dict(headers), body
    )


def predictor_app(app: Any) -> PredictorApp | None:
    """The PredictorApp inside uvicorn's middleware wrappers (proxy headers, ...)."""
    for _ in range(8):
        if isinstance(app, PredictorApp):
            return app
        app = getattr(app, "app", None)
    return None
