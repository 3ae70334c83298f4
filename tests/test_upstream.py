"""Retries, the concurrency cap, deadlines and cancellation, against the fake TF Serving."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.test_gateway import expect_error, hp2

pytestmark = pytest.mark.asyncio


async def warm(gw: Running) -> None:
    """One call, so the signature is cached and later counts are Predict's alone."""
    await gw.stub.Predict(hp2())


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
async def test_transient_codes_are_retried_until_they_recover(
    gw: Running, backend: FakeTFServing, code: grpc.StatusCode
) -> None:
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(code, 2)
    answer = await gw.stub.Predict(hp2(), timeout=5)
    assert answer.version == 2
    assert backend.calls["Predict"] == 3


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INTERNAL,
    ],
)
async def test_other_codes_are_not_retried(gw: Running, backend: FakeTFServing, code) -> None:
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(code, 1, "injected failure")
    await expect_error(gw.stub.Predict(hp2(), timeout=5), code, "injected failure")
    assert backend.calls["Predict"] == 1


async def test_retries_stop_after_max_attempts(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    gw = await start_gateway(backend.target, retry={"max_attempts": 3})
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 10, "still down")
    await expect_error(gw.stub.Predict(hp2(), timeout=5), grpc.StatusCode.UNAVAILABLE, "still down")
    assert backend.calls["Predict"] == 3


async def test_retries_never_outlive_the_deadline(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    gw = await start_gateway(
        backend.target, retry={"max_attempts": 100, "initial_backoff": 0.1, "max_backoff": 0.1}
    )
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 100)
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.Predict(hp2(), timeout=0.5)
    elapsed = time.monotonic() - start
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert elapsed < 1.0
    calls = backend.calls["Predict"]
    await asyncio.sleep(0.5)
    assert backend.calls["Predict"] == calls  # nothing retried after the caller left
    assert calls < 100


async def test_dead_backend_is_unavailable(start_gateway: StartGateway) -> None:
    gw = await start_gateway("127.0.0.1:1", retry={"max_attempts": 2})
    await expect_error(gw.stub.Predict(hp2(), timeout=5), grpc.StatusCode.UNAVAILABLE)


async def test_concurrency_cap_holds_under_40_calls(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    gw = await start_gateway(backend.target, max_concurrency=4)
    await warm(gw)
    backend.delay = 0.05
    answers = await asyncio.gather(*(gw.stub.Predict(hp2(), timeout=10) for _ in range(40)))
    assert all(a.version == 2 for a in answers)
    assert backend.max_in_flight == 4


async def test_waiting_for_a_slot_respects_the_deadline(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    gw = await start_gateway(backend.target, max_concurrency=1)
    await warm(gw)
    backend.delay = 1.0
    slow = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=5))
    await asyncio.sleep(0.1)
    await expect_error(gw.stub.Predict(hp2(), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert (await slow).version == 2


async def test_client_deadline_ends_and_cancels_the_backend_call(
    gw: Running, backend: FakeTFServing
) -> None:
    await warm(gw)
    backend.delay = 5.0
    start = time.monotonic()
    await expect_error(gw.stub.Predict(hp2(), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - start < 1.0
    for _ in range(50):
        if backend.cancelled:
            break
        await asyncio.sleep(0.02)
    assert backend.cancelled == 1
    assert backend.in_flight == 0


async def test_client_cancellation_cancels_the_backend_call(
    gw: Running, backend: FakeTFServing
) -> None:
    await warm(gw)
    backend.delay = 5.0
    call = gw.stub.Predict(hp2(), timeout=10)
    await asyncio.sleep(0.2)
    assert backend.in_flight == 1
    call.cancel()
    for _ in range(50):
        if backend.cancelled:
            break
        await asyncio.sleep(0.02)
    assert backend.cancelled == 1


async def test_health_follows_the_backend(start_gateway: StartGateway) -> None:
    from grpc_health.v1 import health_pb2

    fake = FakeTFServing()
    port = await fake.start()
    gw = await start_gateway(fake.target, health_interval=0.1)
    check = gw.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )

    async def status(service: str = "") -> int:
        return (await check(health_pb2.HealthCheckRequest(service=service))).status

    async def wait_for(wanted: int) -> None:
        for _ in range(60):
            if await status() == wanted:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"health never became {wanted}")

    await wait_for(health_pb2.HealthCheckResponse.SERVING)
    assert await status("tfgate.v1.InferenceService") == health_pb2.HealthCheckResponse.SERVING
    await fake.stop()
    await wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
    fake = FakeTFServing()
    await fake.start(port)
    await wait_for(health_pb2.HealthCheckResponse.SERVING)
    await fake.stop()


async def test_health_per_model(start_gateway: StartGateway, backend: FakeTFServing) -> None:
    from grpc_health.v1 import health_pb2

    gw = await start_gateway(
        backend.target, health_interval=0.1, health_models=("half_plus_two", "nope")
    )
    check = gw.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )

    async def status(service: str) -> int | None:
        try:
            return (await check(health_pb2.HealthCheckRequest(service=service))).status
        except grpc.aio.AioRpcError:
            return None  # not reported yet

    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for _ in range(60):
        if await status("model:half_plus_two") == serving:
            break
        await asyncio.sleep(0.05)
    assert await status("model:half_plus_two") == serving
    assert await status("model:nope") == not_serving
    # Its only versions gone: the model turns NOT_SERVING while tfgate itself stays SERVING.
    backend.models["half_plus_two"].versions.clear()
    for _ in range(60):
        if await status("model:half_plus_two") == not_serving:
            break
        await asyncio.sleep(0.05)
    assert await status("model:half_plus_two") == not_serving
    assert await status("") == serving


async def test_limits_on_what_a_client_can_send(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    from tfgate.v1 import inference_pb2

    gw = await start_gateway(backend.target, max_message_bytes=64 * 1024, max_tensor_elements=1000)
    big = inference_pb2.PredictRequest(
        model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0] * 50_000)}
    )
    await expect_error(gw.stub.Predict(big, timeout=5), grpc.StatusCode.RESOURCE_EXHAUSTED)
    many = inference_pb2.PredictRequest(
        model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0] * 2000)}
    )
    await expect_error(
        gw.stub.Predict(many, timeout=5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "2000 values in all, more than tfgate's max_tensor_elements (1000)",
    )
    assert backend.calls["Predict"] == 0
    assert (await gw.stub.Predict(hp2(), timeout=5)).version == 2  # and it keeps serving


async def test_healthcheck_command_reads_the_gateways_status(
    gw: Running, start_gateway: StartGateway
) -> None:
    from grpc_health.v1 import health_pb2

    from tfgate import cli
    from tfgate.healthcheck import health_status

    serving = health_pb2.HealthCheckResponse.SERVING
    for _ in range(60):
        if await asyncio.to_thread(health_status, gw.target, 1.0) == serving:
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(health_status, gw.target, 1.0) == serving
    healthcheck = ["healthcheck", "--target", gw.target, "--timeout", "1"]
    assert await asyncio.to_thread(cli.main, healthcheck) == 0
    # Nothing listening: no status, and the command fails.
    dead = await start_gateway("127.0.0.1:1")
    target = dead.target
    await dead.gateway.stop(grace=0)
    assert await asyncio.to_thread(health_status, target, 0.5) is None
    assert await asyncio.to_thread(cli.main, ["healthcheck", "--target", target]) == 1
