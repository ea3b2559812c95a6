"""The OpenAPI 3 document of the predictor, generated from the types it speaks.

Bodies are the msgspec Structs of :mod:`.schema` (and the decision
:class:`~clickrouter.serving.engine.decision.Outcome`), turned into JSON Schema
by :func:`msgspec.json.schema_components`. The operations (path, method,
parameters, answers) are declared once, in :data:`OPERATIONS`; a test checks
that they are exactly the routes the server builds, and that the copy in
``docs/reference/openapi.json`` is what :func:`openapi_json` generates
(``clickrouter openapi --out docs/reference/openapi.json`` writes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from clickrouter import __version__
from clickrouter.serving.engine.decision import Outcome
from clickrouter.serving.engine.service import MAX_ID_CHARS, MAX_TOP
from clickrouter.serving.http import schema
from clickrouter.serving.http.postback_auth import (
    ADVERTISER_PARAM,
    SIGNATURE_PARAM,
    TOKEN_PARAM,
)
from clickrouter.serving.http.v2 import InferRequest

REF = "#/components/schemas/{name}"
# a type msgspec turns into JSON Schema: a Struct, an Annotated str or int, ...
Schema = Any


@dataclass(frozen=True)
class Param:
    """One parameter: in the query, a path segment or a header."""

    name: str
    type: Schema
    where: str = "query"
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Answer:
    """One status of an operation; ``body`` None: no body (a redirect)."""

    description: str
    body: Schema
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Operation:
    """One route and method: what it takes, what it answers, how it is authenticated."""

    method: str
    path: str
    operation_id: str
    summary: str
    answers: dict[int, Answer]
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    body_required: bool = True
    security: tuple[str, ...] = ()  # alternative schemes, any one suffices
    description: str = ""


def _refused(description: str) -> Answer:
    """A refusal: an ``{"error": ...}`` body."""
    return Answer(description, schema.Error)


BAD_INPUT = _refused("Invalid input: the message names the field")
TOO_LARGE = _refused("Body larger than max_body_bytes")
NO_MODEL = _refused("No model version is loaded yet")
NOT_PERSISTED = _refused(
    "No model version is loaded yet, or the events of the answer could not be persisted"
    " (the event log or its spool is full or failing): retry later"
)
NO_CAMPAIGN = _refused("No offer (active campaign and landing page) admits this profile")

TOP = Param(
    "top",
    Annotated[int, msgspec.Meta(ge=1, le=MAX_TOP)],
    description="rank the k best offers in the answer",
)
MODEL_NAME = Param(
    "name", str, where="path", required=True, description="the model name: clickrouter"
)
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
_Amount = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,15}(\.[0-9]{1,6})?$")]

POSTBACK_DESCRIPTION = (
    "Authenticated by the secrets of `advertiser` (plus the global ones), with either"
    " `token=<secret>` in the query, or an HMAC-SHA256 signature: `X-Clickrouter-Timestamp`"
    " (epoch seconds) and `X-Clickrouter-Signature` (hex) headers, or the `timestamp` and"
    " `signature` query parameters, over `<timestamp>\\n<METHOD>\\n/v1/postback\\n"
    "<canonical query>\\n<body>` (see docs/explanation/security.md). Fields come from the"
    " query, the JSON body of a POST, or both (the body wins)."
)
_SALE_FIELDS = (
    Param("click_id", _Id, required=True, description="the click id of the landing page URL"),
    Param("revenue", _Amount, required=True, description="the sale's amount, >= 0"),
    Param("ts", schema.TimeText, description=schema.EVENT_TIME),
    Param("campaign_id", _Id, description="the campaign, when known"),
)
_AUTH_PARAMS = (
    Param(
        ADVERTISER_PARAM,
        Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,128}$")],
        description="whose secrets authenticate the postback (default: the global ones)",
    ),
)
POSTBACK_ANSWERS = {
    200: Answer("The sale is recorded", schema.SaleRecorded),
    400: BAD_INPUT,
    401: _refused("Not authenticated: no token or signature, or an expired or malformed one"),
    403: _refused(
        "Wrong token or signature, a replayed signature, or a click id this predictor did not issue"
    ),
    404: _refused("Unknown campaign_id"),
    409: _refused("The sale's ts is before its click was issued"),
    413: TOO_LARGE,
    503: _refused(
        "No postback secret is configured, no model version is loaded, or the sale could not"
        " be persisted: retry later"
    ),
}


def _postback(method: str) -> Operation:
    return Operation(
        method,
        "/v1/postback",
        f"postback_{method.lower()}",
        "Record a sale for an earlier click",
        POSTBACK_ANSWERS,
        # a POST may carry the sale's fields in the query too: documented, not declared,
        # so that the body's required fields are required
        params=(_SALE_FIELDS if method == "GET" else ()) + _AUTH_PARAMS,
        body=schema.Sale if method == "POST" else None,
        security=("postbackToken", "postbackSignature", "postbackQuerySignature"),
        description=POSTBACK_DESCRIPTION,
    )


_CLICK_FIELDS = ("country", "device", "os", "browser", "provider", "user_agent")

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/decide",
        "decide",
        "Choose the offer (campaign and landing page) for one ad request and log the click",
        {
            200: Answer("The decision (its click event is logged)", Outcome),
            400: BAD_INPUT,
            404: NO_CAMPAIGN,
            413: TOO_LARGE,
            503: NOT_PERSISTED,
        },
        params=(TOP,),
        body=schema.AdRequest,
    ),
    Operation(
        "GET",
        "/v1/click",
        "click",
        "The ad flow: decide, log the click and redirect to the landing page",
        {
            302: Answer(
                "Redirect to the chosen offer's landing page",
                None,
                headers={"Location": "the landing page, with the click id"},
            ),
            400: BAD_INPUT,
            404: NO_CAMPAIGN,
            503: NOT_PERSISTED,
        },
        params=(
            *(Param(name, str) for name in _CLICK_FIELDS),
            Param("click_id", Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]),
            Param("tz", schema.Zone),
            Param("ts", schema.TimeText, description=schema.EVENT_TIME),
        ),
        description="The profile fields are the query parameters (see the Profile schema).",
    ),
    Operation(
        "POST",
        "/v1/score",
        "score",
        "P(sale) of every offer (or the top k) for one profile",
        {
            200: Answer("Probabilities by offer", schema.Scores),
            400: BAD_INPUT,
            413: TOO_LARGE,
            503: NO_MODEL,
        },
        params=(TOP,),
        body=schema.Profile,
    ),
    _postback("GET"),
    _postback("POST"),
    Operation(
        "GET",
        "/v1/campaigns",
        "campaigns",
        "The campaign catalogue of the live model version",
        {200: Answer("The catalogue", schema.Campaigns), 503: NO_MODEL},
    ),
    Operation(
        "GET",
        "/v1/models",
        "models",
        "The live model version and its metrics",
        {200: Answer("The live version", schema.Models), 503: NO_MODEL},
    ),
    Operation(
        "GET",
        "/v2/health/live",
        "v2_live",
        "Open Inference Protocol: the server is up",
        {200: Answer("Live", schema.Live)},
    ),
    Operation(
        "GET",
        "/v2/health/ready",
        "v2_ready",
        "Open Inference Protocol: requests can be served",
        {
            200: Answer("Ready", schema.Ready),
            503: Answer(
                "Not ready: no model version yet, or events cannot be persisted", schema.Ready
            ),
        },
    ),
    Operation(
        "GET",
        "/v2/models/{name}",
        "v2_model_metadata",
        "Open Inference Protocol: model metadata",
        {
            200: Answer("The model's inputs and outputs", schema.ModelMetadata),
            404: _refused("Unknown model name"),
            503: NO_MODEL,
        },
        params=(MODEL_NAME,),
    ),
    Operation(
        "GET",
        "/v2/models/{name}/ready",
        "v2_model_ready",
        "Open Inference Protocol: the model is loaded",
        {
            200: Answer("Ready", schema.ModelReady),
            404: _refused("Unknown model name"),
            503: NO_MODEL,
        },
        params=(MODEL_NAME,),
    ),
    Operation(
        "POST",
        "/v2/models/{name}/infer",
        "v2_infer",
        "Open Inference Protocol: FP64 [n, n_offers] probabilities",
        {
            200: Answer("The probabilities", schema.InferResponse),
            400: BAD_INPUT,
            404: _refused("Unknown model name"),
            413: TOO_LARGE,
            503: NO_MODEL,
        },
        params=(MODEL_NAME,),
        body=InferRequest,
        description="Inputs: one BYTES tensor `profiles` (a JSON profile per element) or one"
        " tensor per profile field, n elements each (1 <= n <= 4096). The binary-data extension"
        " (`Inference-Header-Content-Length`) is accepted and, when asked, used in the answer.",
    ),
    Operation(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics of this worker (all workers with --workers > 1)",
        {200: Answer("Prometheus text format", str, media_type="text/plain")},
    ),
    Operation(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        {200: Answer("OpenAPI 3.1", dict[str, Any])},
    ),
    Operation(
        "POST",
        "/admin/reload",
        "admin_reload",
        "Load the model store's current version now",
        {
            200: Answer("The version now in service", schema.Reloaded),
            401: _refused("Missing or wrong admin token"),
            404: _refused("Admin routes are disabled: no admin token is configured"),
            422: _refused("The current version failed to load; the previous one stays live"),
        },
        security=("adminToken",),
    ),
)

SECURITY_SCHEMES = {
    "postbackToken": {
        "type": "apiKey",
        "in": "query",
        "name": TOKEN_PARAM,
        "description": "a postback secret of the advertiser (or a global one)",
    },
    "postbackSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Clickrouter-Signature",
        "description": "hex HMAC-SHA256 (`sha256=` prefix allowed) with X-Clickrouter-Timestamp",
    },
    "postbackQuerySignature": {
        "type": "apiKey",
        "in": "query",
        "name": SIGNATURE_PARAM,
        "description": "the same signature as a query parameter, with `timestamp`",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "CLICKROUTER_ADMIN_TOKEN",
    },
}


class _Types:
    """Every type the operations name, turned into JSON Schema in one pass."""

    def __init__(self, operations: tuple[Operation, ...]) -> None:
        found: list[Any] = []
        for op in operations:
            found.extend(p.type for p in op.params)
            found.extend(a.body for a in op.answers.values() if a.body is not None)
            if op.body is not None:
                found.append(op.body)
        self.types = list(dict.fromkeys(found))  # keep the first place of each
        schemas, self.components = msgspec.json.schema_components(self.types, ref_template=REF)
        self._schemas = dict(zip(map(_key, self.types), schemas, strict=True))

    def __getitem__(self, type_: Any) -> dict[str, Any]:
        return self._schemas[_key(type_)]


def _key(type_: Any) -> str:
    return repr(type_)  # Annotated aliases are equal but may not hash alike


def _parameter(param: Param, types: _Types) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": param.name, "in": param.where, "required": param.required}
    if param.description:
        entry["description"] = param.description
    entry["schema"] = types[param.type]
    return entry


def _answer(answer: Answer, types: _Types) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        entry["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    if answer.body is not None:
        entry["content"] = {answer.media_type: {"schema": types[answer.body]}}
    return entry


def _operation(op: Operation, types: _Types) -> dict[str, Any]:
    entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.description:
        entry["description"] = op.description
    if op.params:
        entry["parameters"] = [_parameter(p, types) for p in op.params]
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": types[op.body]}},
        }
    entry["responses"] = {str(s): _answer(a, types) for s, a in sorted(op.answers.items())}
    if op.security:
        entry["security"] = [{name: []} for name in op.security]
    return entry


def openapi_document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route (its schemas are JSON Schema 2020-12)."""
    types = _Types(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, types)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clickrouter predictor",
            "version": __version__,
            "description": "Real-time ad selection: decisions, redirects, scores, postbacks,"
            " and the Open Inference Protocol (v2). Every refusal is a JSON"
            ' `{"error": "..."}` with a 4xx status; a method a path does not serve is'
            " answered 405 with an `Allow` header.",
        },
        "paths": paths,
        "components": {
            "schemas": types.components,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def openapi_json() -> str:
    """The document as the committed ``docs/reference/openapi.json`` holds it."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def served_operations() -> set[tuple[str, str]]:
    """(method, path) of every documented operation."""
    return {(op.method, op.path) for op in OPERATIONS}
