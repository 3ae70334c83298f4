"""tfgate.v1 over HTTP/JSON: the same request gives the same answer over gRPC and HTTP."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest
from google.protobuf import json_format

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call, start_http
from tests.test_gateway import _echo, hp2
from tfgate.errors import Code
from tfgate.fronts.http.errors import HTTP_STATUS
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio
T = inference_pb2.Tensor
PredictRequest = inference_pb2.PredictRequest

CASES = [
    hp2(),
    hp2(version=1),
    hp2(version_label="stable"),
    hp2(version=1, version_label="stable"),
    hp2(version=-3),
    hp2(version=9),
    hp2(version_label="beta"),
    hp2(signature="other"),
    hp2(output_filter=["nope"]),
    hp2(output_filter=["y", "y"]),
    PredictRequest(model="nope"),
    PredictRequest(model="half_plus_two"),
    PredictRequest(model="half_plus_two", inputs={"x": T(strings=["a"])}),
    PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1, 2], shape=[1, 2])}),
    PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0], doubles=[2.0])}),
    PredictRequest(
        model="shapes", inputs={"image": T(ints=[1, 2, 3, 4, 5, 6, 7, 8], shape=[2, 2, 2])}
    ),
    PredictRequest(
        model="shapes",
        signature="two",
        inputs={"a": T(floats=[1.5, 2]), "b": T(ints=[2, 3])},
        output_filter=["sum"],
    ),
    _echo("i8", T(ints=[300])),
    _echo("i32", T(floats=[0.5])),
    _echo("s", T(strings=["café", ""])),
    _echo("s", T(bytes_values=[b"\xff\x00"])),
    _echo("bf16", T(floats=[1.5, float("nan"), float("inf")])),
    _echo("u64", T(ints=[2**62])),
    _echo("b", T(bools=[True, False])),
    _echo("f64", T(doubles=[0.1, -1e300])),
]


async def grpc_outcome(gw: Running, request: PredictRequest) -> tuple[str, Any]:
    try:
        answer = await gw.stub.Predict(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details()
    return "OK", json_format.MessageToDict(answer)


async def http_outcome(gw: Running, request: PredictRequest) -> tuple[str, Any]:
    body = json_format.MessageToJson(request)
    answer = await call(gw, "POST", f"/tfgate/v1/models/{request.model}:predict", body)
    assert answer.headers["Content-Type"].startswith("application/json")
    found = answer.json()
    if answer.status == 200:
        return "OK", found
    assert set(found) == {"code", "status", "message", "details"}
    assert answer.status == HTTP_STATUS[Code[found["status"]]]
    assert found["code"] == Code[found["status"]].value
    return found["status"], found["message"]


@pytest.mark.parametrize("request_", CASES, ids=range(len(CASES)))
async def test_the_same_predict_over_grpc_and_http(
    backend: FakeTFServing, start_gateway: StartGateway, request_: PredictRequest
) -> None:
    gw = await start_http(start_gateway, backend.target)
    over_grpc = await grpc_outcome(gw, request_)
    over_http = await http_outcome(gw, request_)
    assert over_http == over_grpc


async def test_the_same_get_model_over_grpc_and_http(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target)
    for query, request in (
        ("", inference_pb2.GetModelRequest(model="half_plus_two")),
        ("?version=1", inference_pb2.GetModelRequest(model="half_plus_two", version=1)),
        (
            "?versionLabel=canary",
            inference_pb2.GetModelRequest(model="half_plus_two", version_label="canary"),
        ),
    ):
        expected = json_format.MessageToDict(await gw.stub.GetModel(request, timeout=10))
        answer = await call(gw, "GET", f"/tfgate/v1/models/half_plus_two{query}")
        assert answer.status == 200, answer.body
        assert answer.json() == expected
    head = await call(gw, "HEAD", "/tfgate/v1/models/half_plus_two")
    assert head.status == 200 and head.body == b""
    missing = await call(gw, "GET", "/tfgate/v1/models/nope")
    assert missing.status == 404 and missing.json()["status"] == "NOT_FOUND"


async def test_the_readme_body_works_over_http(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target)
    body = '{"inputs": {"x": {"floats": [1, 2, 5]}}}'
    answer = await call(gw, "POST", "/tfgate/v1/models/half_plus_two:predict", body)
    assert answer.json() == {
        "model": "half_plus_two",
        "version": "2",
        "signature": "serving_default",
        "outputs": {"y": {"shape": ["3"], "floats": [3.5, 4.0, 5.5], "dtype": "float32"}},
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/tfgate/v1/models/half_plus_two:predict", "{nope", 400, "INVALID_ARGUMENT"),
        (
            "POST",
            "/tfgate/v1/models/half_plus_two:predict",
            '{"inputz": {}}',
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "POST",
            "/tfgate/v1/models/half_plus_two:predict",
            '{"model": "other"}',
            400,
            "INVALID_ARGUMENT",
        ),
        ("POST", "/tfgate/v1/models/half_plus_two:predict", "[1, 2]", 400, "INVALID_ARGUMENT"),
        (
            "POST",
            "/tfgate/v1/models/half_plus_two:predict",
            '{"inputs": {"x": {"floats": ["a"]}}}',
            400,
            "INVALID_ARGUMENT",
        ),
        ("GET", "/tfgate/v1/models/half_plus_two?version=x", None, 400, "INVALID_ARGUMENT"),
        ("GET", "/tfgate/v1/models/half_plus_two?verzion=1", None, 400, "INVALID_ARGUMENT"),
        ("GET", "/tfgate/v1/nothing", None, 404, "NOT_FOUND"),
        ("POST", "/tfgate/v1/models/a/b:predict", "{}", 404, "NOT_FOUND"),
        ("DELETE", "/tfgate/v1/models/half_plus_two", None, 405, "UNIMPLEMENTED"),
        ("PUT", "/tfgate/v1/models/half_plus_two:predict", "{}", 405, "UNIMPLEMENTED"),
        ("GET", "/nowhere", None, 404, "NOT_FOUND"),
    ],
)
async def test_bad_http_requests_get_a_json_error(  # noqa: PLR0917
    backend: FakeTFServing, start_gateway: StartGateway, method, path, body, status, code
) -> None:
    gw = await start_http(start_gateway, backend.target)
    answer = await call(gw, method, path, body)
    assert answer.status == status, answer.body
    found = orjson.loads(answer.body)
    assert found["status"] == code and found["message"]
    assert "Traceback" not in found["message"]
    if status == 405:
        assert answer.headers["Allow"]
    assert backend.calls["Predict"] == 0
