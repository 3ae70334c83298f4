"""The Kubernetes probes: /healthz while the process is up, /readyz while TF Serving answers."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.conftest import StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call, start_http

pytestmark = pytest.mark.asyncio


async def _ready_status(gw, want: int, within: float = 5.0) -> int:
    deadline = time.monotonic() + within
    status = 0
    while time.monotonic() < deadline:
        status = (await call(gw, "GET", "/readyz")).status
        if status == want:
            return status
        await asyncio.sleep(0.05)
    return status


async def test_ready_while_the_backend_answers(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target)
    health = await call(gw, "GET", "/healthz")
    assert health.status == 200 and health.json() == {"status": "ok"}
    assert await _ready_status(gw, 200) == 200
    await backend.stop()
    assert await _ready_status(gw, 503) == 503
    assert (await call(gw, "GET", "/healthz")).status == 200  # up, just not ready


async def test_not_ready_without_a_backend(start_gateway: StartGateway) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    gw = await start_http(start_gateway, closed)
    await asyncio.sleep(0.5)
    answer = await call(gw, "GET", "/readyz")
    assert answer.status == 503 and answer.json() == {"status": "not ready"}


async def test_not_ready_from_the_start_of_a_shutdown(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_http(start_gateway, backend.target, grace_period=3.0)
    assert await _ready_status(gw, 200) == 200
    backend.delay = 1.5  # a call in flight keeps the server draining for a while
    slow = asyncio.create_task(
        call(gw, "POST", "/v1/models/half_plus_two:predict", '{"instances": [1]}')
    )
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(gw.gateway.stop())
    await asyncio.sleep(0.1)
    readiness = await call(gw, "GET", "/readyz")  # still listening, no longer ready
    assert readiness.status == 503 and readiness.json() == {"status": "not ready"}
    answer = await slow  # the call in flight still completes
    assert answer.status == 200 and answer.json() == {"predictions": [3.5]}
    await stopping
