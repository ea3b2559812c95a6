"""The OpenAPI 3 document served at ``/openapi.json`` (written by hand, kept small).

It describes every route with its parameters and bodies so that clients can
be generated and the fuzzing test (schemathesis) can exercise each route.
"""

from __future__ import annotations

from typing import Any

from clickrouter.serving.http.service import MAX_TOP

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid input",
        401: "Missing or wrong admin token",
        404: "Not found (or no eligible campaign)",
        413: "Body too large",
        422: "The model version failed to load",
        503: "No model version loaded yet",
    }
    return {str(s): _json(_ERROR, reasons[s]) for s in statuses}


_TOP = {
    "name": "top",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
    "description": "return the k best campaigns",
}
_PROFILE_FIELDS: dict[str, dict[str, Any]] = {
    "click_id": {"type": "string"},
    "ts": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    "country": {"type": "string", "description": "ISO alpha-2/alpha-3/numeric or English name"},
    "device": {"type": "string"},
    "os": {"type": "string"},
    "browser": {"type": "string"},
    "provider": {"type": "string"},
    "user_agent": {"type": "string"},
    "tz": {"type": "string", "description": "IANA time zone (400 when it names none)"},
    "local_hour": {"type": "integer", "minimum": 0, "maximum": 23},
    "local_weekday": {"type": "integer", "minimum": 0, "maximum": 6},
}
_PROFILE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Profile"}}},
}
_MODEL_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _postback(method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "Record a sale for an earlier click",
        "operationId": f"postback_{method}",
        "parameters": [
            _query("click_id", {"type": "string"}, required=method == "get"),
            _query("revenue", {"type": "number", "minimum": 0}, required=method == "get"),
            _query("ts", {"type": "string"}),
            _query("campaign_id", {"type": "string"}),
        ],
        "responses": {"200": _json({"type": "object"}), **_errors(400, 404, 413)},
    }
    if method == "post":
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Sale"}}},
        }
    return operation


def _paths() -> dict[str, Any]:
    ok_object = _json({"type": "object"})
    return {
        "/v1/decide": {
            "post": {
                "summary": "Choose the campaign for one ad request and log the click",
                "operationId": "decide",
                "parameters": [_TOP],
                "requestBody": _PROFILE_BODY,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Decision"}),
                    **_errors(400, 404, 413, 503),
                },
            }
        },
        "/v1/click": {
            "get": {
                "summary": "The ad flow: decide and redirect to the landing page",
                "operationId": "click",
                "parameters": [
                    _query(name, schema)
                    for name, schema in _PROFILE_FIELDS.items()
                    if name not in ("local_hour", "local_weekday", "ts")
                ]
                + [_query("ts", {"type": "string"})],
                "responses": {
                    "302": {
                        "description": "Redirect to the chosen landing page",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    **_errors(400, 404, 503),
                },
            }
        },
        "/v1/score": {
            "post": {
                "summary": "P(sale) of every campaign for one profile",
                "operationId": "score",
                "parameters": [_TOP],
                "requestBody": _PROFILE_BODY,
                "responses": {"200": ok_object, **_errors(400, 413, 503)},
            }
        },
        "/v1/postback": {"get": _postback("get"), "post": _postback("post")},
        "/v1/campaigns": {
            "get": {
                "summary": "The campaign catalogue of the live model version",
                "operationId": "campaigns",
                "responses": {"200": ok_object, **_errors(503)},
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The live model version and its metrics",
                "operationId": "models",
                "responses": {"200": ok_object, **_errors(503)},
            }
        },
        "/v2/health/live": {
            "get": {"operationId": "v2_live", "responses": {"200": ok_object}},
        },
        "/v2/health/ready": {
            "get": {"operationId": "v2_ready", "responses": {"200": ok_object, **_errors(503)}},
        },
        "/v2/models/{name}": {
            "get": {
                "operationId": "v2_model_metadata",
                "parameters": [_MODEL_NAME],
                "responses": {"200": ok_object, **_errors(404, 503)},
            }
        },
        "/v2/models/{name}/ready": {
            "get": {
                "operationId": "v2_model_ready",
                "parameters": [_MODEL_NAME],
                "responses": {"200": ok_object, **_errors(404, 503)},
            }
        },
        "/v2/models/{name}/infer": {
            "post": {
                "summary": "Open Inference Protocol v2: FP64 [n, n_campaigns] probabilities",
                "operationId": "v2_infer",
                "parameters": [_MODEL_NAME],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/InferRequest"}
                        }
                    },
                },
                "responses": {"200": ok_object, **_errors(400, 404, 413, 503)},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/admin/reload": {
            "post": {
                "summary": "Load the current model version now (needs the admin token)",
                "operationId": "admin_reload",
                "security": [{"bearer": []}],
                "responses": {"200": ok_object, **_errors(401, 404, 422)},
            }
        },
    }


def _schemas() -> dict[str, Any]:
    ranked = {
        "type": "object",
        "properties": {
            "campaign_id": {"type": "string"},
            "probability": {"type": "number"},
            "expected_value": {"type": "number"},
        },
    }
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Profile": {"type": "object", "properties": _PROFILE_FIELDS},
        "Sale": {
            "type": "object",
            "properties": {
                "click_id": {"type": "string"},
                "revenue": {"type": "number", "minimum": 0},
                "ts": _PROFILE_FIELDS["ts"],
                "campaign_id": {"type": "string"},
            },
        },
        "Decision": {
            "type": "object",
            "required": ["click_id", "campaign_id", "landing_page", "propensity", "model_version"],
            "properties": {
                "click_id": {"type": "string"},
                "campaign_id": {"type": "string"},
                "landing_page": {"type": "string"},
                "probability": {"type": "number"},
                "expected_value": {"type": "number"},
                "propensity": {"type": "number"},
                "payout": {"type": "number"},
                "n_eligible": {"type": "integer"},
                "model_version": {"type": "string"},
                "policy": {"type": "string"},
                "ranking": {"type": "array", "items": ranked},
            },
        },
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 description of every route."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "clickrouter predictor", "version": "1"},
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
