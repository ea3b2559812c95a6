"""Fuzz every operation of the served OpenAPI document: no input may produce a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from clickrouter.serving.http import PredictorServer
from serving.http.postback_support import GLOBAL_SECRET, default_secrets, signed_settings

EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def server(sample_models: Path, events_dir: Path, tmp_path: Path) -> Iterator[PredictorServer]:
    """The predictor with postback secrets, so postbacks are checked, not refused (503)."""
    secrets = default_secrets(tmp_path / "postback-secrets")
    with PredictorServer(signed_settings(secrets), sample_models, events_dir) as running:
        yield running


def with_token(case: schemathesis.Case) -> None:
    """Postbacks carry the secret, so the fuzzer reaches what lies behind the check."""
    if case.path == "/v1/postback" and (case.query is None or isinstance(case.query, dict)):
        case.query = {**(case.query or {}), "token": GLOBAL_SECRET}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_produces_a_server_error(server: PredictorServer, mode: GenerationMode):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every route of the document, none silently skipped
    failures: list[str] = []
    exercised: set[str] = set()
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: schemathesis.Case) -> None:
            exercised.add(case.operation.label)
            with_token(case)
            response = case.call(base_url=server.url, timeout=10)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            assert response.headers.get("content-type") is not None

        try:
            exercise()
        except Unsatisfiable:  # no parameter or body to break (e.g. GET /metrics)
            assert mode is GenerationMode.NEGATIVE
    assert failures == []
    with_inputs = {"POST /v1/decide", "GET /v1/click", "POST /v1/score", "GET /v1/postback"}
    assert with_inputs | {"POST /v2/models/{name}/infer"} <= exercised


def test_fuzzing_reached_the_data_plane(server: PredictorServer, events_dir: Path):
    """The fuzzer's valid decisions are real decisions (the test is not vacuous)."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    decide = schema["/v1/decide"]["POST"]
    statuses: list[int] = []

    @settings(
        max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=decide.as_strategy())
    def exercise(case: schemathesis.Case) -> None:
        statuses.append(case.call(base_url=server.url, timeout=10).status_code)

    exercise()
    assert statuses.count(200) > 0
