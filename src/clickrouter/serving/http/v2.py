"""Open Inference Protocol (KServe v2) routes, model name ``clickrouter``.

``POST /v2/models/clickrouter/infer`` takes either one BYTES input ``profiles``
(one JSON profile object per element) or one input per profile field (named
after the field: ``country``, ``device``, ``os``, ``browser``, ``provider``,
``user_agent``, ``ts``, ``tz``, ``local_hour``, ``local_weekday``), all of
the same length n. It answers the FP64 output ``probabilities`` of shape
[n, n_offers]: one column per offer, campaign by campaign in ``/v1/campaigns``
order, each campaign's landing pages in their order (the model metadata's
``parameters.offers`` names the columns as ``/v1/score`` does). Tensor data may come as
JSON or with the binary-data extension (``Inference-Header-Content-Length``)
that Triton clients use by default; the answer is binary when the request asks.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import numpy as np

from clickrouter.errors import InvalidInput, NotFound
from clickrouter.serving.engine.service import (
    PredictorService,
    ServiceUnavailable,
    canonical_profile,
)
from clickrouter.serving.http.app import Request, Response, Route, json_response

MODEL_NAME = "clickrouter"
PROFILES_INPUT = "profiles"
OUTPUT = "probabilities"
FIELD_INPUTS = (
    "country", "device", "os", "browser", "provider", "user_agent", "ts", "tz",
    "local_hour", "local_weekday",
)  # fmt: skip
HEADER_LENGTH = b"inference-header-content-length"
MAX_PROFILES = 4096
NUMERIC_DTYPES = {
    "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip


class InferInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] = {}


class InferOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class InferRequest(msgspec.Struct):
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[InferOutput] = []


def v2_routes(service: PredictorService) -> list[Route]:
    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        reason = _unready_reason(service)
        if reason is None:
            return json_response({"ready": True})
        return json_response({"ready": False, "error": reason}, 503)  # the error schema

    async def model_metadata(request: Request) -> Response:
        _check_model(request.params["name"])
        return json_response(_metadata(service))

    async def model_ready(request: Request) -> Response:
        _check_model(request.params["name"])
        service.live()  # 503 until a version is loaded
        return json_response({"name": MODEL_NAME, "ready": True})

    async def infer(request: Request) -> Response:
        _check_model(request.params["name"])
        return _infer(service, request)

    return [
        Route(("GET",), "/v2/health/live", live),
        Route(("GET",), "/v2/health/ready", ready),
        Route(("GET",), "/v2/models/{name}", model_metadata),
        Route(("GET",), "/v2/models/{name}/ready", model_ready),
        Route(("POST",), "/v2/models/{name}/infer", infer),
    ]


def _unready_reason(service: PredictorService) -> str | None:
    """Why requests would fail now: no model yet, or events that cannot be persisted."""
    if service.holder.live is None:
        return "no model version is loaded yet"
    return service.sink.problem()


def _check_model(name: str) -> None:
    if name != MODEL_NAME:
        raise NotFound(f"unknown model {name!r}; this server serves {MODEL_NAME!r}")


def _metadata(service: PredictorService) -> dict[str, Any]:
    live = service.holder.live
    if live is None:
        raise ServiceUnavailable("no model version is loaded yet")
    return {
        "name": MODEL_NAME,
        "versions": [live.version],
        "platform": "clickrouter-modelbank",
        "inputs": [{"name": PROFILES_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP64", "shape": [-1, len(live.bank.offers)]}],
        "parameters": {"offers": live.bank.offer_names},
    }


def _infer(service: PredictorService, request: Request) -> Response:
    header, binary = _split_body(request)
    try:
        infer_request = msgspec.json.decode(header, type=InferRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"inference request: {exc}") from None
    profiles = [canonical_profile(p) for p in _profiles(infer_request.inputs, binary)]
    bank = service.live().bank
    proba = bank.predict_proba(profiles)
    return _answer(infer_request, proba, bank.version)


def _split_body(request: Request) -> tuple[bytes, bytes]:
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        return request.body, b""
    if not declared.isdigit() or int(declared) > len(request.body):
        raise InvalidInput(f"header 'Inference-Header-Content-Length': invalid {declared!r}")
    return request.body[: int(declared)], request.body[int(declared) :]


def _profiles(inputs: list[InferInput], binary: bytes) -> list[dict[str, Any]]:
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in inputs:
        values, offset = _tensor_values(tensor, binary, offset)
        columns[tensor.name] = values
    if PROFILES_INPUT in columns:
        if len(columns) > 1:
            raise InvalidInput(f"input {PROFILES_INPUT!r} cannot be combined with field inputs")
        return [_json_profile(v) for v in columns[PROFILES_INPUT]]
    return _field_profiles(columns)


def _tensor_values(tensor: InferInput, binary: bytes, offset: int) -> tuple[list[Any], int]:
    if tensor.name != PROFILES_INPUT and tensor.name not in FIELD_INPUTS:
        raise InvalidInput(
            f"input {tensor.name!r}: unknown; use {PROFILES_INPUT!r} or fields {list(FIELD_INPUTS)}"
        )
    count = _element_count(tensor)
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        values = _flatten(tensor.data)
    else:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size!r} out of range")
        values = _decode_binary(tensor, binary[offset : offset + size])
        offset += size
    if len(values) != count:
        raise InvalidInput(f"input {tensor.name!r}: shape {tensor.shape} but {len(values)} values")
    return values, offset


def _element_count(tensor: InferInput) -> int:
    if not tensor.shape or any(d < 0 for d in tensor.shape):
        raise InvalidInput(f"input {tensor.name!r}: invalid shape {tensor.shape}")
    count = int(np.prod(tensor.shape, dtype=np.float64))
    if not 1 <= count <= MAX_PROFILES or (
        len(tensor.shape) > 1 and any(d != 1 for d in tensor.shape[1:])
    ):
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape}: expected [n] or [n, 1], "
            f"1 <= n <= {MAX_PROFILES}"
        )
    return count


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput("input data: expected a JSON array")
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _decode_binary(tensor: InferInput, raw: bytes) -> list[Any]:
    if tensor.datatype == "BYTES":
        return _decode_bytes_elements(raw, tensor.name)
    dtype = NUMERIC_DTYPES.get(tensor.datatype)
    if dtype is None or len(raw) % np.dtype(dtype).itemsize:
        raise InvalidInput(
            f"input {tensor.name!r}: cannot read {len(raw)} bytes as {tensor.datatype!r}"
        )
    return np.frombuffer(raw, dtype=dtype).tolist()


def _decode_bytes_elements(raw: bytes, name: str) -> list[Any]:
    """BYTES tensor: each element is a 4-byte little-endian length and that many bytes."""
    values: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        values.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return values


def _json_profile(value: Any) -> dict[str, Any]:
    try:
        profile = msgspec.json.decode(value.encode() if isinstance(value, str) else value)
    except (msgspec.DecodeError, TypeError) as exc:
        raise InvalidInput(f"input {PROFILES_INPUT!r}: element is not JSON: {exc}") from None
    if not isinstance(profile, dict):
        raise InvalidInput(f"input {PROFILES_INPUT!r}: each element must be a JSON object")
    return profile


def _field_profiles(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise InvalidInput(f"field inputs have different lengths: {sorted(lengths)}")
    n = lengths.pop()
    return [{f: _text(v[i]) for f, v in columns.items()} for i in range(n)]


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _answer(request: InferRequest, proba: np.ndarray, version: str) -> Response:
    binary = bool(request.parameters.get("binary_data_output")) or any(
        o.name == OUTPUT and o.parameters.get("binary_data") for o in request.outputs
    )
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP64", "shape": list(proba.shape)}
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = [output]
    if not binary:
        output["data"] = proba.ravel().tolist()
        return json_response(answer)
    data = np.ascontiguousarray(proba, dtype="<f8").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = msgspec.json.encode(answer)
    return Response(
        200,
        header + data,
        b"application/octet-stream",
        [(HEADER_LENGTH, str(len(header)).encode())],
    )
