"""The response cache end to end: tfgate with [models.NAME.cache] before the fake TF Serving."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import orjson
import pytest

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing, Version, half_plus
from tests.http_client import call, start_http
from tfgate.cache import CacheConfig
from tfgate.logs import JsonFormatter
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

T = inference_pb2.Tensor
CACHED = {"half_plus_two": CacheConfig(ttl=60.0, max_bytes=1 << 20)}


def hp2(x: T | None = None, **fields: Any) -> inference_pb2.PredictRequest:
    given = T(floats=[1.0, 2.0, 5.0]) if x is None else x
    return inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": given}, **fields)


def predicts(backend: FakeTFServing) -> int:
    return backend.calls["Predict"]


async def cached(start_gateway: StartGateway, backend: FakeTFServing, **kw: Any) -> Running:
    return await start_gateway(backend.target, caches=CACHED, **kw)


@pytest.fixture(autouse=True)
def _access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tfgate.access"]


async def test_a_repeated_predict_is_answered_from_the_cache(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await cached(start_gateway, backend)
    first = await gw.stub.Predict(hp2(), timeout=5)
    second = await gw.stub.Predict(hp2(), timeout=5)
    assert second == first and list(first.outputs["y"].floats) == [3.5, 4.0, 5.5]
    assert predicts(backend) == 1
    lines = [str(r.msg) for r in access(caplog)]
    assert lines[-2].endswith(" cache=miss") and lines[-1].endswith(" cache=hit")
    fields = [orjson.loads(JsonFormatter().format(r)) for r in access(caplog)[-2:]]
    assert [f["cache"] for f in fields] == ["miss", "hit"]
    assert fields[0]["attempts"] >= 1 and fields[1]["attempts"] == 0  # a hit sends nothing
    exposition = gw.gateway.metrics.exposition().decode()  # type: ignore[attr-defined]
    assert 'tfgate_cache_hits_total{model="half_plus_two"} 1.0' in exposition
    assert 'tfgate_cache_misses_total{model="half_plus_two"} 1.0' in exposition
    assert 'tfgate_cache_bytes{model="half_plus_two"}' in exposition


async def test_without_a_cache_table_nothing_changes(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    await gw.stub.Predict(hp2(), timeout=5)
    await gw.stub.Predict(hp2(), timeout=5)
    assert predicts(backend) == 2
    assert all("cache" not in str(r.msg) for r in access(caplog))
    fields = orjson.loads(JsonFormatter().format(access(caplog)[-1]))
    assert "cache" not in fields
    assert "tfgate_cache_hits_total{" not in gw.gateway.metrics.exposition().decode()  # type: ignore[attr-defined]


async def test_floats_doubles_and_fronts_share_one_entry(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target, caches=CACHED)
    await gw.stub.Predict(hp2(), timeout=5)
    await gw.stub.Predict(hp2(T(doubles=[1.0, 2.0, 5.0])), timeout=5)
    body = orjson.dumps({"inputs": {"x": {"floats": [1.0, 2.0, 5.0]}}})
    v1 = await call(gw, "POST", "/tfgate/v1/models/half_plus_two:predict", body)
    rest = await call(gw, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1, 2, 5]}')
    assert (v1.status, rest.status) == (200, 200)
    assert rest.json() == {"predictions": [3.5, 4.0, 5.5]}
    assert predicts(backend) == 1
    await gw.stub.Predict(hp2(T(floats=[1.0, 2.0, 6.0])), timeout=5)
    assert predicts(backend) == 2


async def test_a_label_a_number_and_the_latest_naming_one_version_share_entries(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend)
    canary = await gw.stub.Predict(hp2(version_label="canary"), timeout=5)  # version 2
    assert await gw.stub.Predict(hp2(version=2), timeout=5) == canary
    assert await gw.stub.Predict(hp2(), timeout=5) == canary
    assert predicts(backend) == 1
    stable = await gw.stub.Predict(hp2(version_label="stable"), timeout=5)  # version 1
    assert list(stable.outputs["y"].floats) == [2.5, 3.0, 4.5]
    assert predicts(backend) == 2


async def test_a_new_version_never_reuses_an_old_answer(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend, metadata_ttl=0.2)
    old = await gw.stub.Predict(hp2(), timeout=5)
    assert old.version == 2
    backend.models["half_plus_two"].versions[3] = Version({"serving_default": half_plus(10.0)})
    await asyncio.sleep(0.3)  # the catalog reads what the latest version is again
    new = await gw.stub.Predict(hp2(), timeout=5)
    assert new.version == 3 and list(new.outputs["y"].floats) == [10.5, 11.0, 12.5]
    assert await gw.stub.Predict(hp2(), timeout=5) == new
    assert predicts(backend) == 2


async def test_an_answer_from_a_version_the_catalog_did_not_expect_is_not_kept(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend)
    await gw.stub.Predict(hp2(T(floats=[0.0])), timeout=5)  # the catalog: latest is 2
    backend.models["half_plus_two"].versions[3] = Version({"serving_default": half_plus(10.0)})
    first = await gw.stub.Predict(hp2(), timeout=5)  # asked as 2's, answered by 3
    assert first.version == 3
    again = await gw.stub.Predict(hp2(), timeout=5)  # the catalog learnt 3: a miss, kept
    assert again.version == 3
    await gw.stub.Predict(hp2(), timeout=5)
    assert predicts(backend) == 3


async def test_100_identical_concurrent_calls_make_one_backend_call(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend)
    await gw.stub.Predict(hp2(T(floats=[0.0])), timeout=5)  # the signatures read first
    backend.delay = 0.2
    answers = await asyncio.gather(*(gw.stub.Predict(hp2(), timeout=10) for _ in range(100)))
    assert predicts(backend) == 2
    assert all(a == answers[0] for a in answers)


async def test_a_failure_reaches_every_concurrent_caller(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend)
    await gw.stub.Predict(hp2(T(floats=[0.0])), timeout=5)
    backend.delay = 0.2
    backend.answer_next("Predict", b"")  # after the delay: an answer without outputs
    outcomes = await asyncio.gather(
        *(gw.stub.Predict(hp2(), timeout=10) for _ in range(10)), return_exceptions=True
    )
    assert predicts(backend) == 2
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes)
    errors = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert {e.code() for e in errors} == {grpc.StatusCode.INTERNAL}
    assert all("answer has no outputs" in (e.details() or "") for e in errors)
    ok = await gw.stub.Predict(hp2(), timeout=10)  # the failure was not kept
    assert list(ok.outputs["y"].floats) == [3.5, 4.0, 5.5] and predicts(backend) == 3


async def test_a_caller_who_leaves_does_not_cancel_the_others_call(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await cached(start_gateway, backend)
    await gw.stub.Predict(hp2(T(floats=[0.0])), timeout=5)
    backend.delay = 0.3
    leaving = gw.stub.Predict(hp2(), timeout=10)
    staying = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=10))
    await asyncio.sleep(0.1)
    leaving.cancel()
    answer = await staying
    assert list(answer.outputs["y"].floats) == [3.5, 4.0, 5.5]
    assert predicts(backend) == 2 and backend.cancelled == 0


async def test_no_cache_on_grpc_skips_the_look_up_and_refreshes(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await cached(start_gateway, backend)
    await gw.stub.Predict(hp2(), timeout=5)
    await gw.stub.Predict(hp2(), timeout=5, metadata=(("cache-control", "no-cache"),))
    assert predicts(backend) == 2
    assert str(access(caplog)[-1].msg).endswith(" cache=bypass")
    await gw.stub.Predict(hp2(), timeout=5)
    assert predicts(backend) == 2


async def test_no_cache_on_http_skips_the_look_up(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target, caches=CACHED)
    path, body = "/v1/models/half_plus_two:predict", '{"instances": [1, 2, 5]}'
    for headers in (None, None, {"Cache-Control": "no-cache"}, None):
        answer = await call(gw, "POST", path, body, headers)
        assert answer.status == 200
    assert predicts(backend) == 2
