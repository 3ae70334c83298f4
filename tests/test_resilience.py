"""Fault tests: restarts, a lost replica, a dead backend, overload, SIGTERM.

Every load here is bounded in count and time, talks only to 127.0.0.1, and each test ends the
processes it started, by PID. The counts that matter are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.test_gateway import hp2
from tfgate.v1 import inference_pb2_grpc

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent


class Proc:
    """A child process started by a test, ended by PID."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def first_line(self, within: float = 30) -> str:
        assert self.popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.popen.stdout.readline), within)
        return line.strip()

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@pytest_asyncio.fixture
async def procs() -> AsyncIterator[Callable[..., Awaitable[tuple[Proc, int]]]]:
    started: list[Proc] = []

    async def start_fake(port: int = 0, delay: float = 0.0) -> tuple[Proc, int]:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "tests.fake_tfserving",
                "--port",
                str(port),
                "--delay",
                str(delay),
            ]
        )
        started.append(proc)
        line = await proc.first_line()
        assert line.startswith("fake-tfserving listening on 127.0.0.1:"), line
        return proc, int(line.rsplit(":", 1)[1])

    yield start_fake
    for proc in started:
        proc.kill()


async def run_load(
    stub: inference_pb2_grpc.InferenceServiceAsyncStub,
    *,
    workers: int,
    seconds: float,
    deadline: float,
    max_calls: int = 5000,
) -> collections.Counter[str]:
    """``workers`` callers in a loop for ``seconds`` (at most ``max_calls`` calls in all)."""
    outcomes: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at and sum(outcomes.values()) < max_calls:
            try:
                answer = await stub.Predict(hp2(), timeout=deadline)
                assert list(answer.outputs["y"].floats) == [3.5, 4.0, 5.5]
                outcomes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


# Retrying through an outage of a second or two. Each caller stuck in the outage retries about
# 3 times a second (back-off up to 0.5 s with full jitter); with 8 callers and the little traffic
# of a test, the budget's floor must cover that (20/s: 200 retries in its 10 s window). At real
# traffic the 20% share dominates the floor.
RETRY_THROUGH_RESTARTS = {
    "max_attempts": 50,
    "initial_backoff": 0.05,
    "max_backoff": 0.5,
    "budget_min_per_second": 20.0,
}


@pytest.mark.parametrize(
    ("deadline", "down_for"), [(10.0, 0.5), (0.25, 0.8)], ids=["long-deadlines", "short-deadlines"]
)
async def test_backend_restart_under_load(
    procs, start_gateway: StartGateway, deadline: float, down_for: float
) -> None:
    fake, port = await procs()
    gw = await start_gateway(f"127.0.0.1:{port}", retry=RETRY_THROUGH_RESTARTS)
    await gw.stub.Predict(hp2(), timeout=10)

    async def restart() -> None:
        await asyncio.sleep(0.7)
        fake.kill()
        await asyncio.sleep(down_for)
        await procs(port)

    outcomes, _ = await asyncio.gather(
        run_load(gw.stub, workers=8, seconds=3.0, deadline=deadline), restart()
    )
    failed = sum(n for code, n in outcomes.items() if code != "OK")
    print(f"\nrestart ({down_for}s down, {deadline}s deadlines): {dict(outcomes)}, failed={failed}")
    assert outcomes["OK"] > 50
    assert set(outcomes) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
    if deadline > down_for * 3:
        assert failed == 0
    else:
        assert failed > 0  # the deadlines were shorter than the outage: the load must notice


async def test_one_of_two_replicas_killed_under_load(procs, start_gateway: StartGateway) -> None:
    first, port1 = await procs()
    _, port2 = await procs()
    gw = await start_gateway(f"127.0.0.1:{port1},127.0.0.1:{port2}", retry=RETRY_THROUGH_RESTARTS)
    await gw.stub.Predict(hp2(), timeout=10)

    async def kill_one() -> None:
        await asyncio.sleep(0.7)
        first.kill()

    outcomes, _ = await asyncio.gather(
        run_load(gw.stub, workers=8, seconds=2.5, deadline=5.0), kill_one()
    )
    print(f"\none of two replicas killed: {dict(outcomes)}")
    assert outcomes["OK"] > 50
    assert set(outcomes) == {"OK"}


