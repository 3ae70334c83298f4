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
    gw = await start_gateway("127.0.0.1:1", retry={"max_attempts": 2}, wait_for_backend=0.5)
    await expect_error(
        gw.stub.Predict(hp2(), timeout=5),
        grpc.StatusCode.UNAVAILABLE,
        "TF Serving at 127.0.0.1:1 is down: no connection to it for ",
        "(wait_for_backend=0.5 s)",
    )


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


async def test_a_call_waits_for_a_restarting_backend_without_using_attempts(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    """Attempts that could not reach TF Serving are not attempts: with a single attempt and no
    retry budget at all, a call made while TF Serving is down waits and succeeds once it is up."""
    fake = backend  # stopped by its fixture, whatever happens here
    port = fake.port
    gw = await start_gateway(
        fake.target, retry={"max_attempts": 1, "budget_ratio": 0.0, "budget_min_per_second": 0.0}
    )
    await warm(gw)
    await fake.stop()
    call = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=8))
    await asyncio.sleep(1.0)
    assert not call.done()  # waiting, not failed
    assert gw.gateway.upstream.limiter.in_flight == 1  # and holding its slot
    back = FakeTFServing()
    await back.start(port)
    try:
        assert (await call).version == 2
        assert back.calls["Predict"] == 1
        assert gw.gateway.upstream.budget.refused == 0  # no retry was even asked for
    finally:
        await back.stop()


async def test_a_deadline_shorter_than_the_outage_is_deadline_exceeded(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    from tfgate.calls import Call
    from tfgate.errors import DeadlineExceeded
    from tfgate.tfs.tensorflow_serving.apis import get_model_status_pb2

    fake = backend  # stopped by its fixture, whatever happens here
    gw = await start_gateway(fake.target)
    await warm(gw)
    await fake.stop()
    start = time.monotonic()
    await expect_error(gw.stub.Predict(hp2(), timeout=0.5), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert 0.4 < time.monotonic() - start < 1.0
    # What tfgate answers (the caller's own client usually gives up at the same instant).
    call = Call("grpc", "GetModelStatus", time.monotonic() + 0.3)
    waiting = f"waiting for a connection to TF Serving at {fake.target}"
    with pytest.raises(DeadlineExceeded, match=waiting):
        await gw.gateway.upstream.get_model_status(
            get_model_status_pb2.GetModelStatusRequest(), call
        )


@pytest.mark.parametrize(
    "message",
    [
        "SERVER: Received message larger than max (5242880 vs. 4194304)",
        "OOM when allocating tensor with shape[100000,100000] and type float",
    ],
)
async def test_failures_caused_by_the_request_are_not_retried(
    gw: Running, backend: FakeTFServing, message: str
) -> None:
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, 3, message)
    await expect_error(
        gw.stub.Predict(hp2(), timeout=5), grpc.StatusCode.RESOURCE_EXHAUSTED, message
    )
    assert backend.calls["Predict"] == 1


async def test_an_answer_whose_metadata_is_over_the_limit_is_not_retried(
    gw: Running, backend: FakeTFServing
) -> None:
    """TF Serving's status message quoting a 20 KB name is over grpc's 16 KiB metadata limit:
    grpc turns the answer into RESOURCE_EXHAUSTED, which the same request would only repeat."""
    await warm(gw)
    backend.calls.clear()
    backend.fail_next(grpc.StatusCode.INVALID_ARGUMENT, 3, "unknown input " + "x" * 20_000)
    await expect_error(
        gw.stub.Predict(hp2(), timeout=5),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "metadata size exceeds",
    )
    assert backend.calls["Predict"] == 1


async def test_wait_for_backend_setting(tmp_path) -> None:
    from tfgate import cli, config

    assert config.Config().wait_for_backend == 10.0
    assert config.load({}, {"TFGATE_WAIT_FOR_BACKEND": "2.5"}).wait_for_backend == 2.5
    path = tmp_path / "tfgate.toml"
    path.write_text("wait_for_backend = 4\n")
    assert config.load({}, {}, str(path)).wait_for_backend == 4.0
    assert config.load({"wait_for_backend": 1.5}, {}, str(path)).wait_for_backend == 1.5
    with pytest.raises(config.ConfigError, match=r"wait_for_backend \(from environment\)"):
        config.load({}, {"TFGATE_WAIT_FOR_BACKEND": "soon"})
    with pytest.raises(config.ConfigError, match="wait_for_backend: must be positive, got 0"):
        config.load({}, {"TFGATE_WAIT_FOR_BACKEND": "0"})
    # The flag reaches the same check (and tfgate stops before it serves).
    assert cli.main(["serve", "--listen", "127.0.0.1:0", "--wait-for-backend", "-1"]) == 2


async def test_a_connection_lost_before_the_send_goes_back_to_waiting(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    """A replica seen READY whose connection is gone when the call is sent (here: one that never
    answers, seen READY once) does not hold the call: it goes to the replica that is up, and the
    lost send is no attempt (one attempt allowed, no retry budget)."""
    gw = await start_gateway(
        f"127.0.0.1:1,{backend.target}",
        retry={"max_attempts": 1, "budget_ratio": 0.0, "budget_min_per_second": 0.0},
    )
    upstream = gw.gateway.upstream
    dead, live = upstream.replicas
    assert await live.ready_by(time.monotonic() + 5)
    seen = iter([True])
    dead.ready = lambda: next(seen, False)  # type: ignore[method-assign]
    dead.looks_down = lambda: False  # type: ignore[method-assign]
    upstream._pick = lambda: dead  # type: ignore[method-assign]
    started = time.monotonic()
    answer = await gw.stub.Predict(hp2(), timeout=5)
    assert answer.version == 2
    assert time.monotonic() - started < 2  # not held until the deadline
    assert backend.calls["Predict"] == 1
    assert upstream.budget.refused == 0
