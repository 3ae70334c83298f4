"""tfgate.metrics: bounded labels, and the counters after real calls through every front."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import socket
import string
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call
from tests.log_secrets import remember
from tests.test_gateway import hp2
from tests.test_passthrough import tf_predict
from tfgate.app import ListenError
from tfgate.calls import Call, Record
from tfgate.errors import Code, RateLimited, Unauthenticated
from tfgate.metrics import OTHER, UNKNOWN, Exported
from tfgate.policy.config import ClientRights, PolicyConfig
from tfgate.tfs.tensorflow_serving.apis import prediction_service_pb2_grpc
from tfgate.v1 import inference_pb2

Labels = frozenset[tuple[str, str]]


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


def series(found: dict[tuple[str, Labels], float], name: str) -> int:
    return sum(1 for n, _ in found if n == name)


async def scrape(gw: Running, port: int | None = None) -> dict[tuple[str, Labels], float]:
    url_port = gw.gateway.http_port if port is None else port
    answer = await call_port(url_port, "/metrics")
    assert answer[0] == 200
    return samples(answer[1])


async def call_port(port: int, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text(), response.headers.get("Content-Type", "")


async def eventually(holds: Callable[[], bool]) -> None:
    """Returns once ``holds()`` (the health watcher probes every 0.2 s here), within 5 s."""
    async with asyncio.timeout(5):
        while not holds():  # noqa: ASYNC110 - the state is the gateway's, with no event to wait on
            await asyncio.sleep(0.05)


def record(metrics: Exported, model: str, code: Code, method: str = "Predict") -> Record:
    done = Record(Call("grpc", method, time.monotonic() + 5), metrics)
    done.model = model
    if code is Code.OK:
        done.version = 3
    done.done_with(code)
    return done


def test_random_model_names_create_one_series() -> None:
    metrics = Exported()
    record(metrics, "half_plus_two", Code.OK)
    rng = random.Random(7)
    for _ in range(10_000):
        name = "".join(rng.choices(string.ascii_letters, k=12))
        record(metrics, name, Code.NOT_FOUND)
    found = samples(metrics.exposition().decode())
    # One series for the model TF Serving answered for, one for every name it did not know.
    assert series(found, "tfgate_calls_total") == 2
    assert value(found, "tfgate_calls_total", model=UNKNOWN, code="NOT_FOUND") == 10_000
    assert value(found, "tfgate_calls_total", model="half_plus_two", version="3", code="OK") == 1
    assert series(found, "tfgate_call_duration_seconds_count") == 2
    assert len(metrics._bound) == 2  # the cache of bound children is bounded too


def test_a_model_is_named_once_tf_serving_answered_for_it() -> None:
    metrics = Exported()
    record(metrics, "late", Code.INVALID_ARGUMENT)
    record(metrics, "late", Code.OK)
    record(metrics, "late", Code.INVALID_ARGUMENT)
    metrics.knows("read")  # its metadata was read: known before any call succeeds
    record(metrics, "read", Code.NOT_FOUND)
    found = samples(metrics.exposition().decode())
    assert value(found, "tfgate_calls_total", model=UNKNOWN, code="INVALID_ARGUMENT") == 1
    # A failure names no version: only TF Serving's answer does.
    assert (
        value(found, "tfgate_calls_total", model="late", code="INVALID_ARGUMENT", version="") == 1
    )
    assert value(found, "tfgate_calls_total", model="late", code="OK", version="3") == 1
    assert value(found, "tfgate_calls_total", model="read", code="NOT_FOUND") == 1


def test_methods_and_clients_outside_the_config_share_one_label() -> None:
    metrics = Exported(clients=["alpha"])
    for index in range(50):
        record(metrics, "-", Code.NOT_FOUND, method=f"GET /nowhere/{index}")
        other = Call("http", "Predict", time.monotonic() + 5, client=f"jwt-subject-{index}")
        metrics.refused(RateLimited("slow down", 1.0), other)
    alpha = Call("http", "Predict", time.monotonic() + 5, client="alpha")
    metrics.refused(RateLimited("slow down", 1.0), alpha)
    metrics.refused(Unauthenticated("expired"), alpha)
    found = samples(metrics.exposition().decode())
    assert series(found, "tfgate_calls_total") == 1
    assert value(found, "tfgate_calls_total", method=OTHER, model="") == 50
    assert value(found, "tfgate_rate_limited_total", client=OTHER) == 50
    assert value(found, "tfgate_rate_limited_total", client="alpha") == 1
    assert series(found, "tfgate_rate_limited_total") == 2
    assert value(found, "tfgate_auth_failures_total", reason="expired") == 1
    assert value(found, "tfgate_auth_failures_total", reason="missing") == 0


@pytest.mark.asyncio
async def test_every_front_counts_its_calls(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0")
    await gw.stub.Predict(hp2(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.Predict(inference_pb2.PredictRequest(model="nope"), timeout=5)
    forwarded = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    await forwarded.Predict(tf_predict(version=1), timeout=5)
    body = '{"inputs": {"x": {"floats": [1, 2, 5]}}}'
    answer = await call(gw, "POST", "/tfgate/v1/models/half_plus_two:predict", body)
    assert answer.status == 200
    answer = await call(gw, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1.0]}')
    assert answer.status == 200
    assert (await call(gw, "GET", "/v1/models/nope")).status == 404
    found = await scrape(gw)
    calls = "tfgate_calls_total"
    ok = {"model": "half_plus_two", "code": "OK"}
    assert value(found, calls, front="grpc", method="Predict", version="2", **ok) == 1
    assert value(found, calls, front="grpc", method="Predict", model=UNKNOWN) == 1
    path = "/tensorflow.serving.PredictionService/Predict"
    # Forwarded as bytes: TF Serving's answer is not read, so it names no version.
    assert value(found, calls, front="tfs-grpc", method=path, version="", **ok) == 1
    assert value(found, calls, front="http", method="Predict", version="2", **ok) == 1
    assert value(found, calls, front="tfs-http", method="Predict", version="2", **ok) == 1
    assert value(found, calls, front="tfs-http", method="GetModelStatus", model=UNKNOWN) == 1
    assert value(found, calls) == 6  # the scrape itself is not a call
    count = "tfgate_call_duration_seconds_count"
    assert value(found, count, front="grpc", model="half_plus_two") == 1
    replica = backend.target
    # Every backend call was an attempt: metadata once, four Predicts, the failed metadata
    # read for "nope" and the status of "nope".
    assert value(found, "tfgate_backend_attempts_total", replica=replica, code="OK") == 5
    assert value(found, "tfgate_backend_attempts_total", replica=replica, code="NOT_FOUND") == 2
    # Preprocessed: every Predict through the core (not the one forwarded as bytes).
    assert value(found, "tfgate_preprocess_duration_seconds_count", model="half_plus_two") == 3
    assert value(found, "tfgate_backend_up", replica=replica) == 1
    assert value(found, "process_cpu_seconds_total") > 0


@pytest.mark.asyncio
async def test_retries_shedding_and_the_budget_are_counted(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        backend.target,
        http_listen="127.0.0.1:0",
        retry={"budget_ratio": 0.0, "budget_min_per_second": 0.1},  # one retry per 10 s
    )
    await gw.stub.Predict(hp2(), timeout=5)  # metadata read: the failures below hit Predict
    backend.fail_next(grpc.StatusCode.UNAVAILABLE)
    await gw.stub.Predict(hp2(), timeout=5)  # retried once, within the budget
    backend.fail_next(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.Predict(hp2(), timeout=5)  # the budget is spent
    found = await scrape(gw)
    assert value(found, "tfgate_retries_total") == 1
    assert value(found, "tfgate_retry_budget_refusals_total") == 1
    assert value(found, "tfgate_backend_attempts_total", code="UNAVAILABLE") == 2
    assert value(found, "tfgate_calls_total", code="UNAVAILABLE", model=UNKNOWN) == 0
    assert value(found, "tfgate_calls_total", code="UNAVAILABLE", model="half_plus_two") == 1


@pytest.mark.asyncio
async def test_calls_shed_are_counted(backend: FakeTFServing, start_gateway: StartGateway) -> None:
    gw = await start_gateway(
        backend.target, http_listen="127.0.0.1:0", max_concurrency=1, max_queue=0
    )
    await gw.stub.Predict(hp2(), timeout=5)
    gw.gateway.upstream.limiter.in_flight = 1  # the one slot is taken
    try:
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await gw.stub.Predict(hp2(), timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        found = await scrape(gw)
    finally:
        gw.gateway.upstream.limiter.in_flight = 0
    assert value(found, "tfgate_shed_total") == 3
    assert value(found, "tfgate_backend_in_flight") == 1
    assert value(found, "tfgate_calls_total", code="RESOURCE_EXHAUSTED") == 3


@pytest.mark.asyncio
async def test_health_models_are_reported(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        backend.target, http_listen="127.0.0.1:0", health_models=("half_plus_two", "absent")
    )
    await eventually(lambda: len(gw.gateway.models_available) == 2)
    found = await scrape(gw)
    assert value(found, "tfgate_model_available", model="half_plus_two") == 1
    assert value(found, "tfgate_model_available", model="absent") == 0


KEY = remember(secrets.token_urlsafe(24))


@pytest.mark.asyncio
async def test_auth_failures_are_counted_and_metrics_need_no_key(
    backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys.alpha]\nsha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\n')
    policy = PolicyConfig(True, str(keys), clients={"alpha": ClientRights(("half_*",))})
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0", policy=policy)
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.Predict(hp2(), timeout=5)
    answer = await call(
        gw, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1.0]}',
        {"Authorization": "Bearer not-a-key"},
    )  # fmt: skip
    assert answer.status == 401
    await gw.stub.Predict(hp2(), metadata=(("x-api-key", KEY),), timeout=5)
    found = await scrape(gw)  # no credentials, like the probes
    assert value(found, "tfgate_auth_failures_total", reason="missing") == 1
    assert value(found, "tfgate_auth_failures_total", reason="invalid") == 1
    assert value(found, "tfgate_calls_total", code="UNAUTHENTICATED") == 2


@pytest.mark.asyncio
async def test_admin_listen_takes_metrics_off_the_public_port(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    await gw.stub.Predict(hp2(), timeout=5)
    status, text, content_type = await call_port(gw.gateway.admin_port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert value(samples(text), "tfgate_calls_total", code="OK") == 1
    assert (await call_port(gw.gateway.http_port, "/metrics"))[0] == 404
    assert (await call_port(gw.gateway.admin_port, "/v1/models/half_plus_two"))[0] == 404


@pytest.mark.asyncio
async def test_metrics_false_serves_and_counts_nothing(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0", metrics=False)
    await gw.stub.Predict(hp2(), timeout=5)
    assert not gw.gateway.metrics.enabled
    assert (await call_port(gw.gateway.http_port, "/metrics"))[0] == 404


@pytest.mark.asyncio
async def test_each_replica_is_reported(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"
    gw = await start_gateway(f"{backend.target},{dead}", http_listen="127.0.0.1:0")
    await eventually(lambda: gw.gateway.backend_up)
    found = await scrape(gw)
    assert value(found, "tfgate_backend_up", replica=backend.target) == 1
    assert value(found, "tfgate_backend_up", replica=dead) == 0


@pytest.mark.asyncio
async def test_a_taken_admin_listen_is_refused_by_name(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ListenError, match=rf"cannot listen on {address} \(admin_listen\)"):
            await start_gateway(backend.target, admin_listen=address)
