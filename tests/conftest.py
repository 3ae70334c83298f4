"""Shared fixtures: a fake TF Serving and a tfgate in front of it, both in-process on port 0."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest_asyncio

from tests.fake_tfserving import FakeTFServing
from tests.model_server_fixtures import model_server  # noqa: F401  (session fixture)
from tfgate.app import Gateway
from tfgate.batcher import BatchingConfig
from tfgate.cache import CacheConfig
from tfgate.config import Config, RetryPolicy
from tfgate.plans.plan import Plans
from tfgate.v1 import inference_pb2_grpc

# No log line of the run may hold a secret a test made (tests/log_secrets.py).
pytest_plugins = ["tests.log_secrets"]


@dataclasses.dataclass
class Running:
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: inference_pb2_grpc.InferenceServiceAsyncStub

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[FakeTFServing]:
    fake = FakeTFServing()
    await fake.start()
    yield fake
    await fake.stop()


StartGateway = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Starts tfgate on 127.0.0.1:0 against ``backend`` (a target), with Config overrides and,
    if given, preprocessing."""
    started: list[Running] = []

    async def start(
        backend: str,
        retry: dict[str, Any] | None = None,
        pipelines: Plans | None = None,
        caches: dict[str, CacheConfig] | None = None,
        batching: dict[str, BatchingConfig] | None = None,
        **overrides: Any,
    ) -> Running:
        settings: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "backend": backend,
            "health_interval": 0.2,
        }
        settings.update(overrides)
        config = Config(
            **settings,
            retry=RetryPolicy(**{"initial_backoff": 0.01, "max_backoff": 0.05, **(retry or {})}),
        )
        gateway = Gateway(config, pipelines, caches=caches, batching=batching)
        port = await gateway.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        running = Running(gateway, channel, inference_pb2_grpc.InferenceServiceStub(channel))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.gateway.stop(grace=0)


@pytest_asyncio.fixture
async def gw(backend: FakeTFServing, start_gateway: StartGateway) -> Running:
    """tfgate in front of the default fake backend."""
    return await start_gateway(backend.target)
