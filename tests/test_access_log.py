"""The JSON access log on every front, and request ids end to end: taken from the caller or
generated, returned to it, sent on to TF Serving."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import Answer, call, start_http
from tests.test_auth import ALPHA, keys_file
from tests.test_passthrough import tf_predict
from tfgate.calls import MAX_LOGGED, MAX_REQUEST_ID, Call, Record, new_request_id, request_id
from tfgate.config import Config
from tfgate.errors import Code, NotFound
from tfgate.logs import JsonFormatter, formatter
from tfgate.policy.config import ClientRights, PolicyConfig
from tfgate.tfs.tensorflow_serving.apis import prediction_service_pb2_grpc
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

COMMON = {
    "time",
    "request_id",
    "client",
    "peer",
    "front",
    "method",
    "model",
    "version",
    "code",
    "ms",
    "request_bytes",
    "response_bytes",
    "attempts",
}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_GENERATED = re.compile(r"[0-9a-f]{20,}")
V1_BODY = '{"inputs": {"x": {"floats": [1, 4]}}}'


def hp2(**fields: Any) -> inference_pb2.PredictRequest:
    x = inference_pb2.Tensor(floats=[1.0, 4.0])
    return inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": x}, **fields)


def json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access records of the run, as the JSON format writes them."""
    render = JsonFormatter()
    lines = [render.format(r) for r in caplog.records if r.name == "tfgate.access"]
    assert all("\n" not in line for line in lines)
    return [orjson.loads(line) for line in lines]


def header(answer: Answer, name: str) -> str | None:
    return {k.lower(): v for k, v in answer.headers.items()}.get(name)


@pytest.fixture(autouse=True)
def _access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")


async def _returned_id(call_: Any) -> str | None:
    """The request id tfgate returned, in the trailing metadata (a gRPC client retries a call
    only until it has received initial metadata: a refusal must not come after any)."""
    assert not await call_.initial_metadata()
    metadata = await call_.trailing_metadata()
    return {k: v for k, v in metadata or ()}.get("x-request-id")


