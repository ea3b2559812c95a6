"""Open Inference Protocol v2 routes, driven by an off-the-shelf client (tritonclient)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from clickrouter.serving.bank import ModelBank
from clickrouter.serving.http import PredictorServer
from serving.http.http_support import N_CAMPAIGNS, PROFILE

PROFILES = [
    PROFILE,
    {"country": "DEU", "os": "ios", "ts": "2026-11-26T08:00:00Z"},
    {"country": "Narnia", "device": "never-seen"},
]


@pytest.fixture
def client(server: PredictorServer):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def expected(sample_models: Path) -> np.ndarray:
    with ModelBank.from_directory(sample_models) as bank:
        return bank.predict_proba(PROFILES)


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("clickrouter")
    assert not client.is_model_ready("other")
    metadata = client.get_model_metadata("clickrouter")
    assert metadata["inputs"][0] == {"name": "profiles", "datatype": "BYTES", "shape": [-1]}
    assert metadata["outputs"][0]["shape"] == [-1, N_CAMPAIGNS]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_json_profiles(client, expected, binary):
    data = np.array([json.dumps(p).encode() for p in PROFILES], dtype=np.object_)
    tensor = triton.InferInput("profiles", [len(PROFILES)], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    output = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("clickrouter", [tensor], outputs=[output])
    proba = result.as_numpy("probabilities")
    assert proba.dtype == np.float64 and proba.shape == (len(PROFILES), N_CAMPAIGNS)
    np.testing.assert_allclose(proba, expected, rtol=1e-12)


def test_infer_one_input_per_field(client, expected):
    fields = {"country": ["FR", "DEU", "Narnia"], "os": ["android", "ios", ""]}
    fields["device"] = ["device-1", "", "never-seen"]
    fields["browser"] = ["chrome mobile", "", ""]
    fields["provider"] = ["carrier-2", "", ""]
    tensors = []
    for name, values in fields.items():
        tensor = triton.InferInput(name, [3], "BYTES")
        tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
        tensors.append(tensor)
    ts = triton.InferInput("ts", [3], "INT64")
    stamps = [1780000000, 1795680000, 1795680000]  # the third row's time does not matter
    ts.set_data_from_numpy(np.array(stamps, dtype=np.int64))
    proba = client.infer("clickrouter", [*tensors, ts]).as_numpy("probabilities")
    np.testing.assert_allclose(proba[0], expected[0], rtol=1e-12)  # same fields as PROFILE
    assert proba.shape == (3, N_CAMPAIGNS)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": [{"name": "nope", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}, "nope"),
        (
            {"inputs": [{"name": "profiles", "shape": [2], "datatype": "BYTES", "data": ["{}"]}]},
            "2",
        ),
        (
            {"inputs": [{"name": "profiles", "shape": [1], "datatype": "BYTES", "data": ["["]}]},
            "JSON",
        ),
        (
            {"inputs": [{"name": "profiles", "shape": [0], "datatype": "BYTES", "data": []}]},
            "shape",
        ),
        ({"inputs": "x"}, "inputs"),
    ],
)
def test_bad_inference_requests_are_400(server: PredictorServer, body, needle):
    answer = httpx.post(server.url + "/v2/models/clickrouter/infer", json=body)
    assert answer.status_code == 400
    assert needle in answer.json()["error"]
