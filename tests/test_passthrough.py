"""TF Serving's own API through tfgate: forwarded as bytes, with retries, the cap and deadlines."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

pytestmark = pytest.mark.asyncio


def tf_predict(model: str = "half_plus_two", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]
            ),
            float_val=[1.0, 4.0],
        )
    )
    return request


async def test_predict_is_forwarded_unchanged(gw: Running, backend: FakeTFServing) -> None:
    via_tfgate = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    async with grpc.aio.insecure_channel(backend.target) as direct_channel:
        direct = prediction_service_pb2_grpc.PredictionServiceStub(direct_channel)
        for spec in ({}, {"version": 1}, {"version_label": "canary"}):
            ours = await via_tfgate.Predict(tf_predict(**spec), timeout=5)
            theirs = await direct.Predict(tf_predict(**spec), timeout=5)
            assert ours.SerializeToString() == theirs.SerializeToString()
    answer = await via_tfgate.Predict(tf_predict(version=1), timeout=5)
    assert list(answer.outputs["y"].float_val) == [2.5, 4.0]
    assert answer.model_spec.version.value == 1


async def test_metadata_and_status_are_forwarded(gw: Running) -> None:
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    metadata = await prediction.GetModelMetadata(request, timeout=5)
    assert metadata.model_spec.version.value == 2
    models = model_service_pb2_grpc.ModelServiceStub(gw.channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "half_plus_two"
    status = await models.GetModelStatus(status_request, timeout=5)
    assert [s.version for s in status.model_version_status] == [1, 2]


async def test_tf_serving_codes_retries_and_log(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tfgate.access")
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await prediction.Predict(tf_predict("nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Latest(nope)"
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 2)
    before = backend.calls["Predict"]
    assert (await prediction.Predict(tf_predict(), timeout=5)).model_spec.version.value == 2
    assert backend.calls["Predict"] == before + 3
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert lines[0].startswith(
        "/tensorflow.serving.PredictionService/Predict model=nope version=- code=NOT_FOUND"
    )
    assert lines[1].startswith(
        "/tensorflow.serving.PredictionService/Predict model=half_plus_two version=- code=OK"
    )


async def test_reload_config_is_not_forwarded(gw: Running) -> None:
    models = model_service_pb2_grpc.ModelServiceStub(gw.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await models.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_can_be_turned_off(backend: FakeTFServing, start_gateway: StartGateway) -> None:
    gw = await start_gateway(backend.target, tf_serving_api=False)
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await prediction.Predict(tf_predict(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert backend.calls["Predict"] == 0
