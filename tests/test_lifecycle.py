"""tfgate's lifecycle as a process: the drain on SIGTERM, a taken port, a burst of calls.

Every load is bounded, talks only to 127.0.0.1, and each test ends the processes it started.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.test_gateway import hp2
from tfgate.v1 import inference_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
_SERVE = (sys.executable, "-m", "tfgate", "serve")


def start_tfgate(
    backend: str, log: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """``tfgate serve`` in front of ``backend`` with ``args`` (and ``env`` added to this
    environment), its stderr in ``log``; returns once it listens, with its port."""
    with log.open("w") as stderr:  # the child holds its own copy
        proc = subprocess.Popen(
            [*_SERVE, "--listen", "127.0.0.1:0", "--backend", backend, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("tfgate listening on 127.0.0.1:"), line
    return proc, int(line.split()[3].rsplit(":", 1)[1])


def end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


async def health_status(port: int) -> str:
    """What a new health client sees: the status, or the code of its failure."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


@pytest.mark.asyncio
async def test_sigterm_drains_with_health_answering_and_reports_the_cancelled_in_one_line(
    tmp_path: Path,
) -> None:
    fake = FakeTFServing()
    await fake.start()
    log = tmp_path / "tfgate.log"
    proc, port = start_tfgate(fake.target, log, "--grace-period", "1.5")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await stub.Predict(hp2(), timeout=10)
            fake.delay = 5.0  # every call outlives the grace period
            calls = [asyncio.ensure_future(stub.Predict(hp2(), timeout=20)) for _ in range(20)]
            await asyncio.sleep(0.3)
            assert fake.in_flight == 20
            os.kill(proc.pid, signal.SIGTERM)
            await asyncio.sleep(0.4)
            # During the drain: the listener answers health, and refuses new calls.
            assert await health_status(port) == "NOT_SERVING"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Predict(hp2(), timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (refused.value.details() or "")
            answers = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(a, grpc.aio.AioRpcError) for a in answers), answers
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        end(proc)
        await fake.stop()
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text
    summary = [line for line in text.splitlines() if "grace period are cancelled" in line]
    assert len(summary) == 1 and "shutdown: 20 calls" in summary[0], text


@pytest.mark.parametrize("flag", ["--listen", "--http-listen"])
def test_a_taken_port_exits_2_with_one_line_naming_the_address(flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", flag, address]
        done = subprocess.run(
            [sys.executable, "-m", "tfgate", "serve", "--backend", "127.0.0.1:1", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert address in lines[0] and flag.lstrip("-").replace("-", "_") in lines[0]


@pytest.mark.asyncio
async def test_a_burst_of_2000_calls_gets_only_ok_or_resource_exhausted(
    backend: FakeTFServing, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway(backend.target, max_queue=16)
    await gw.stub.Predict(hp2(), timeout=10)
    backend.delay = 0.05
    caplog.set_level(logging.INFO, logger="tfgate.access")
    caplog.clear()

    async def one() -> str:
        try:
            await gw.stub.Predict(hp2(), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    outcomes = collections.Counter(await asyncio.gather(*(one() for _ in range(2000))))
    print(outcomes)
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}, outcomes
    assert outcomes["RESOURCE_EXHAUSTED"] > 0  # the queue did overflow
    logged = [r for r in caplog.records if r.name == "tfgate.access"]
    assert len(logged) == 2000  # every caller reached tfgate's handler
