"""A real Prometheus (Debian's ``prometheus``, installed by .ci/run) scrapes tfgate every second
and sees its calls, by model and code, through its HTTP API."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from tests.conftest import StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.test_gateway import hp2
from tfgate.metrics import UNKNOWN
from tfgate.v1 import inference_pb2

PROMETHEUS = "/usr/bin/prometheus"
# Below the kernel's ephemeral range (32768 and up), where a port can be taken at any time.
PORTS = range(20000, 32768)


def free_port() -> int:
    for port in random.sample(PORTS, 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 32768")


class Prometheus:
    def __init__(self, port: int, process: asyncio.subprocess.Process) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = process

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query", params={"query": promql}) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url}/-/ready") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False


@pytest_asyncio.fixture
async def scraping(
    backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[tuple[Any, Prometheus]]:
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: tfgate\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gw.gateway.http_port}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prometheus = Prometheus(port, process)
    try:
        async with asyncio.timeout(15):
            while not await prometheus.ready():
                assert process.returncode is None, (tmp_path / "prometheus.log").read_text()
                await asyncio.sleep(0.1)
        yield gw, prometheus
    finally:
        process.terminate()  # by its PID
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()


async def until(prometheus: Prometheus, promql: str, check: Any) -> list[dict[str, Any]]:
    """The result of ``promql`` once ``check`` holds for it (Prometheus scrapes every second)."""
    async with asyncio.timeout(10):
        while True:
            result = await prometheus.query(promql)
            if check(result):
                return result
            await asyncio.sleep(0.25)


def by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"][name] for name in labels): float(r["value"][1]) for r in result}


async def calls(gw: Any, ok: int, unknown: int) -> None:
    for _ in range(ok):
        await gw.stub.Predict(hp2(), timeout=5)
    for index in range(unknown):
        with pytest.raises(grpc.aio.AioRpcError):
            await gw.stub.Predict(inference_pb2.PredictRequest(model=f"nope{index}"), timeout=5)


@pytest.mark.asyncio
async def test_prometheus_sees_the_calls_by_model_and_code(
    scraping: tuple[Any, Prometheus],
) -> None:
    gw, prometheus = scraping
    await calls(gw, ok=1, unknown=1)
    # A first scrape holds both series; rate() needs a second sample of each.
    await until(prometheus, "tfgate_calls_total", lambda r: len(r) == 2)
    await calls(gw, ok=4, unknown=2)
    totals = "sum by (model, code) (tfgate_calls_total)"
    result = await until(prometheus, totals, lambda r: sum(by(r, "model", "code").values()) == 8)
    assert by(result, "model", "code") == {
        ("half_plus_two", "OK"): 5.0,
        (UNKNOWN, "NOT_FOUND"): 3.0,
    }
    rates = "sum by (model, code) (rate(tfgate_calls_total[30s]))"
    result = await until(prometheus, rates, lambda r: len(r) == 2 and all(by(r, "model").values()))
    seen = by(result, "model", "code")
    assert set(seen) == {("half_plus_two", "OK"), (UNKNOWN, "NOT_FOUND")}
    assert all(rate > 0 for rate in seen.values())
    # The OK calls rose by 4 and the unknown ones by 2 between the samples rate() saw.
    assert seen[("half_plus_two", "OK")] > seen[(UNKNOWN, "NOT_FOUND")]
    up = await prometheus.query('up{job="tfgate"}')
    assert by(up, "job") == {("tfgate",): 1.0}
