"""Rate limits shared through Redis: a real redis-server (Debian's), started per test on a unix
socket and ended by its PID; two gateways share one limit, and a Redis that goes away, or stops
answering, fails no call."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call
from tests.test_limits_e2e import key, policy
from tests.test_passthrough import tf_predict
from tfgate.errors import RateLimited
from tfgate.policy.limits import RateLimits
from tfgate.policy.limits_config import ClientLimits, LimitsConfig, Rate
from tfgate.policy.limits_redis import SharedLimits, where
from tfgate.tfs.tensorflow_serving.apis import prediction_service_pb2_grpc


class Redis:
    """One redis-server on a unix socket, no persistence."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tfgate-redis-"))  # a socket path is short
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            done = subprocess.run(
                ["redis-cli", "-s", str(self.socket), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.025)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.socket.unlink(missing_ok=True)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)


@pytest_asyncio.fixture
async def redis_server() -> AsyncIterator[Redis]:
    server = Redis()
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.signal(signal.SIGCONT)  # a test may have stopped it
    server.kill()
    shutil.rmtree(server.dir, ignore_errors=True)


def sharing(limits: SharedLimits) -> bool:
    """Whether Redis answered ``limits`` last (read anew each time, as it changes)."""
    return limits.shared


def local(config: LimitsConfig) -> RateLimits:
    return RateLimits(config, ["a", "b"])


async def passes(limits: SharedLimits, client: str, count: int) -> int:
    ok = 0
    for _ in range(count):
        try:
            await limits.check(client, "half_plus_two")
            ok += 1
        except RateLimited:
            pass
    return ok


@pytest.mark.asyncio
async def test_buckets_in_redis(redis_server: Redis) -> None:
    config = LimitsConfig(rate=Rate(1000, 1000), clients={"a": ClientLimits(Rate(2, 3))})
    one = SharedLimits(redis_server.url, 0.5, local(config))
    two = SharedLimits(redis_server.url, 0.5, local(config))  # another replica
    try:
        assert await passes(one, "a", 2) == 2
        assert await passes(two, "a", 5) == 1  # the same bucket: one token left of 3
        with pytest.raises(RateLimited) as refused:
            await one.check("a", "half_plus_two")
        assert refused.value.message.startswith('rate limit for client "a" of 2/s (burst 3)')
        assert 0.3 < (refused.value.retry_after or 0) <= 0.5  # 1/2 s per token, less elapsed
        await asyncio.sleep(0.5)
        assert await passes(two, "a", 3) == 1  # refilled at 2/s
        assert await passes(one, "b", 5) == 5  # b has no limit of its own
        assert one.shared and two.shared
    finally:
        await one.close()
        await two.close()


@pytest.mark.asyncio
async def test_the_limit_holds_across_two_gateways(
    redis_server: Redis, backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path
) -> None:
    limits = LimitsConfig(clients={"a": ClientLimits(Rate(5, 20))}, redis=redis_server.url)
    gateways = [
        await start_gateway(backend.target, policy=policy(tmp_path), limits=limits)
        for _ in range(2)
    ]

    async def a_call(gw: Running) -> bool:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
        try:
            await stub.Predict(tf_predict(), metadata=key("a"), timeout=10)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            return False
        return True

    start = time.monotonic()
    outcomes = await asyncio.gather(*(a_call(gw) for gw in gateways for _ in range(30)))
    elapsed = time.monotonic() - start
    # Each gateway alone would let 20 through: together, still 20 (and what refilled).
    assert 20 <= sum(outcomes) <= 20 + 5 * elapsed + 1, (sum(outcomes), elapsed)
    assert all(any(outcomes[i * 30 : (i + 1) * 30]) for i in range(2))  # both served some


@pytest.mark.asyncio
async def test_a_redis_that_goes_away_fails_no_call(
    redis_server: Redis,
    backend: FakeTFServing,
    start_gateway: StartGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "tfgate.policy.limits_redis")
    limits = LimitsConfig(
        clients={"a": ClientLimits(Rate(200, 400))}, redis=redis_server.url, redis_timeout=0.05
    )
    gw = await start_gateway(
        backend.target, policy=policy(tmp_path), limits=limits, http_listen="127.0.0.1:0"
    )
    shared = gw.gateway.inference.gate.shared
    assert shared is not None
    stub = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    codes: list[grpc.StatusCode] = []
    latencies: list[float] = []

    async def caller() -> None:
        for _ in range(60):
            start = time.monotonic()
            try:
                await stub.Predict(tf_predict(), metadata=key("a"), timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
            latencies.append(time.monotonic() - start)
            await asyncio.sleep(0.01)

    callers = asyncio.gather(*(caller() for _ in range(4)))
    await asyncio.sleep(0.2)
    assert sharing(shared)
    assert (await call(gw, "GET", "/readyz")).json() == {"status": "ready", "rate_limits": "shared"}
    redis_server.signal(signal.SIGSTOP)  # answers nothing: each try waits out the timeout
    await asyncio.sleep(0.3)
    assert not sharing(shared)
    assert (await call(gw, "GET", "/readyz")).json() == {"status": "ready", "rate_limits": "local"}
    redis_server.signal(signal.SIGCONT)
    redis_server.kill()  # gone: connections refused
    await asyncio.sleep(0.3)
    redis_server.start()  # back, on the same socket
    await callers
    assert len(codes) == 240
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
    assert codes.count(grpc.StatusCode.OK) >= 200
    assert max(latencies) < 1.0  # a silent Redis costs a call at most its timeout
    # Back: the next calls (at most a second later) are counted in Redis again.
    for _ in range(30):
        if sharing(shared):
            break
        await stub.Predict(tf_predict(), metadata=key("a"), timeout=10)
        await asyncio.sleep(0.1)
    assert sharing(shared)
    messages = [r.getMessage() for r in caplog.records if r.name == "tfgate.policy.limits_redis"]
    lost = [m for m in messages if "does not answer" in m]
    back = [m for m in messages if "answers again" in m]
    assert len(lost) == 1 and len(back) == 1, messages  # once each way
    assert where(redis_server.url) in lost[0]


def test_a_logged_url_holds_no_password() -> None:
    assert where("redis://user:s3cret@cache.internal:6380/0") == "redis://cache.internal:6380"
    assert where("rediss://:s3cret@cache") == "rediss://cache"
    assert where("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock"
