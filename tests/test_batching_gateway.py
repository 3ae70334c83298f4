"""Micro-batching end to end: tfgate with [models.NAME.batching] before the fake TF Serving, on
every front that calls the core, with the cache, the access log and the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing, Model, Sig, Version, default_models
from tests.http_client import call, start_http
from tfgate.batcher import BatchingConfig
from tfgate.cache import CacheConfig
from tfgate.logs import JsonFormatter
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

T = inference_pb2.Tensor
# A window wide enough that calls sent together meet in it on a busy machine too.
WINDOW = BatchingConfig(max_batch_size=16, max_delay=0.05)
BATCHED = {"half_plus_two": WINDOW, "reducer": WINDOW, "shapes": WINDOW}


def reducer() -> Sig:
    """Declares a batched output but sums over the batch: one row, whatever it is sent."""
    return Sig(
        inputs={"x": (types_pb2.DT_FLOAT, (-1,))},
        outputs={"total": (types_pb2.DT_FLOAT, (-1,))},
        fn=lambda a: {"total": a["x"].sum(keepdims=True)},
    )


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTFServing]:
    models = default_models()
    models["reducer"] = Model(versions={1: Version({"serving_default": reducer()})})
    backend = FakeTFServing(models)
    await backend.start()
    yield backend
    await backend.stop()


@pytest.fixture(autouse=True)
def _access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")


def hp2(*x: float, **fields: Any) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        model="half_plus_two", inputs={"x": T(floats=list(x))}, **fields
    )


async def batched(start_gateway: StartGateway, fake: FakeTFServing, **kw: Any) -> Running:
    return await start_gateway(fake.target, batching=BATCHED, **kw)


async def gather(gw: Running, calls: list[inference_pb2.PredictRequest]) -> list[Any]:
    return list(
        await asyncio.gather(
            *(gw.stub.Predict(c, timeout=10) for c in calls), return_exceptions=True
        )
    )


@contextlib.asynccontextmanager
async def busy(
    gw: Running, fake: FakeTFServing, model: str = "half_plus_two"
) -> AsyncIterator[None]:
    """One call of ``model`` held at TF Serving meanwhile, so that the calls made inside wait
    for their window (a call to an idle model is sent at once)."""
    before = fake.calls["Predict"]
    fake.delay = 0.3
    x = T(floats=[0.0])
    held = asyncio.ensure_future(
        gw.stub.Predict(inference_pb2.PredictRequest(model=model, inputs={"x": x}), timeout=10)
    )
    for _ in range(2500):  # until it is at the backend, sleeping its delay (5 s at most)
        if fake.calls["Predict"] != before:
            break
        await asyncio.sleep(0.002)
    else:
        raise AssertionError(f"the held call to {model} never reached the backend")
    fake.delay = 0.0
    yield
    await held


def exposition(gw: Running) -> str:
    return str(gw.gateway.metrics.exposition().decode())  # type: ignore[attr-defined]


async def test_concurrent_calls_make_one_backend_call_and_each_gets_its_rows(
    fake: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await batched(start_gateway, fake)
    calls = [hp2(*[float(i * 10 + j) for j in range(i % 3 + 1)]) for i in range(6)]
    async with busy(gw, fake):
        answers = await gather(gw, calls)
    assert fake.calls["Predict"] == 1 + 1
    for request, answer in zip(calls, answers, strict=True):
        x = np.array(request.inputs["x"].floats)
        assert list(answer.outputs["y"].floats) == list(x * 0.5 + 3.0)  # the latest: version 2
        assert list(answer.outputs["y"].shape) == [len(x)]
        assert answer.version == 2
    lines = [str(r.msg) for r in caplog.records if r.name == "tfgate.access"]
    assert sorted(line.rsplit(" ", 1)[-1] for line in lines) == ["batch=1"] + ["batch=6"] * 6
    batch_lines = [r for r in caplog.records if str(r.msg).endswith(" batch=6")]
    fields = orjson.loads(JsonFormatter().format(batch_lines[-1]))
    assert fields["batch"] == 6 and fields["attempts"] == 1
    assert 'tfgate_batch_size_count{model="half_plus_two"} 2.0' in exposition(gw)
    assert 'tfgate_batch_size_sum{model="half_plus_two"} 7.0' in exposition(gw)


async def test_a_call_to_an_idle_model_is_sent_at_once(
    fake: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await batched(start_gateway, fake)
    await gw.stub.Predict(hp2(1.0), timeout=10)  # the signature is known from now on
    fake.delay = 0.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await gw.stub.Predict(hp2(2.0), timeout=10)
    assert loop.time() - started < WINDOW.max_delay  # it did not wait for the 50 ms window
    assert list(answer.outputs["y"].floats) == [4.0]
    assert str(caplog.records[-1].msg).endswith(" batch=1")


async def test_without_a_batching_table_nothing_changes(
    fake: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway(fake.target)
    await gather(gw, [hp2(1.0), hp2(2.0), hp2(3.0)])
    assert fake.calls["Predict"] == 3
    assert all("batch" not in str(r.msg) for r in caplog.records if r.name == "tfgate.access")
    assert "tfgate_batch_size_count{" not in exposition(gw)


async def test_rest_and_grpc_calls_share_a_batch(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, fake.target, batching=BATCHED)
    body = orjson.dumps({"instances": [4.0, 6.0]})
    v1 = orjson.dumps({"inputs": {"x": {"floats": [8.0]}}})
    async with busy(gw, fake):
        rest, mine, grpc_answers = await asyncio.gather(
            call(gw, "POST", "/v1/models/half_plus_two:predict", body),
            call(gw, "POST", "/tfgate/v1/models/half_plus_two:predict", v1),
            gather(gw, [hp2(1.0), hp2(2.0, 3.0)]),
        )
    assert fake.calls["Predict"] == 1 + 1
    assert orjson.loads(rest.body) == {"predictions": [5.0, 6.0]}
    assert orjson.loads(mine.body)["outputs"]["y"]["floats"] == [7.0]
    assert [list(a.outputs["y"].floats) for a in grpc_answers] == [[3.5], [4.0, 4.5]]


async def test_mixed_versions_and_shapes_are_never_merged(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await batched(start_gateway, fake)
    image = T(floats=[1.0] * 4, shape=[1, 2, 2])
    wide = T(floats=[1.0] * 8, shape=[1, 2, 4])  # other trailing dimensions
    calls = [
        hp2(1.0, version=1),
        hp2(1.0, version=2),
        hp2(1.0, version_label="stable"),  # resolves to version 1: the same batch
        inference_pb2.PredictRequest(model="shapes", inputs={"image": image}),
        inference_pb2.PredictRequest(model="shapes", inputs={"image": wide}),
    ]
    async with busy(gw, fake):
        answers = await gather(gw, calls)
    assert [list(a.outputs["y"].floats) for a in answers[:3]] == [[2.5], [3.5], [2.5]]
    assert list(answers[3].outputs["total"].floats) == [4.0]
    # The wide image is refused by tfgate (the signature's [-1, 2, 2]), before any batch.
    assert isinstance(answers[4], grpc.aio.AioRpcError)
    assert answers[4].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.calls["Predict"] == 1 + 3  # the held call; version 1 (two calls), 2, shapes


async def test_tf_servings_error_reaches_every_member(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await batched(start_gateway, fake)
    await gw.stub.Predict(hp2(0.0), timeout=10)  # the signature is known: one call from now on
    async with busy(gw, fake):
        fake.fail_next(grpc.StatusCode.INVALID_ARGUMENT, message="bad row somewhere")
        answers = await gather(gw, [hp2(float(i)) for i in range(5)])
    assert fake.calls["Predict"] == 3
    for answer in answers:
        assert isinstance(answer, grpc.aio.AioRpcError)
        assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad row somewhere" in (answer.details() or "")
    assert len({id(a) for a in answers}) == 5


async def test_a_model_that_reduces_over_the_batch_is_marked_unbatchable(
    fake: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await batched(start_gateway, fake)
    calls = [
        inference_pb2.PredictRequest(model="reducer", inputs={"x": T(floats=[float(i)])})
        for i in range(4)
    ]
    async with busy(gw, fake, "reducer"):
        answers = await gather(gw, calls)
    for answer in answers:
        assert isinstance(answer, grpc.aio.AioRpcError)
        assert answer.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "output 'total'" in (answer.details() or "")
    assert 'tfgate_batching_unbatchable{model="reducer"} 1.0' in exposition(gw)
    warned = [r for r in caplog.records if r.name == "tfgate.batcher"]
    assert warned and "'reducer' is not batchable" in warned[0].getMessage()
    # From now on its calls go one by one, and each gets the model's own answer.
    async with busy(gw, fake, "reducer"):
        again = await gather(gw, calls)
    assert [list(a.outputs["total"].floats) for a in again] == [[0.0], [1.0], [2.0], [3.0]]
    assert fake.calls["Predict"] == 1 + 1 + 1 + 4  # held, the batch, held, one by one


async def test_the_cache_answers_repeats_before_they_reach_a_batch(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    caches = {"half_plus_two": CacheConfig(ttl=60.0, max_bytes=1 << 20)}
    gw = await batched(start_gateway, fake, caches=caches)
    async with busy(gw, fake):
        answers = await gather(gw, [hp2(1.0)] * 5 + [hp2(2.0)] * 3)
    assert [list(a.outputs["y"].floats) for a in answers] == [[3.5]] * 5 + [[4.0]] * 3
    assert fake.calls["Predict"] == 1 + 1  # the held call; two distinct inputs, one batch
    assert 'tfgate_batch_size_sum{model="half_plus_two"} 3.0' in exposition(gw)
    await gw.stub.Predict(hp2(2.0), timeout=10)
    assert fake.calls["Predict"] == 2  # a hit, no batch


async def test_a_caller_gone_leaves_the_others_their_answers(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await batched(start_gateway, fake)
    async with busy(gw, fake):
        leaving = asyncio.ensure_future(gw.stub.Predict(hp2(9.0), timeout=10))
        staying = asyncio.ensure_future(gather(gw, [hp2(1.0), hp2(2.0)]))
        await asyncio.sleep(0.01)  # inside the 50 ms window
        leaving.cancel()
        answers = await staying
    assert [list(a.outputs["y"].floats) for a in answers] == [[3.5], [4.0]]
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_retry_retries_the_whole_batch(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await batched(start_gateway, fake)
    async with busy(gw, fake):
        fake.fail_next(grpc.StatusCode.UNAVAILABLE, message="restarting")
        answers = await gather(gw, [hp2(float(i)) for i in range(4)])
    assert [list(a.outputs["y"].floats) for a in answers] == [[3.0], [3.5], [4.0], [4.5]]
    assert fake.calls["Predict"] == 1 + 2  # the held call; the batch, then the batch again


async def test_a_batch_takes_one_slot_of_the_concurrency_cap(
    fake: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await batched(start_gateway, fake, max_concurrency=1)
    async with busy(gw, fake):  # holds the one slot
        answers = await gather(gw, [hp2(float(i)) for i in range(5)])
    assert [list(a.outputs["y"].floats) for a in answers] == [[3.0], [3.5], [4.0], [4.5], [5.0]]
    assert fake.calls["Predict"] == 1 + 1 and fake.max_in_flight == 1
