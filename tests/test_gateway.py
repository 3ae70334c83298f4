"""tfgate end to end against the fake TF Serving: routing, validation, errors, caching."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import ECHO_DTYPES, FakeTFServing, Model, Version, half_plus
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

PredictRequest = inference_pb2.PredictRequest
T = inference_pb2.Tensor


def hp2(**fields) -> inference_pb2.PredictRequest:
    return PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0, 2.0, 5.0])}, **fields)


def _echo(name: str, tensor: inference_pb2.Tensor) -> inference_pb2.PredictRequest:
    # The echo model needs every input; the others are empty tensors.
    inputs = {other: T(shape=[0]) for other in ECHO_DTYPES}
    inputs[name] = tensor
    return PredictRequest(model="echo", inputs=inputs, output_filter=[name])


async def expect_error(call, code: grpc.StatusCode, *needles: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    details = info.value.details() or ""
    for needle in needles:
        assert needle in details
    assert "Traceback" not in details
    return details


@pytest.mark.parametrize(
    ("fields", "version", "offset"),
    [
        ({}, 2, 3.0),
        ({"version": 1}, 1, 2.0),
        ({"version": 2}, 2, 3.0),
        ({"version_label": "stable"}, 1, 2.0),
        ({"version_label": "canary"}, 2, 3.0),
    ],
)
async def test_predict_routes_versions(gw: Running, fields, version: int, offset: float) -> None:
    answer = await gw.stub.Predict(hp2(**fields))
    assert answer.model == "half_plus_two"
    assert answer.version == version
    assert answer.signature == "serving_default"
    y = answer.outputs["y"]
    assert list(y.floats) == [0.5 + offset, 1.0 + offset, 2.5 + offset]
    assert list(y.shape) == [3] and y.dtype == "float32"


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (
            hp2(version=1, version_label="stable"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "set at most one",
        ),
        (PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "model: required"),
        (hp2(version=-3), grpc.StatusCode.INVALID_ARGUMENT, "version: must be positive"),
        (
            PredictRequest(model="half_plus_two"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "missing 'x' (float32 [-1])",
        ),
        (
            PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1]), "z": T(floats=[1])}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'z': not an input of signature 'serving_default'",
        ),
        (
            PredictRequest(model="half_plus_two", inputs={"x": T(strings=["a"])}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x': expects float32",
        ),
        (
            PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1, 2], shape=[1, 2])}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x': shape [1, 2] does not match the signature's [-1]",
        ),
        (
            PredictRequest(model="half_plus_two", inputs={"": T(floats=[1])}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input '': not an input of signature 'serving_default'",  # no REST-style unnamed input
        ),
        (hp2(output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "output_filter: 'nope'"),
        (hp2(output_filter=["y", "y"]), grpc.StatusCode.INVALID_ARGUMENT, "listed twice"),
        (
            hp2(signature="other"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "other" not found.',
        ),
        (
            _echo("i8", T(ints=[300])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'i8': a value is out of range for int8",
        ),
        (
            _echo("i32", T(floats=[0.5])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'i32': int32 needs whole numbers",
        ),
    ],
)
async def test_invalid_requests_never_reach_predict(
    gw: Running, backend: FakeTFServing, request_, code, needle
) -> None:
    await expect_error(gw.stub.Predict(request_), code, needle)
    assert backend.calls["Predict"] == 0


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (
            PredictRequest(model="nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            hp2(version=9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 9)",
        ),
        (
            hp2(version_label="beta"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: beta",
        ),
    ],
)
async def test_tf_serving_codes_are_kept(gw: Running, request_, code, needle) -> None:
    await expect_error(gw.stub.Predict(request_), code, needle)


async def test_garbage_bytes_are_invalid_argument(gw: Running) -> None:
    raw: Any = gw.channel.unary_unary("/tfgate.v1.InferenceService/Predict")
    await expect_error(
        raw(b"\xff\xff\xff\xff"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a valid tfgate.v1.PredictRequest",
    )
    # and the server keeps serving
    assert (await gw.stub.Predict(hp2())).version == 2


async def test_output_filter_and_two_inputs(gw: Running) -> None:
    request = PredictRequest(
        model="shapes",
        signature="two",
        inputs={"a": T(floats=[1.5, 2.0]), "b": T(ints=[2, 3])},
        output_filter=["prod"],
    )
    answer = await gw.stub.Predict(request)
    assert set(answer.outputs) == {"prod"}
    assert list(answer.outputs["prod"].floats) == [3.0, 6.0]
    assert answer.version == 3 and answer.signature == "two"


async def test_shaped_input(gw: Running) -> None:
    image = T(floats=list(range(8)), shape=[2, 2, 2])
    answer = await gw.stub.Predict(PredictRequest(model="shapes", inputs={"image": image}))
    assert list(answer.outputs["total"].floats) == [6.0, 22.0]


ECHO_CASES = [
    ("f32", T(floats=[1.25, -3.5]), "floats", [1.25, -3.5], "float32"),
    ("f64", T(doubles=[0.1, 1e300]), "doubles", [0.1, 1e300], "float64"),
    ("f16", T(floats=[0.5, -2.0]), "floats", [0.5, -2.0], "float16"),
    ("bf16", T(floats=[1.5, -0.25]), "floats", [1.5, -0.25], "bfloat16"),
    ("i8", T(ints=[-128, 127]), "ints", [-128, 127], "int8"),
    ("u8", T(ints=[0, 255]), "ints", [0, 255], "uint8"),
    ("i16", T(ints=[-32768]), "ints", [-32768], "int16"),
    ("u16", T(ints=[65535]), "ints", [65535], "uint16"),
    ("i32", T(floats=[7.0, -8.0]), "ints", [7, -8], "int32"),
    ("u32", T(ints=[2**32 - 1]), "ints", [2**32 - 1], "uint32"),
    ("i64", T(ints=[-(2**62), 2**62]), "ints", [-(2**62), 2**62], "int64"),
    ("u64", T(ints=[2**62]), "ints", [2**62], "uint64"),
    ("b", T(bools=[True, False, True]), "bools", [True, False, True], "bool"),
    ("s", T(strings=["héllo", ""]), "strings", ["héllo", ""], "string"),
    ("s", T(bytes_values=[b"\xff\x01"]), "bytes_values", [b"\xff\x01"], "string"),
]


@pytest.mark.parametrize("tensor_content", [False, True], ids=["val-lists", "tensor-content"])
async def test_every_dtype_round_trips(start_gateway: StartGateway, tensor_content: bool) -> None:
    fake = FakeTFServing(tensor_content=tensor_content)
    await fake.start()
    try:
        gw = await start_gateway(fake.target)
        for name, tensor, field, values, dtype in ECHO_CASES:
            answer = await gw.stub.Predict(_echo(name, tensor))
            out = answer.outputs[name]
            assert out.dtype == dtype, name
            assert list(getattr(out, field)) == values, name
    finally:
        await fake.stop()


async def test_large_tensor(gw: Running, backend: FakeTFServing) -> None:
    backend.models["big"] = Model(versions={1: Version({"serving_default": half_plus(2.0)})})
    x = np.random.default_rng(3).standard_normal(150_528).astype(np.float32)
    answer = await gw.stub.Predict(PredictRequest(model="big", inputs={"x": T(floats=x.tolist())}))
    assert np.allclose(np.array(answer.outputs["y"].floats, dtype=np.float32), x * 0.5 + 2)


async def test_get_model(gw: Running) -> None:
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="half_plus_two"))
    assert model.name == "half_plus_two" and model.version == 2
    assert [(v.version, v.state) for v in model.versions] == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    sig = model.signatures["serving_default"]
    assert sig.method == "tensorflow/serving/predict"
    assert sig.inputs["x"].dtype == "float32" and list(sig.inputs["x"].shape) == [-1]
    assert sig.outputs["y"].dtype == "float32"
    labelled = await gw.stub.GetModel(
        inference_pb2.GetModelRequest(model="half_plus_two", version_label="stable")
    )
    assert labelled.version == 1
    echo = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="echo"))
    assert echo.signatures["serving_default"].inputs["bf16"].unknown_rank
    await expect_error(
        gw.stub.GetModel(inference_pb2.GetModelRequest(model="nope")), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        gw.stub.GetModel(inference_pb2.GetModelRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model: required",
    )


async def test_signatures_are_cached_and_refreshed(gw: Running, backend: FakeTFServing) -> None:
    for _ in range(3):
        await gw.stub.Predict(hp2())
    assert backend.calls["GetModelMetadata"] == 1
    assert backend.calls["Predict"] == 3
    # A new version appears: the answer comes from it, and the next call re-reads its signature.
    backend.models["half_plus_two"].versions[3] = Version({"serving_default": half_plus(4.0)})
    assert (await gw.stub.Predict(hp2())).version == 3
    await gw.stub.Predict(hp2())
    assert backend.calls["GetModelMetadata"] == 2
    # The version disappears: NOT_FOUND drops the cache, the next call resolves afresh.
    del backend.models["half_plus_two"].versions[1]
    await expect_error(gw.stub.Predict(hp2(version=1)), grpc.StatusCode.NOT_FOUND)


async def test_internal_errors_do_not_leak(gw: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    from tfgate import translate

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(translate, "backend_request", broken)
    details = await expect_error(gw.stub.Predict(hp2()), grpc.StatusCode.INTERNAL)
    assert "secret" not in details
    monkeypatch.undo()
    assert (await gw.stub.Predict(hp2())).version == 2


async def test_one_access_log_line_per_call(gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="tfgate.access")
    await gw.stub.Predict(hp2(version_label="stable"))
    await expect_error(gw.stub.Predict(hp2(version=9)), grpc.StatusCode.NOT_FOUND)
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert len(lines) == 2
    assert lines[0].startswith("Predict model=half_plus_two version=1 code=OK ms=")
    assert lines[1].startswith("Predict model=half_plus_two version=- code=NOT_FOUND ms=")


async def test_the_value_limit_is_checked_before_the_signature(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(backend.target, max_tensor_elements=4)
    request = PredictRequest(
        model="half_plus_two", signature="nope", inputs={"x": T(floats=list(range(10)))}
    )
    await expect_error(
        gw.stub.Predict(request), grpc.StatusCode.INVALID_ARGUMENT, "max_tensor_elements"
    )
    assert backend.calls["Predict"] == 0
