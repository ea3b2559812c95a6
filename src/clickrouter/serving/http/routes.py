"""The clickrouter routes: ``/v1`` ad flow, ``/admin``, ``/metrics`` and ``/openapi.json``.

Each handler parses the request into plain values and calls the
:class:`~clickrouter.serving.engine.service.PredictorService`.
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec

from clickrouter.errors import ClickrouterError, InvalidInput, NotFound
from clickrouter.serving.engine.holder import BankHolder
from clickrouter.serving.engine.refusal import PostbackRefused
from clickrouter.serving.engine.service import PredictorService, checked_top
from clickrouter.serving.http.app import Request, Response, Route, inline_route, json_response
from clickrouter.serving.http.metrics import CONTENT_TYPE, ServiceMetrics
from clickrouter.serving.http.openapi import openapi_document
from clickrouter.serving.http.postback_auth import PostbackAuthenticator


class Unauthorized(ClickrouterError):
    status = 401


def v1_routes(
    service: PredictorService,
    metrics: ServiceMetrics,
    postback_auth: PostbackAuthenticator | None = None,
) -> list[Route]:
    """The ad flow; postbacks are checked by ``postback_auth`` (default: refused
    until secrets are configured), refusals counted in ``metrics``."""
    auth = postback_auth if postback_auth is not None else PostbackAuthenticator()

    def decide(request: Request) -> Response:
        top = checked_top(request.query.get("top"))
        outcome = service.decide(request.json(), top)
        return Response(200, msgspec.json.encode(outcome))

    def click(request: Request) -> Response:
        outcome = service.decide(dict(request.query))
        location = outcome.landing_page.encode("utf-8")
        return Response(
            302, b"", headers=[(b"location", location), (b"cache-control", b"no-store")]
        )

    async def score(request: Request) -> Response:
        top = checked_top(request.query.get("top"))
        return json_response(service.score(request.json(), top))

    async def postback(request: Request) -> Response:
        try:
            return record_sale(request)
        except ClickrouterError as exc:
            metrics.postbacks_refused.labels(refusal_reason(exc)).inc()
            raise

    def record_sale(request: Request) -> Response:
        # authenticated first: nothing of an unauthenticated request is looked at further
        signature = auth.authenticate(
            request.method, request.path, request.query, request.headers, request.body
        )
        fields: dict[str, Any] = dict(request.query)
        if request.body:
            body = request.json()
            if not isinstance(body, dict):
                raise InvalidInput("request body: expected a JSON object")
            fields.update(body)
        event = service.postback(
            fields.get("click_id"),
            fields.get("revenue"),
            fields.get("ts"),
            fields.get("campaign_id"),
            # a signature is accepted once per worker; as the event id it makes the
            # consumer drop a replay that another worker accepted
            event_id=None if signature is None else f"pb-{signature[:40]}",
        )
        return json_response({"recorded": "sale", "id": event.id, "click_id": event.click_id})

    async def campaigns(request: Request) -> Response:
        return Response(200, service.live().campaigns_body)

    async def models(request: Request) -> Response:
        return json_response(service.models())

    return [
        inline_route(("POST",), "/v1/decide", decide),  # the hot routes: no ASGI task
        inline_route(("GET",), "/v1/click", click),
        Route(("POST",), "/v1/score", score),
        Route(("GET", "POST"), "/v1/postback", postback),
        Route(("GET",), "/v1/campaigns", campaigns),
        Route(("GET",), "/v1/models", models),
    ]


def refusal_reason(exc: ClickrouterError) -> str:
    """The metric label of a refused postback (a fixed set, never the caller's text)."""
    if isinstance(exc, PostbackRefused):
        return exc.reason
    if exc.status == 404:
        return "unknown_campaign"
    return "invalid" if exc.status < 500 else "unavailable"


def admin_routes(holder: BankHolder, token: str | None) -> list[Route]:
    """``POST /admin/reload``; answers 404 for every admin route when no token is set."""

    async def reload(request: Request) -> Response:
        _authorize(request, token)
        live = await holder.reload()
        return json_response(
            {"reloaded": True, "version": live.version, "store_version": live.store_version}
        )

    return [Route(("POST",), "/admin/reload", reload)]


def _authorize(request: Request, token: str | None) -> None:
    if not token:
        raise NotFound("admin routes are disabled (no admin token is configured)")
    given = request.headers.get(b"authorization", b"")
    expected = b"Bearer " + token.encode("utf-8")
    if not hmac.compare_digest(given, expected):
        raise Unauthorized("admin route: missing or wrong 'Authorization: Bearer <token>'")


def meta_routes(metrics: ServiceMetrics) -> list[Route]:
    """``/metrics`` and ``/openapi.json``."""
    document = msgspec.json.encode(openapi_document())

    async def exposition(request: Request) -> Response:
        return Response(200, metrics.exposition(), CONTENT_TYPE.encode())

    async def openapi(request: Request) -> Response:
        return Response(200, document)

    return [
        Route(("GET",), "/metrics", exposition),
        Route(("GET",), "/openapi.json", openapi),
    ]
