"""Fault tests: restarts, a lost replica, a dead backend, overload, SIGTERM.

Every load here is bounded in count and time, talks only to 127.0.0.1, and each test ends the
processes it started, by PID. The counts that matter are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
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
from tfgate.config import RetryPolicy
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

    async def start_fake(
        port: int = 0, delay: float = 0.0, start_delay: float = 0.0
    ) -> tuple[Proc, int]:
        """The fake as a process; ``start_delay`` seconds pass before it listens, as when TF
        Serving loads its models before it opens its port."""
        boot = (
            f"import time; time.sleep({start_delay}); from tests.fake_tfserving import main; main()"
        )
        proc = Proc([sys.executable, "-c", boot, "--port", str(port), "--delay", str(delay)])
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
    answered: list[float] | None = None,
) -> collections.Counter[str]:
    """``workers`` callers in a loop for ``seconds`` (at most ``max_calls`` calls in all);
    ``answered`` collects when (time.monotonic()) each successful call ended."""
    outcomes: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at and sum(outcomes.values()) < max_calls:
            try:
                answer = await stub.Predict(hp2(), timeout=deadline)
                assert list(answer.outputs["y"].floats) == [3.5, 4.0, 5.5]
                outcomes["OK"] += 1
                if answered is not None:
                    answered.append(time.monotonic())
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


# Every fault test runs with the retry policy tfgate ships with (the conftest fixture otherwise
# shortens the back-off for speed).
DEFAULT_RETRY = dataclasses.asdict(RetryPolicy())


async def test_backend_restart_with_default_settings_loses_nothing(
    procs, start_gateway: StartGateway
) -> None:
    """TF Serving killed under load, 1 s with nothing on its port, then a start that takes
    seconds before it listens: about 4 s down, 8 callers with 8 s deadlines, no call lost."""
    fake, port = await procs(delay=0.01)
    gw = await start_gateway(f"127.0.0.1:{port}", retry=DEFAULT_RETRY)
    assert gw.gateway.config.retry == RetryPolicy()
    await gw.stub.Predict(hp2(), timeout=10)
    answered: list[float] = []
    outage: dict[str, float] = {}

    async def restart() -> None:
        await asyncio.sleep(1.0)
        outage["down"] = time.monotonic()
        fake.kill()
        await asyncio.sleep(1.0)
        await procs(port, delay=0.01, start_delay=2.5)
        outage["up"] = time.monotonic()

    outcomes, _ = await asyncio.gather(
        run_load(
            gw.stub, workers=8, seconds=9.0, deadline=8.0, max_calls=20_000, answered=answered
        ),
        restart(),
    )
    down_for = outage["up"] - outage["down"]
    failed = sum(n for code, n in outcomes.items() if code != "OK")
    after = sum(1 for t in answered if t > outage["up"])
    print(f"\nrestart ({down_for:.1f}s down, 8s deadlines): {dict(outcomes)}, failed={failed}")
    assert down_for >= 3.5  # the outage really lasted the ~4 s this test is about
    assert after > 50  # and the load went on after TF Serving was back
    assert failed == 0, dict(outcomes)


async def test_short_deadlines_during_a_restart_fail_with_deadline_exceeded(
    procs, start_gateway: StartGateway
) -> None:
    fake, port = await procs()
    gw = await start_gateway(f"127.0.0.1:{port}", retry=DEFAULT_RETRY)
    await gw.stub.Predict(hp2(), timeout=10)

    async def restart() -> None:
        await asyncio.sleep(0.7)
        fake.kill()
        await asyncio.sleep(0.8)
        await procs(port)

    outcomes, _ = await asyncio.gather(
        run_load(gw.stub, workers=8, seconds=3.0, deadline=0.25), restart()
    )
    print(f"\nrestart (0.8s down, 0.25s deadlines): {dict(outcomes)}")
    assert outcomes["OK"] > 50
    # The deadlines were shorter than the outage: the load must notice, and only as deadlines
    # (or as the calls in flight when the process died).
    assert outcomes["DEADLINE_EXCEEDED"] > 0
    assert set(outcomes) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}


async def test_backend_down_longer_than_wait_for_backend_is_unavailable(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    """A small wait_for_backend here only because this tests that bound."""
    fake = backend  # stopped by its fixture, whatever happens here
    gw = await start_gateway(fake.target, retry=DEFAULT_RETRY, wait_for_backend=1.0)
    await gw.stub.Predict(hp2(), timeout=10)
    await fake.stop()
    down = f"TF Serving at {fake.target} is down: no connection to it for "

    async def timed() -> tuple[str, str, float]:
        start = time.monotonic()
        try:
            await gw.stub.Predict(hp2(), timeout=10)
            return "OK", "", time.monotonic() - start
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or "", time.monotonic() - start

    first = await asyncio.gather(*(timed() for _ in range(4)))
    print(f"\nbackend down, wait_for_backend=1: first callers after {[f[2] for f in first]}")
    for code, details, elapsed in first:
        assert code == "UNAVAILABLE" and down in details, details
        assert 0.9 < elapsed < 1.8  # waited about wait_for_backend, not the 10 s deadline
    # Still down, and known to be: the next callers are told at once.
    later = await asyncio.gather(*(timed() for _ in range(4)))
    for code, details, elapsed in later:
        assert code == "UNAVAILABLE" and down in details, details
        assert elapsed < 0.3


async def test_waiting_for_a_down_backend_keeps_the_queue_bounded(
    start_gateway: StartGateway, backend: FakeTFServing
) -> None:
    fake = backend  # stopped by its fixture, whatever happens here
    gw = await start_gateway(
        fake.target, retry=DEFAULT_RETRY, max_concurrency=2, max_queue=3, wait_for_backend=1.0
    )
    await gw.stub.Predict(hp2(), timeout=10)
    await fake.stop()
    limiter = gw.gateway.upstream.limiter
    seen = {"in_flight": 0, "waiting": 0}
    outcomes: list[tuple[str, str, float]] = []

    async def one() -> None:
        start = time.monotonic()
        try:
            await gw.stub.Predict(hp2(), timeout=10)
            outcomes.append(("OK", "", 0.0))
        except grpc.aio.AioRpcError as exc:
            outcomes.append((exc.code().name, exc.details() or "", time.monotonic() - start))

    async def watch() -> None:
        while len(outcomes) < 10:
            seen["in_flight"] = max(seen["in_flight"], limiter.in_flight)
            seen["waiting"] = max(seen["waiting"], limiter.waiting)
            await asyncio.sleep(0.01)

    await asyncio.gather(watch(), *(one() for _ in range(10)))
    shed = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
    down = [o for o in outcomes if o[0] == "UNAVAILABLE"]
    print(f"\n10 calls, backend down, cap 2 + queue 3: {len(shed)} shed, {len(down)} down; {seen}")
    assert len(shed) == 5 and len(down) == 5, outcomes
    assert all("at capacity" in d and t < 0.3 for _, d, t in shed)  # refused at once
    assert all(f"TF Serving at {fake.target} is down" in d for _, d, _ in down)
    assert seen == {"in_flight": 2, "waiting": 3}  # the waiters held their slots and places


async def test_a_call_in_flight_when_tf_serving_dies_is_an_attempt(
    procs, start_gateway: StartGateway
) -> None:
    """A call that reached TF Serving and failed with it is a real attempt: with max_attempts
    1 it is not tried again, and the caller hears of it at once, not after waiting."""
    fake, port = await procs(delay=1.0)
    gw = await start_gateway(f"127.0.0.1:{port}", retry={"max_attempts": 1})
    await gw.stub.Predict(hp2(), timeout=10)  # the signature is cached: the next call is Predict
    call = asyncio.ensure_future(gw.stub.Predict(hp2(), timeout=10))
    await asyncio.sleep(0.5)
    assert not call.done()
    fake.kill()
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Socket closed" in (info.value.details() or "")
    assert time.monotonic() - start < 0.5


async def test_one_of_two_replicas_killed_under_load(procs, start_gateway: StartGateway) -> None:
    first, port1 = await procs()
    _, port2 = await procs()
    gw = await start_gateway(f"127.0.0.1:{port1},127.0.0.1:{port2}", retry=DEFAULT_RETRY)
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
        # Refused at once, not after waiting: every shed call is answered before the first
        # admitted one, which TF Serving holds for 0.3 s.
        assert max(latencies["RESOURCE_EXHAUSTED"]) < min(latencies["OK"])
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
            for _ in range(90):  # at most 0.9 s: well inside the backend's 1 s
                if fake.in_flight == 10:
                    break
                await asyncio.sleep(0.01)
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
