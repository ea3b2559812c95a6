"""The OpenAPI document: generated from the types, committed without drift, served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from clickrouter.cli import main
from clickrouter.serving.engine.decision import Outcome
from clickrouter.serving.http import PredictorServer
from clickrouter.serving.http.openapi import OPERATIONS, openapi_document, openapi_json
from clickrouter.serving.http.schema import AdRequest, Profile, Sale
from serving.http.http_support import ADMIN_TOKEN, PROFILE

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "reference" / "openapi.json"
REGENERATE = "clickrouter openapi --out docs/reference/openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text("utf-8") == openapi_json(), (
        f"docs/reference/openapi.json is out of date; regenerate it with: {REGENERATE}"
    )


def test_the_command_writes_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "openapi.json"
    assert main(["openapi", "--out", str(out)]) == 0
    assert out.read_text("utf-8") == openapi_json()
    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == openapi_json()


def test_every_route_is_documented_and_every_operation_served(server: PredictorServer) -> None:
    assert server.app is not None
    router = server.app.router
    routes = [route for group in router.static.values() for route in group]
    routes += [route for _, route in router.templated]
    served = {(method, route.template) for route in routes for method in route.methods}
    assert served == {(op.method, op.path) for op in OPERATIONS}


def test_the_server_serves_the_generated_document(server: PredictorServer) -> None:
    answer = httpx.get(server.url + "/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == json.loads(openapi_json())


def test_bodies_are_the_schemas_of_the_structs() -> None:
    """The request and answer bodies are msgspec's JSON Schema of the types, not text."""
    document = openapi_document()
    components = document["components"]["schemas"]
    expected = msgspec.json.schema_components(
        [AdRequest, Profile, Sale, Outcome], ref_template="#/components/schemas/{name}"
    )[1]
    for name in ("AdRequest", "Profile", "Sale", "Outcome", "RankedOffer"):
        assert components[name] == expected[name]
    decide = document["paths"]["/v1/decide"]["post"]
    assert decide["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AdRequest"
    }
    assert set(decide["responses"]) == {"200", "400", "404", "413", "503"}
    assert "503" in document["paths"]["/v1/click"]["get"]["responses"]


def test_postback_authentication_is_documented() -> None:
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["postbackToken"] == {
        **schemes["postbackToken"],
        "type": "apiKey",
        "in": "query",
        "name": "token",
    }
    assert schemes["postbackSignature"]["name"] == "X-Clickrouter-Signature"
    for method in ("get", "post"):
        operation = document["paths"]["/v1/postback"][method]
        assert {name for entry in operation["security"] for name in entry} == {
            "postbackToken",
            "postbackSignature",
            "postbackQuerySignature",
        }
        assert {"401", "403", "503"} <= set(operation["responses"])
        assert "X-Clickrouter-Timestamp" in operation["description"]


def test_every_answer_decodes_as_its_documented_type(server: PredictorServer) -> None:
    """Real answers decode strictly (no unknown field) as the Struct the document names."""
    profile = msgspec.json.encode(PROFILE).decode()
    infer = {"inputs": [{"name": "profiles", "shape": [1], "datatype": "BYTES", "data": [profile]}]}
    # a valid request of each route that needs more than its path
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "decide": ("/v1/decide?top=3", {"json": PROFILE}),
        "score": ("/v1/score", {"json": PROFILE}),
        "v2_infer": ("/v2/models/clickrouter/infer", {"json": infer}),
        "admin_reload": ("/admin/reload", {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}),
    }
    checked = set()
    with httpx.Client(base_url=server.url) as client:
        for op in OPERATIONS:
            answer = op.answers.get(200)
            if answer is None or answer.media_type != "application/json":
                continue
            if op.path == "/v1/postback":
                continue  # needs an issued click and a secret: the conformance run covers it
            default: tuple[str, dict[str, Any]] = (op.path.replace("{name}", "clickrouter"), {})
            path, options = requests.get(op.operation_id, default)
            response = client.request(op.method, path, **options)
            assert response.status_code == 200, (op.path, response.text)
            msgspec.json.decode(response.content, type=answer.body, strict=True)
            checked.add(op.operation_id)
    assert {"decide", "score", "models", "campaigns", "v2_infer", "admin_reload"} <= checked


def test_the_http_reference_covers_every_operation() -> None:
    """docs/reference/http.md names every route, parameter and status of the document."""
    page = (COMMITTED.parent / "http.md").read_text("utf-8")
    missing = []
    for op in OPERATIONS:
        if f"`{op.path}`" not in page and f"`{op.method} {op.path}`" not in page:
            missing.append(f"{op.method} {op.path}")
        missing += [f"{op.path} {p.name}" for p in op.params if f"`{p.name}`" not in page]
        missing += [f"{op.path} {status}" for status in op.answers if str(status) not in page]
    assert not missing, f"docs/reference/http.md lacks {missing}"
