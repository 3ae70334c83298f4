"""TF Serving's REST API through tfgate's HTTP front, in front of the fake TF Serving."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing, Model, Sig, Version, default_models
from tests.http_client import call, start_http
from tfgate.tfs.tensorflow.core.framework import types_pb2

pytestmark = pytest.mark.asyncio
PREDICT = "/v1/models/half_plus_two:predict"


def mixed(**values: str) -> str:
    """A columnar body for the model "mixed", three values per input, some given as JSON text."""
    inputs = {"s": '["a", "b", "c"]', "i64": "[1, 2, 3]", "b": "[true, true, false]"}
    inputs |= {"f64": "[1, 2, 3]", "i8": "[1, 2, 3]", **values}
    return '{"inputs": {' + ", ".join(f'"{k}": {v}' for k, v in inputs.items()) + "}}"


def _mixed() -> Model:
    """One input of each kind JSON carries, each returned as the output of that name, and the
    strings once more as ``s_bytes`` (TF Serving writes ``*_bytes`` outputs as base64)."""
    inputs: dict[str, tuple[int, tuple[int, ...] | None]] = {
        "s": (types_pb2.DT_STRING, (-1,)),
        "i64": (types_pb2.DT_INT64, (-1,)),
        "b": (types_pb2.DT_BOOL, (-1,)),
        "f64": (types_pb2.DT_DOUBLE, (-1,)),
        "i8": (types_pb2.DT_INT8, (-1,)),
    }
    outputs: dict[str, tuple[int, tuple[int, ...] | None]] = {
        **inputs,
        "s_bytes": (types_pb2.DT_STRING, (-1,)),
    }
    sig = Sig(inputs, outputs, fn=lambda a: {**a, "s_bytes": a["s"]})
    return Model(versions={1: Version({"serving_default": sig})})


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[FakeTFServing]:
    fake = FakeTFServing({**default_models(), "mixed": _mixed()})
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def http(backend: FakeTFServing, start_gateway: StartGateway) -> Running:
    return await start_http(start_gateway, backend.target)


async def test_row_format_predict_answers_predictions(http: Running) -> None:
    answer = await call(
        http, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1, 2, 5]}'
    )
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/half_plus_two/versions/1:predict", [2.5, 3.0, 4.5]),
        ("/v1/models/half_plus_two/labels/stable:predict", [2.5, 3.0, 4.5]),
        ("/v1/models/half_plus_two/labels/canary:predict", [3.5, 4.0, 5.5]),
        ("/V1/MODELS/half_plus_two:PREDICT", [3.5, 4.0, 5.5]),  # TF Serving ignores case
    ],
)
async def test_versions_and_labels_in_the_path(http: Running, path: str, expected) -> None:
    answer = await call(http, "POST", path, '{"instances": [1, 2, 5]}')
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": expected}


async def test_columnar_format_answers_outputs(http: Running) -> None:
    answer = await call(
        http, "POST", "/v1/models/half_plus_two:predict", '{"inputs": {"x": [1, 2]}}'
    )
    assert answer.json() == {"outputs": [3.5, 4.0]}
    answer = await call(http, "POST", "/v1/models/half_plus_two:predict", '{"inputs": [1, 2]}')
    assert answer.json() == {"outputs": [3.5, 4.0]}


async def test_several_inputs_and_outputs_by_name(http: Running) -> None:
    body = '{"signature_name": "two", "instances": [{"a": 1.5, "b": 2}, {"a": 2, "b": 3}]}'
    answer = await call(http, "POST", "/v1/models/shapes:predict", body)
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": [{"prod": 3.0, "sum": 3.5}, {"prod": 6.0, "sum": 5.0}]}
    body = '{"signature_name": "two", "inputs": {"a": [1.5, 2], "b": [2, 3]}}'
    answer = await call(http, "POST", "/v1/models/shapes:predict", body)
    assert answer.json() == {"outputs": {"prod": [3.0, 6.0], "sum": [3.5, 5.0]}}


async def test_strings_b64_and_bytes_outputs(http: Running) -> None:
    raw = bytes(range(256))
    body = (
        '{"inputs": {"s": ["caf\\u00e9", {"b64": "'
        + base64.b64encode(raw).decode()
        + '"}], "i64": [9007199254740993, -1], "b": [true, false], '
        + '"f64": [0.1, 2], "i8": [-128, 127]}}'
    )
    answer = await call(http, "POST", "/v1/models/mixed:predict", body)
    assert answer.status == 200, answer.body
    outputs = answer.json()["outputs"]
    assert outputs["i64"] == [9007199254740993, -1]  # int64 exact, as JSON numbers
    assert outputs["b"] == [True, False]
    assert outputs["s"][0] == "café"
    assert outputs["s_bytes"][0] == {"b64": base64.b64encode("café".encode()).decode()}
    assert base64.b64decode(outputs["s_bytes"][1]["b64"]) == raw  # every byte, exactly
    assert outputs["f64"] == [0.1, 2.0] and outputs["i8"] == [-128, 127]


async def test_nan_and_infinity_tokens(http: Running) -> None:
    answer = await call(
        http, "POST", "/v1/models/mixed:predict", mixed(f64="[NaN, Infinity, -Infinity]")
    )
    assert answer.status == 200, answer.body
    assert b"NaN" in answer.body and b"-Infinity" in answer.body


async def test_model_status_and_metadata(http: Running) -> None:
    status = await call(http, "GET", "/v1/models/half_plus_two")
    assert status.status == 200, status.body
    versions = status.json()["model_version_status"]
    assert [(v["version"], v["state"]) for v in versions] == [
        ("1", "AVAILABLE"),
        ("2", "AVAILABLE"),
    ]
    meta = await call(http, "GET", "/v1/models/half_plus_two/versions/1/metadata")
    assert meta.status == 200, meta.body
    found = meta.json()
    assert found["model_spec"]["name"] == "half_plus_two" and found["model_spec"]["version"] == "1"
    signature = found["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/models/nope:predict", '{"instances": [1]}', 404, "Servable not found"),
        ("GET", "/v1/models/nope", None, 404, "nope"),
        ("POST", "/v1/models/half_plus_two:predict", "{not json", 400, "JSON"),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": [1], "inputs": [1]}', 400, ""),
        ("POST", "/v1/models/half_plus_two:predict", "{}", 400, ""),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": [[1], 2]}', 400, ""),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": "x"}', 400, ""),
        ("POST", "/v1/models/mixed:predict", mixed(i8="[300, 1, 2]"), 400, "out of range"),
        ("POST", "/v1/models/mixed:predict", mixed(i64="[1.5, 1, 2]"), 400, "whole numbers"),
        ("POST", "/v1/models/mixed:predict", mixed(s='[{"b64": "!!"}, "a", "b"]'), 400, "b64"),
        ("POST", "/v1/models/mixed:predict", mixed(b="[1, 0, 1]"), 400, "input 'b'"),
        ("POST", "/v1/models/half_plus_two:predict", '{"instances": ["a"]}', 400, "input 'x'"),
        (
            "POST",
            "/v1/models/shapes:predict",
            '{"signature_name": "two", "instances": [{"a": 1, "b": 2}, {"a": 1}]}',
            400,
            "",
        ),
        ("GET", "/v1/models/half_plus_two:predict", None, 400, "Malformed request"),
        ("POST", "/v1/models/half_plus_two", "{}", 400, "Malformed request: POST"),
        ("DELETE", "/v1/models/half_plus_two", None, 400, "Malformed request: DELETE"),
        ("GET", "/v1/other", None, 400, "Malformed request: GET /v1/other"),
        ("POST", "/v1/models/half_plus_two:explain", "{}", 400, "Malformed request"),
    ],
)
async def test_bad_requests_get_tf_servings_status_and_a_json_error(  # noqa: PLR0917
    http: Running, backend: FakeTFServing, method, path, body, status: int, needle: str
) -> None:
    before = backend.calls["Predict"]
    answer = await call(http, method, path, body)
    assert answer.status == status, answer.body
    error = answer.json()["error"]
    assert isinstance(error, str) and needle in error
    assert "Traceback" not in error
    assert backend.calls["Predict"] == before  # refused before TF Serving, or TF Serving refused
    ok = await call(http, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1]}')
    assert ok.status == 200  # and tfgate keeps serving


async def test_a_body_over_max_message_bytes_is_413(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target, max_message_bytes=4096)
    body = '{"instances": [' + ", ".join(["1.5"] * 5000) + "]}"
    answer = await call(gw, "POST", "/v1/models/half_plus_two:predict", body)
    assert answer.status == 413
    assert "error" in answer.json()
    assert backend.calls["Predict"] == 0


async def test_the_deadline_header(http: Running, backend: FakeTFServing) -> None:
    backend.delay = 1.0
    answer = await call(
        http,
        "POST",
        "/v1/models/half_plus_two:predict",
        '{"instances": [1]}',
        {"grpc-timeout": "200m"},
    )
    assert answer.status == 504, answer.body
    backend.delay = 0.0
    answer = await call(
        http,
        "POST",
        "/v1/models/half_plus_two:predict",
        '{"instances": [1]}',
        {"grpc-timeout": "x"},
    )
    assert answer.status == 400 and "grpc-timeout" in answer.json()["error"]


async def test_one_access_log_line_per_http_call(
    http: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    await call(http, "POST", "/v1/models/half_plus_two/versions/1:predict", '{"instances": [1]}')
    await call(http, "POST", "/v1/models/nope:predict", '{"instances": [1]}')
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert len(lines) == 2
    assert lines[0].startswith("Predict model=half_plus_two version=1 code=OK ms=")
    assert lines[0].endswith("front=tfs-http")
    assert lines[1].startswith("Predict model=nope version=- code=NOT_FOUND")


async def test_retries_and_load_shedding_apply_over_http(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target, max_concurrency=1, max_queue=0)
    assert (
        await call(gw, "POST", PREDICT, '{"instances": [1]}')
    ).status == 200  # signatures cached
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 2)
    before = backend.calls["Predict"]
    answer = await call(gw, "POST", PREDICT, '{"instances": [1]}')
    assert answer.status == 200 and backend.calls["Predict"] == before + 3  # retried twice
    backend.delay = 0.5
    first = asyncio.create_task(call(gw, "POST", PREDICT, '{"instances": [1]}'))
    await asyncio.sleep(0.2)
    shed = await call(gw, "POST", PREDICT, '{"instances": [2]}')
    assert shed.status == 429, shed.body  # TF Serving's status for RESOURCE_EXHAUSTED
    assert "at capacity" in shed.json()["error"]
    assert (await first).status == 200


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    gw = await start_http(start_gateway, backend.target, max_message_bytes=4096)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.http_port)
    writer.write(
        b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 100000000\r\n\r\n"  # and no body: none is needed to refuse it
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413"), head
    writer.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert len(lines) == 1 and lines[0].startswith("Predict model=half_plus_two")
    assert "code=RESOURCE_EXHAUSTED" in lines[0]


async def test_every_http_call_gets_an_access_log_line(
    http: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    await call(http, "DELETE", "/v1/models/half_plus_two")
    await call(http, "GET", "/tfgate/v1/nothing")
    await call(http, "POST", PREDICT, '{"instances": [1]}', {"grpc-timeout": "soon"})
    await call(http, "GET", "/readyz")  # probes are not logged
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("DELETE /v1/models/half_plus_two model=- version=- code=INVALID_ARG")
    assert lines[1].startswith("GET /tfgate/v1/nothing model=- version=- code=NOT_FOUND")
    assert lines[1].endswith("front=http")
    assert lines[2].startswith("Predict model=half_plus_two version=- code=INVALID_ARGUMENT")


async def test_a_client_that_goes_away_cancels_its_backend_call(
    http: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    assert (await call(http, "POST", PREDICT, '{"instances": [1]}')).status == 200
    backend.delay = 2.0
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(call(http, "POST", PREDICT, '{"instances": [1]}'), 0.3)
    for _ in range(40):
        if backend.cancelled:
            break
        await asyncio.sleep(0.05)
    assert backend.cancelled == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert "code=CANCELLED" in lines[-1]


async def test_names_are_percent_decoded_and_long_deadlines_work(http: Running) -> None:
    body = '{"instances": [1]}'
    answer = await call(http, "POST", "/v1/models/h%61lf_plus_two/labels/st%61ble:predict", body)
    assert answer.status == 200 and answer.json() == {"predictions": [2.5]}
    answer = await call(http, "POST", PREDICT, body, {"grpc-timeout": "99999999H"})
    assert answer.status == 200, answer.body


async def test_cors_preflight_as_tf_serving_answers_it(http: Running) -> None:
    allowed = await call(http, "OPTIONS", PREDICT, None, {"Origin": "https://app.example"})
    assert allowed.status == 200 and allowed.headers["Access-Control-Allow-Origin"] == "*"
    refused = await call(http, "OPTIONS", PREDICT)
    assert refused.status == 400
    assert refused.json()["error"] == "Origin header is missing in CORS preflight"