async def test_dead_backend_retry_budget_caps_attempts(start_gateway: StartGateway) -> None:
    fake = FakeTFServing()
    await fake.start()
    try:
        gw = await start_gateway(
            fake.target,
            retry={"max_attempts": 5, "budget_ratio": 0.2, "budget_min_per_second": 1.0},
        )
        await gw.stub.Predict(hp2(), timeout=10)
        fake.calls.clear()
        fake.fail_next(grpc.StatusCode.UNAVAILABLE, 100_000, "backend is dead")
        calls = 100
        outcomes: collections.Counter[str] = collections.Counter()
        spent_messages = 0
        latencies: list[float] = []
        for _ in range(calls // 10):

            async def one() -> None:
                nonlocal spent_messages
                start = time.monotonic()
                try:
                    await gw.stub.Predict(hp2(), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    outcomes[exc.code().name] += 1
                    spent_messages += "retry budget is spent" in (exc.details() or "")
                latencies.append(time.monotonic() - start)

            await asyncio.gather(*(one() for _ in range(10)))
        attempts = fake.calls["Predict"]
        print(f"\ndead backend: {calls} calls made {attempts} backend attempts; {dict(outcomes)}")
        assert outcomes == {"UNAVAILABLE": calls}
        # Without the budget: 5 attempts per call. With it: the calls, 20% more, and the floor.
        assert attempts <= calls * 1.2 + 10 + 1
        assert spent_messages > calls // 2
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.1  # callers fail fast once the budget is spent
    finally:
        await fake.stop()


async def test_overload_is_shed(start_gateway: StartGateway) -> None:
    fake = FakeTFServing()
    await fake.start()
    try:
        gw = await start_gateway(fake.target, max_concurrency=4, max_queue=8)
        await gw.stub.Predict(hp2(), timeout=10)
        fake.delay = 0.3
        fake.max_in_flight = 0
        latencies: dict[str, list[float]] = collections.defaultdict(list)

        async def one() -> None:
            start = time.monotonic()
            try:
                await gw.stub.Predict(hp2(), timeout=10)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                assert "at capacity" in (exc.details() or "")
            latencies[code].append(time.monotonic() - start)

        await asyncio.gather(*(one() for _ in range(100)))
        counts = {code: len(v) for code, v in latencies.items()}
        print(f"\noverload, 100 at once, cap 4 + queue 8: {counts}, in flight {fake.max_in_flight}")
        assert counts == {"OK": 12, "RESOURCE_EXHAUSTED": 88}
        assert fake.max_in_flight == 4
        assert max(latencies["RESOURCE_EXHAUSTED"]) < 0.25  # refused at once, not after waiting
    finally:
        await fake.stop()


async def test_queue_wait_is_bounded(start_gateway: StartGateway) -> None:
    fake = FakeTFServing()
    await fake.start()
    try:
        gw = await start_gateway(fake.target, max_concurrency=1, max_queue_wait=0.2)
        await gw.stub.Predict(hp2(), timeout=10)
        fake.delay = 1.0
        slow = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=10))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gw.stub.Predict(hp2(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_queue_wait" in (info.value.details() or "")
        assert (await slow).version == 2
    finally:
        await fake.stop()


async def test_pushback_is_honoured(gw: Running, backend: FakeTFServing) -> None:
    await gw.stub.Predict(hp2(), timeout=10)
    backend.calls.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE, 1, "busy", (("grpc-retry-pushback-ms", "300"),))
    start = time.monotonic()
    assert (await gw.stub.Predict(hp2(), timeout=5)).version == 2
    assert time.monotonic() - start >= 0.3
    assert backend.calls["Predict"] == 2
    backend.fail_next(
        grpc.StatusCode.UNAVAILABLE, 1, "go away", (("grpc-retry-pushback-ms", "-1"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.Predict(hp2(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert backend.calls["Predict"] == 3  # not retried


async def test_sigterm_lets_in_flight_calls_finish() -> None:
    fake = FakeTFServing()
    await fake.start()
    gateway = Proc(
        [
            sys.executable,
            "-m",
            "tfgate",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            fake.target,
        ]
    )
    try:
        line = await gateway.first_line()
        assert line.startswith("tfgate listening on 127.0.0.1:"), line
        port = int(line.split()[3].rsplit(":", 1)[1])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await stub.Predict(hp2(), timeout=10)
            fake.delay = 1.0
            calls = [asyncio.ensure_future(stub.Predict(hp2(), timeout=10)) for _ in range(10)]
            await asyncio.sleep(0.3)
            assert fake.in_flight == 10
            os.kill(gateway.popen.pid, signal.SIGTERM)
            answers = await asyncio.gather(*calls, return_exceptions=True)
            assert [getattr(a, "version", a) for a in answers] == [2] * 10
            code = await asyncio.to_thread(gateway.popen.wait, 20)
            assert code == 0
            assert fake.completed >= 11
    finally:
        gateway.kill()
        await fake.stop()
