"""tfgate.v1 requests end to end: unknown shapes, names over the bound, messages that fit a
gRPC header, what the access log records, and the words of the errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing, Model, Sig, Version
from tests.http_client import call, start_http
from tests.test_gateway import expect_error, hp2
from tfgate.errors import InvalidArgument
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

PredictRequest = inference_pb2.PredictRequest
T = inference_pb2.Tensor
# The bounds docs/api.md documents (tfgate.errors.MAX_NAME, MAX_MESSAGE_BYTES).
MAX_NAME = 1024
MAX_MESSAGE_BYTES = 2048
LONG = "m" * (MAX_NAME + 1)


class NoShapeFake(FakeTFServing):
    """A fake whose metadata writes no tensor_shape for inputs of unknown rank, as TF Serving's
    half_plus_three (an older export) has it, instead of ``unknown_rank: true``."""

    def _metadata(self, request: Any) -> get_model_metadata_pb2.GetModelMetadataResponse:
        response = super()._metadata(request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        for definition in signatures.signature_def.values():
            for info in definition.inputs.values():
                if info.tensor_shape.unknown_rank:
                    info.ClearField("tensor_shape")
        response.metadata["signature_def"].Pack(signatures)
        return response


def _models() -> dict[str, Model]:
    column = Sig(
        inputs={"x": (types_pb2.DT_FLOAT, (-1, 1))},
        outputs={"y": (types_pb2.DT_FLOAT, (-1, 1))},
        fn=lambda a: {"y": (a["x"] * 0.5 + 2.0).astype(np.float32)},
    )
    three = Sig(
        inputs={"x": (types_pb2.DT_FLOAT, None)},
        outputs={"y": (types_pb2.DT_FLOAT, None)},
        fn=lambda a: {"y": (a["x"] * 0.5 + 3.0).astype(np.float32)},
    )
    # A small answer from TF Serving (1 byte per int8 in tensor_content) that is ten times
    # larger as tfgate.v1 (an int64 varint of -1 per value).
    wide = Sig(
        inputs={"n": (types_pb2.DT_INT64, (-1,))},
        outputs={"y": (types_pb2.DT_INT8, (-1,))},
        fn=lambda a: {"y": np.full(int(a["n"][0]), -1, dtype=np.int8)},
    )
    init = Sig(inputs={}, outputs={}, fn=dict)
    return {
        "half_plus_two": Model(versions={1: Version({"serving_default": column})}),
        "half_plus_three": Model(
            versions={1: Version({"serving_default": three, "__saved_model_init_op": init})}
        ),
        "wide": Model(versions={1: Version({"serving_default": wide})}),
    }


@pytest_asyncio.fixture
async def shaped(start_gateway: StartGateway):
    fake = NoShapeFake(_models(), tensor_content=True)
    await fake.start()
    try:
        yield fake, await start_gateway(fake.target, http_listen="127.0.0.1:0")
    finally:
        await fake.stop()


def _three(tensor: inference_pb2.Tensor) -> PredictRequest:
    return PredictRequest(model="half_plus_three", inputs={"x": tensor})


# -- shapes --------------------------------------------------------------------------------


async def test_an_input_without_tensor_shape_takes_any_shape(shaped) -> None:
    _, gw = shaped
    for tensor, shape in [
        (T(floats=[1.0, 2.0, 5.0]), [3]),
        (T(floats=[1.0, 2.0, 5.0], shape=[3, 1]), [3, 1]),
        (T(floats=[1.0], shape=[1]), [1]),
        (T(floats=[4.0], shape=[]), []),  # no shape given: one value is a scalar
        (T(floats=[4.0, 6.0]), [2]),  # and more are 1-D
        (T(floats=[1.0, 2.0, 3.0, 4.0], shape=[2, 1, 2]), [2, 1, 2]),
    ]:
        answer = await gw.stub.Predict(_three(tensor))
        y = answer.outputs["y"]
        assert list(y.shape) == shape
        assert list(y.floats) == [v * 0.5 + 3.0 for v in tensor.floats]
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="half_plus_three"))
    assert model.signatures["serving_default"].inputs["x"].unknown_rank


async def test_values_without_a_shape_take_the_signatures(shaped) -> None:
    _, gw = shaped
    answer = await gw.stub.Predict(
        PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0, 2.0, 5.0])})
    )
    assert list(answer.outputs["y"].shape) == [3, 1]
    assert list(answer.outputs["y"].floats) == [2.5, 3.0, 4.5]
    # tfgate.v1 as JSON is the same message: the same fit.
    http = await call(
        gw, "POST", "/tfgate/v1/models/half_plus_two:predict", '{"inputs": {"x": {"floats": [1]}}}'
    )
    assert http.status == 200, http.body
    assert http.json()["outputs"]["y"]["shape"] == ["1", "1"]
    # An explicit shape that contradicts the signature stays refused (stricter than TF Serving).
    request = PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0], shape=[1])})
    await expect_error(
        gw.stub.Predict(request),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'x': shape [1] does not match the signature's [-1, 1]",
    )


async def test_refusals_name_the_input(shaped) -> None:
    fake, gw = shaped
    cases = [
        (_three(T()), "input 'x': no value list"),
        (_three(T(ints=[1], shape=[1] * 65)), "input 'x': shape has 65 dimensions"),
        (_three(T(strings=["a"], shape=[1] * 65)), "input 'x': shape has 65 dimensions"),
        (_three(T(floats=[1.0], shape=[2])), "holds 2 values, but 1 was given"),
    ]
    for request, needle in cases:
        await expect_error(gw.stub.Predict(request), grpc.StatusCode.INVALID_ARGUMENT, needle)
    assert fake.calls["Predict"] == 0


# -- names and messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (PredictRequest(model=LONG), "model"),
        (hp2(version_label=LONG), "version_label"),
        (hp2(signature=LONG), "signature"),
        (PredictRequest(model="half_plus_two", inputs={LONG: T(floats=[1.0])}), "input 'mmm"),
        (hp2(output_filter=["y", LONG]), "output_filter 'mmm"),
    ],
)
async def test_names_over_the_bound_are_refused_naming_the_field(
    gw: Running, backend: FakeTFServing, request_, field: str
) -> None:
    details = await expect_error(
        gw.stub.Predict(request_),
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
        f"{MAX_NAME + 1} characters long, more than tfgate's {MAX_NAME}",
    )
    assert len(details) < 200
    assert backend.calls["Predict"] == backend.calls["GetModelMetadata"] == 0


async def test_names_at_the_bound_are_not_refused_for_their_length(gw: Running) -> None:
    await expect_error(
        gw.stub.Predict(PredictRequest(model="m" * MAX_NAME)),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request",
    )


async def test_a_long_name_is_refused_on_every_front(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target)
    await expect_error(
        gw.stub.GetModel(inference_pb2.GetModelRequest(model=LONG)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model: ",
    )
    for path, body in [
        (f"/v1/models/{LONG}:predict", '{"instances": [1]}'),
        (f"/v1/models/{LONG}", None),
        (f"/tfgate/v1/models/{LONG}:predict", '{"inputs": {"x": {"floats": [1]}}}'),
        (f"/tfgate/v1/models/{LONG}", None),
    ]:
        answer = await call(gw, "POST" if body else "GET", path, body)
        assert answer.status == 400, (path, answer.body)
        assert b"model: 1025 characters long" in answer.body, path
    assert backend.calls["Predict"] == backend.calls["GetModelMetadata"] == 0


@pytest.mark.parametrize("unit", ["y", "\u00e9", "\x01", "\U0001f600"])
async def test_a_long_message_keeps_its_code_and_is_cut(
    gw: Running, monkeypatch: pytest.MonkeyPatch, unit: str
) -> None:
    from tfgate import translate

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument("input 'x': " + unit * 40_000)

    monkeypatch.setattr(translate, "backend_request", refuse)
    details = await expect_error(
        gw.stub.Predict(hp2()), grpc.StatusCode.INVALID_ARGUMENT, "input 'x': "
    )
    assert len(details.encode()) <= MAX_MESSAGE_BYTES and details.endswith("...")


# -- the access log ------------------------------------------------------------------------


def _access(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]


async def test_caller_text_cannot_break_or_flood_the_access_log(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    forged = 'x\nPredict model=half_plus_two version=1 code=OK ms=1 front=grpc "\\'
    await expect_error(gw.stub.Predict(PredictRequest(model=forged)), grpc.StatusCode.NOT_FOUND)
    await expect_error(
        gw.stub.Predict(PredictRequest(model="n" * 100_000)), grpc.StatusCode.INVALID_ARGUMENT
    )
    await expect_error(
        gw.stub.Predict(PredictRequest(model="a code=OK")), grpc.StatusCode.NOT_FOUND
    )
    lines = _access(caplog)
    assert len(lines) == 3
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert lines[0].startswith(
        'Predict model="x\\nPredict model=half_plus_two version=1 code=OK ms=1 front=grpc '
        '\\"\\\\" version=- code=NOT_FOUND ms='
    )
    assert len(lines[1]) < 400 and "...(100000 characters)" in lines[1]
    assert lines[2].startswith('Predict model="a code=OK" version=- code=NOT_FOUND ms=')


async def test_an_answer_over_the_send_limit_is_logged_as_the_caller_gets_it(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTFServing(_models(), tensor_content=True)
    await fake.start()
    try:
        gw = await start_gateway(fake.target, max_message_bytes=4096)
        caplog.set_level(logging.INFO, logger="tfgate.access")
        request = PredictRequest(model="wide", inputs={"n": T(ints=[2000])})
        await expect_error(
            gw.stub.Predict(request),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "more than tfgate's max_message_bytes (4096)",
        )
        small = await gw.stub.Predict(PredictRequest(model="wide", inputs={"n": T(ints=[10])}))
        assert list(small.outputs["y"].ints) == [-1] * 10
    finally:
        await fake.stop()
    lines = _access(caplog)
    assert lines[0].startswith("Predict model=wide version=1 code=RESOURCE_EXHAUSTED ms=")
    assert lines[1].startswith("Predict model=wide version=1 code=OK ms=")


async def test_a_deadline_grpc_ends_is_logged_as_deadline_exceeded(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await gw.stub.Predict(hp2())).version == 2  # the signatures are cached
    caplog.set_level(logging.INFO, logger="tfgate.access")
    caplog.clear()
    backend.delay = 2.0
    await expect_error(gw.stub.Predict(hp2(), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    await _until(lambda: _access(caplog))
    assert " code=DEADLINE_EXCEEDED " in _access(caplog)[0]


async def test_calls_a_shutdown_ends_are_logged_as_unavailable(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_http(start_gateway, backend.target)
    assert (await gw.stub.Predict(hp2())).version == 2  # the signatures are cached
    caplog.set_level(logging.INFO, logger="tfgate.access")
    caplog.clear()
    backend.delay = 5.0
    grpc_call = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=10))
    http_call = asyncio.ensure_future(
        call(gw, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1]}')
    )
    await _until(lambda: backend.in_flight == 2)
    await gw.gateway.stop(grace=0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_call
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aiohttp.ClientError):  # the HTTP caller loses its connection
        await http_call
    await _until(lambda: len(_access(caplog)) == 2)
    assert all(" code=UNAVAILABLE " in line for line in _access(caplog)), _access(caplog)


async def _until(condition: Any) -> None:
    for _ in range(500):  # 5 s at most
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


# -- words ---------------------------------------------------------------------------------


async def test_get_model_and_predict_word_an_unknown_model_alike(gw: Running) -> None:
    predict = await expect_error(
        gw.stub.Predict(PredictRequest(model="nope")), grpc.StatusCode.NOT_FOUND
    )
    get_model = await expect_error(
        gw.stub.GetModel(inference_pb2.GetModelRequest(model="nope")), grpc.StatusCode.NOT_FOUND
    )
    assert predict == get_model == "Servable not found for request: Latest(nope)"


async def test_signatures_offered_leave_out_the_init_op(shaped) -> None:
    _, gw = shaped
    details = await expect_error(
        gw.stub.Predict(PredictRequest(model="half_plus_three", signature="s")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.endswith("version 1 has: serving_default"), details
