"""The demo config, config/tfgate.toml, through tfgate in front of the local model server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from tests.conftest import Running
from tfgate.app import Gateway
from tfgate.config import Config
from tfgate.plans import config as pipeline_config
from tfgate.plans.plan import Plans
from tfgate.v1 import inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.asyncio
T = inference_pb2.Tensor
DEMO = Path(__file__).resolve().parent.parent / "config" / "tfgate.toml"


@pytest_asyncio.fixture
async def gw(model_server: str) -> AsyncIterator[Running]:
    config = Config(listen="127.0.0.1:0", backend=model_server, health_interval=0.2)
    gateway = Gateway(config, Plans(pipeline_config.load(str(DEMO))))
    port = await gateway.start()  # binds both sections to the real signatures, or fails
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield Running(gateway, channel, inference_pb2_grpc.InferenceServiceStub(channel))
    await channel.close()
    await gateway.stop(grace=0)


def best(answer: inference_pb2.PredictResponse, name: str) -> list[str]:
    """The first label of each row of the labels output ``name``."""
    tensor = answer.outputs[name]
    return np.array(tensor.strings).reshape(tuple(tensor.shape))[:, 0].tolist()


async def test_sentiment_from_plain_text(gw: Running) -> None:
    texts = ["A great movie, I LOVED it!", "Boring plot and awful acting.", "It was okay."]
    answer = await gw.stub.Predict(
        inference_pb2.PredictRequest(model="sentiment", inputs={"text": T(strings=texts)}),
        timeout=30,
    )
    assert set(answer.outputs) == {"label", "score"}
    assert list(answer.outputs["label"].shape) == [3, 3]
    assert best(answer, "label") == ["positive", "negative", "neutral"]
    scores = np.array(answer.outputs["score"].floats).reshape(3, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


async def test_iris_from_measurements(gw: Running) -> None:
    flowers = [5.1, 3.5, 1.4, 0.2, 5.9, 2.8, 4.4, 1.3, 6.7, 3.0, 5.6, 2.3]
    answer = await gw.stub.Predict(
        inference_pb2.PredictRequest(model="iris", inputs={"measurements": T(floats=flowers)}),
        timeout=30,
    )
    assert best(answer, "species") == ["setosa", "versicolor", "virginica"]
    assert answer.outputs["score"].dtype == "float32"


async def test_get_model_shows_what_to_send(gw: Running) -> None:
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="sentiment"), timeout=30)
    assert model.signatures["serving_default"].inputs["token_ids"].dtype == "int64"
    text = model.domain_signatures["serving_default"].inputs["text"]
    assert (text.dtype, list(text.shape), text.alias) == ("string", [-1], "token_ids")
