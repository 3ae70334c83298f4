"""tfgate in front of the local model server, on real SavedModels executed by TensorFlow."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.conftest import StartGateway
from tests.test_gateway import expect_error
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio
T = inference_pb2.Tensor


def hp2(**fields) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        model="half_plus_two", inputs={"x": T(floats=[1.0, 2.0, 5.0])}, **fields
    )


@pytest.mark.parametrize(
    ("fields", "version", "offset"),
    [
        ({}, 2, 3.0),
        ({"version": 1}, 1, 2.0),
        ({"version_label": "stable"}, 1, 2.0),
        ({"version_label": "canary"}, 2, 3.0),
    ],
)
async def test_half_plus_two_through_tfgate(
    model_server: str, start_gateway: StartGateway, fields, version: int, offset: float
) -> None:
    gw = await start_gateway(model_server)
    answer = await gw.stub.Predict(hp2(**fields), timeout=30)
    assert answer.version == version
    assert answer.signature == "serving_default"
    assert list(answer.outputs["y"].floats) == [0.5 + offset, 1.0 + offset, 2.5 + offset]


async def test_errors_from_the_real_model_server(
    model_server: str, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(model_server)
    await expect_error(
        gw.stub.Predict(inference_pb2.PredictRequest(model="nope"), timeout=30),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )
    await expect_error(
        gw.stub.Predict(hp2(version=7), timeout=30),
        grpc.StatusCode.NOT_FOUND,
        "Specific(half_plus_two, 7)",
    )
    await expect_error(
        gw.stub.Predict(hp2(version_label="beta"), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: beta",
    )
    await expect_error(
        gw.stub.Predict(hp2(signature="nope"), timeout=30),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )


async def test_large_input_through_tfgate(model_server: str, start_gateway: StartGateway) -> None:
    gw = await start_gateway(model_server)
    x = np.random.default_rng(5).standard_normal(150_528).astype(np.float32)
    answer = await gw.stub.Predict(
        inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": T(floats=x.tolist())}),
        timeout=30,
    )
    y = np.array(answer.outputs["y"].floats, dtype=np.float32)
    assert np.allclose(y, 0.5 * x + 3.0)


async def test_get_model_from_the_real_model_server(
    model_server: str, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(model_server)
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="half_plus_two"), timeout=30)
    assert model.version == 2
    assert [(v.version, v.state) for v in model.versions] == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert "serving_default" in model.signatures
    assert not [name for name in model.signatures if name.startswith("__")]
    x = model.signatures["serving_default"].inputs["x"]
    assert x.dtype == "float32"
