"""Micro-batching on the real demo SavedModels: tfgate with [models.NAME.batching] in front of
the local model server answers every caller exactly what tfgate without it answers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from tests.conftest import Running
from tfgate.app import Gateway
from tfgate.batcher import BatchingConfig
from tfgate.config import Config
from tfgate.plans import config as pipeline_config
from tfgate.plans.plan import Plans
from tfgate.v1 import inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.asyncio
T = inference_pb2.Tensor
DEMO = Path(__file__).resolve().parent.parent / "config" / "tfgate.toml"
# A window wide enough that calls sent together meet in it on a busy machine too.
WINDOW = BatchingConfig(max_batch_size=32, max_delay=0.05)
BATCHED = {name: WINDOW for name in ("half_plus_two", "sentiment", "iris")}
SELECTORS: list[dict[str, Any]] = [{}, {"version": 1}, {"version": 2}, {"version_label": "stable"}]
WORDS = ["great", "boring", "movie", "loved", "awful", "okay", "plot", "acting", "fine", "zzz"]


async def _gateway(backend: str, batching: dict[str, BatchingConfig] | None) -> Running:
    config = Config(listen="127.0.0.1:0", backend=backend, health_interval=0.2)
    gateway = Gateway(config, Plans(pipeline_config.load(str(DEMO))), batching=batching)
    port = await gateway.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Running(gateway, channel, inference_pb2_grpc.InferenceServiceStub(channel))


@pytest_asyncio.fixture
async def pair(model_server: str) -> AsyncIterator[tuple[Running, Running]]:
    """tfgate without batching, and with it for every demo model."""
    plain = await _gateway(model_server, None)
    batched = await _gateway(model_server, BATCHED)
    yield plain, batched
    for gw in (plain, batched):
        await gw.channel.close()
        await gw.gateway.stop(grace=0)


def requests(seed: int) -> list[inference_pb2.PredictRequest]:
    """Calls of 1 to 4 rows each to every demo model, versions and labels mixed."""
    rng = random.Random(seed)
    out = []
    for i in range(36):
        rows = rng.randint(1, 4)
        kind = i % 3
        if kind == 0:
            x = T(floats=[round(rng.uniform(-100, 100), 3) for _ in range(rows)])
            pick: dict[str, Any] = rng.choice(SELECTORS)
            out.append(inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": x}, **pick))
        elif kind == 1:
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(rows)]
            out.append(
                inference_pb2.PredictRequest(model="sentiment", inputs={"text": T(strings=texts)})
            )
        else:
            flowers = [round(rng.uniform(0.1, 8.0), 2) for _ in range(rows * 4)]
            out.append(
                inference_pb2.PredictRequest(
                    model="iris", inputs={"measurements": T(floats=flowers)}
                )
            )
    return out


async def _all(gw: Running, calls: list[inference_pb2.PredictRequest]) -> list[object]:
    return list(await asyncio.gather(*(gw.stub.Predict(c, timeout=30) for c in calls)))


async def test_batched_answers_are_the_unbatched_answers(pair: tuple[Running, Running]) -> None:
    plain, batched = pair
    calls = requests(seed=14)
    expected = [await plain.stub.Predict(c, timeout=30) for c in calls]  # one at a time
    got = await _all(batched, calls)
    for call, mine, theirs in zip(calls, got, expected, strict=True):
        assert mine == theirs, call  # values, order, shapes, model and version, all
    batchers = batched.gateway.inference.batchers
    assert sum(b.batches for b in batchers.values()) >= 3  # the calls were batched
    assert sum(b.batched_calls for b in batchers.values()) > sum(
        b.batches for b in batchers.values()
    )
    assert all(b.unbatchable is None for b in batchers.values())


async def test_versions_are_never_mixed_in_a_batch(pair: tuple[Running, Running]) -> None:
    _, batched = pair
    x = T(floats=[1.0, 2.0])
    calls = [
        inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": x}, version=v)
        for v in (1, 2) * 8
    ]
    answers = await _all(batched, calls)
    for call, answer in zip(calls, answers, strict=True):
        assert isinstance(answer, inference_pb2.PredictResponse)
        assert answer.version == call.version
        offset = 2.0 if call.version == 1 else 3.0  # version 2 is half_plus_three
        assert list(answer.outputs["y"].floats) == [0.5 + offset, 1.0 + offset]


async def test_a_batch_through_the_metrics_and_access_log(pair: tuple[Running, Running]) -> None:
    _, batched = pair
    flowers = T(floats=[5.1, 3.5, 1.4, 0.2])
    call = inference_pb2.PredictRequest(model="iris", inputs={"measurements": flowers})
    await _all(batched, [call] * 8)
    exposition = batched.gateway.metrics.exposition().decode()  # type: ignore[attr-defined]
    counts = [
        line
        for line in exposition.splitlines()
        if line.startswith('tfgate_batch_size_count{model="iris"}')
    ]
    assert counts and float(counts[0].split()[-1]) >= 1
    assert 'tfgate_batching_unbatchable{model="iris"}' not in exposition