async def test_grpc_v1_lines_have_every_key_and_the_callers_request_id(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    await gw.stub.Predict(hp2(version=1))  # its signature cached: the next call is one attempt
    caplog.clear()
    backend.request_ids.clear()
    request = hp2(version=1)
    answer_call = gw.stub.Predict(request, metadata=(("x-request-id", "req-ok 1"),))
    answer = await answer_call
    assert await _returned_id(answer_call) == "req-ok 1"
    failing = gw.stub.Predict(
        inference_pb2.PredictRequest(model="nope"), metadata=(("x-request-id", "req-bad"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await failing
    assert await _returned_id(failing) == "req-bad"
    ok, bad = json_lines(caplog)
    assert set(ok) == COMMON and set(bad) == COMMON | {"error"}
    assert _TIME.fullmatch(ok["time"])
    assert ok["request_id"] == "req-ok 1" and bad["request_id"] == "req-bad"
    assert ok["client"] == "-" and ok["peer"].startswith("ipv4:127.0.0.1:")
    assert (ok["front"], ok["method"], ok["model"], ok["version"]) == (
        "grpc",
        "Predict",
        "half_plus_two",
        1,
    )
    assert ok["code"] == "OK" and ok["ms"] > 0
    assert ok["request_bytes"] == len(request.SerializeToString())
    assert ok["response_bytes"] == len(answer.SerializeToString())
    assert ok["attempts"] == 1
    assert bad["code"] == "NOT_FOUND" and bad["error"] == failed.value.details()
    assert bad["model"] == "nope" and bad["version"] is None and bad["response_bytes"] == 0
    # TF Serving saw the id of the call it served.
    assert "req-ok 1" in backend.request_ids


async def test_a_call_retried_once_made_two_attempts_each_with_its_id(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    await gw.stub.Predict(hp2())
    caplog.clear()
    backend.request_ids.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 1, "busy")
    await gw.stub.Predict(hp2(), metadata=(("x-request-id", "retried-1"),))
    (line,) = json_lines(caplog)
    assert line["code"] == "OK" and line["attempts"] == 2
    assert list(backend.request_ids) == ["retried-1", "retried-1"]


async def test_forwarded_tf_serving_grpc(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    backend.request_ids.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 1, "busy")
    request = tf_predict()
    answer_call = stub.Predict(request, metadata=(("x-request-id", "fwd-7"),))
    answer = await answer_call
    assert await _returned_id(answer_call) == "fwd-7"
    (line,) = json_lines(caplog)
    assert set(line) == COMMON
    assert line["front"] == "tfs-grpc"
    assert line["method"] == "/tensorflow.serving.PredictionService/Predict"
    assert line["model"] == "half_plus_two" and line["request_id"] == "fwd-7"
    assert line["request_bytes"] == len(request.SerializeToString())
    assert line["response_bytes"] == len(answer.SerializeToString())
    assert line["attempts"] == 2
    assert list(backend.request_ids) == ["fwd-7", "fwd-7"]


async def test_http_fronts(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    http = await start_http(start_gateway, backend.target)
    await call(http, "POST", "/tfgate/v1/models/half_plus_two:predict", V1_BODY)  # warm
    caplog.clear()
    backend.request_ids.clear()
    tfs_body = '{"instances": [1.0, 2.0]}'
    v1 = await call(
        http,
        "POST",
        "/tfgate/v1/models/half_plus_two:predict",
        V1_BODY,
        {"x-request-id": "h-1"},
    )
    tfs = await call(
        http, "POST", "/v1/models/half_plus_two:predict", tfs_body, {"x-request-id": "h-2"}
    )
    missing = await call(http, "GET", "/v1/models/nope", None, {"x-request-id": "h-3"})
    assert (v1.status, tfs.status, missing.status) == (200, 200, 404)
    assert [header(a, "x-request-id") for a in (v1, tfs, missing)] == ["h-1", "h-2", "h-3"]
    one, two, three = json_lines(caplog)
    assert set(one) == set(two) == COMMON | {"http_status"}
    assert set(three) == COMMON | {"http_status", "error"}
    assert (one["front"], one["method"], one["http_status"]) == ("http", "Predict", 200)
    assert one["request_bytes"] == len(V1_BODY) and one["response_bytes"] == len(v1.body)
    assert (two["front"], two["method"], two["model"]) == ("tfs-http", "Predict", "half_plus_two")
    assert two["request_bytes"] == len(tfs_body) and two["response_bytes"] == len(tfs.body)
    assert two["attempts"] == 1 and two["peer"] == "127.0.0.1"
    assert (three["code"], three["http_status"], three["method"]) == (
        "NOT_FOUND",
        404,
        "GetModelStatus",
    )
    assert three["error"] == missing.json()["error"]
    assert three["response_bytes"] == len(missing.body) and three["request_bytes"] == 0
    assert list(backend.request_ids) == ["h-1", "h-2", "h-3"]


async def test_calls_refused_early_are_logged_with_their_id(
    backend: FakeTFServing,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    policy = PolicyConfig(
        True, keys_file(tmp_path / "keys.toml"), clients={"alpha": ClientRights(("echo",))}
    )
    http = await start_http(start_gateway, backend.target, policy=policy, max_message_bytes=1024)
    key = {"x-api-key": ALPHA}
    route = await call(http, "GET", "/tfgate/v1/nothing", None, {"x-request-id": "e-1"})
    large = await call(
        http, "POST", "/v1/models/echo:predict", "x" * 2000, {"x-request-id": "e-2", **key}
    )
    anonymous = await call(
        http, "POST", "/v1/models/half_plus_two:predict", "{}", {"x-request-id": "e-3"}
    )
    denied = await call(
        http,
        "POST",
        "/v1/models/half_plus_two:predict",
        "{}",
        {"x-request-id": "e-4", **key},
    )
    http.gateway.drain.begin()
    drained = http.stub.Predict(hp2(), metadata=(("x-request-id", "e-5"),))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await drained
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await _returned_id(drained) == "e-5"
    statuses = [a.status for a in (route, large, anonymous, denied)]
    assert statuses == [404, 413, 401, 403]
    answers = (route, large, anonymous, denied)
    assert [header(a, "x-request-id") for a in answers] == ["e-1", "e-2", "e-3", "e-4"]
    lines = json_lines(caplog)
    assert [line["request_id"] for line in lines] == ["e-1", "e-2", "e-3", "e-4", "e-5"]
    assert [line["code"] for line in lines] == [
        "NOT_FOUND",
        "RESOURCE_EXHAUSTED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "UNAVAILABLE",
    ]
    assert [line.get("http_status") for line in lines] == [404, 413, 401, 403, None]
    assert all(set(line) >= COMMON | {"error"} for line in lines)
    assert [line["client"] for line in lines] == ["-", "alpha", "-", "alpha", "-"]
    assert lines[4]["front"] == "grpc" and lines[4]["error"] == refused.value.details()
    assert all(line["attempts"] == 0 for line in lines)
    assert backend.calls["Predict"] == 0


@pytest.mark.parametrize(
    "given",
    [None, "", "x" * (MAX_REQUEST_ID + 1), "bad\nid", "caf\u00e9", "tab\there"],
    ids=["absent", "empty", "too long", "newline", "non-ascii", "tab"],
)
async def test_a_missing_or_insane_request_id_is_replaced(
    backend: FakeTFServing,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
    given: str | None,
) -> None:
    http = await start_http(start_gateway, backend.target)
    caplog.set_level(logging.DEBUG)
    headers = {} if given is None else {"x-request-id": given}
    try:
        answer = await call(http, "GET", "/v1/models/half_plus_two", None, headers)
    except ValueError:  # aiohttp's client refuses to send a newline in a header
        answer = await call(http, "GET", "/v1/models/half_plus_two", None, {})
    # grpc's client sends printable ASCII only
    metadata: tuple[tuple[str, str], ...] = ()
    if given is not None and given.isascii() and given.isprintable():
        metadata = (("x-request-id", given),)
    grpc_call = http.stub.GetModel(
        inference_pb2.GetModelRequest(model="half_plus_two"), metadata=metadata
    )
    await grpc_call
    from_http, from_grpc = header(answer, "x-request-id"), await _returned_id(grpc_call)
    assert from_http and from_grpc and from_http != from_grpc
    assert _GENERATED.fullmatch(from_http) and _GENERATED.fullmatch(from_grpc)
    assert [line["request_id"] for line in json_lines(caplog)] == [from_http, from_grpc]
    if given:
        assert all(given not in r.getMessage() for r in caplog.records)


async def test_request_ids_kept_and_generated() -> None:
    assert request_id("abc-123 x") == "abc-123 x"
    assert request_id("~" * MAX_REQUEST_ID) == "~" * MAX_REQUEST_ID
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert request_id("\x7f") != "\x7f" and request_id("a\x00") != "a\x00"


async def test_caller_strings_are_escaped_and_bounded(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    forged = 'x"}\n{"code": "OK' + "n" * 10_000
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.Predict(inference_pb2.PredictRequest(model=forged))
    (line,) = json_lines(caplog)
    assert line["model"].startswith('x"}\n{"code": "OK')
    assert line["model"].endswith(f"...({len(forged)} characters)")
    assert len(line["model"]) < MAX_LOGGED + 30 and len(line["error"]) < MAX_LOGGED + 30
    assert line["code"] == "INVALID_ARGUMENT"


async def test_the_text_format_is_the_default_and_unchanged(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    assert Config().log_format == "text"
    await gw.stub.Predict(hp2(version=1), metadata=(("x-request-id", "not-in-text"),))
    (record,) = [r for r in caplog.records if r.name == "tfgate.access"]
    assert re.fullmatch(
        r"Predict model=half_plus_two version=1 code=OK ms=\d+\.\d\d client=- front=grpc",
        record.getMessage(),
    )
    line = formatter("text").format(record)
    assert line.endswith(" INFO tfgate.access " + record.getMessage())


def _docs_examples() -> list[dict[str, Any]]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    section = text.split("\n## Access log\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```json\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    return [orjson.loads(line) for block in blocks for line in block.splitlines()]


def _emitted(front: str, failure: Exception | None) -> dict[str, Any]:
    """What the JSON access log writes for a call on ``front``, ended by ``failure``."""
    record = Record(Call(front, "Predict", 0.0, "127.0.0.1", "id"))
    record.model, record.version = "m", 1
    record.done(failure)
    log = logging.LogRecord("tfgate.access", logging.INFO, __file__, 1, record, None, None)
    return dict(orjson.loads(JsonFormatter().format(log)))


async def test_the_docs_json_examples_have_the_keys_the_code_writes() -> None:
    grpc_ok, http_failed = _docs_examples()
    assert list(grpc_ok) == list(_emitted(grpc_ok["front"], None))
    assert list(http_failed) == list(_emitted(http_failed["front"], NotFound("no such model")))
    assert grpc_ok["front"] == "grpc" and http_failed["front"] == "tfs-http"
    for example in (grpc_ok, http_failed):
        assert _TIME.fullmatch(example["time"])
        assert Code[example["code"]] and isinstance(example["attempts"], int)
