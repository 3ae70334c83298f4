"""SIGHUP re-reads the keys, clients and rate limits: the new ones apply to the calls that come
next, calls in flight finish, and a file that does not validate is refused with one warning while
the previous settings stay. In-process through ``Gateway.reload`` (as the signal handler calls
it), and once with a real SIGHUP to a ``tfgate serve`` process."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from tests.fake_tfserving import FakeTFServing
from tests.log_secrets import remember
from tests.test_auth import v1_predict
from tests.test_lifecycle import end, start_tfgate
from tfgate import config as config_module
from tfgate.app import Gateway
from tfgate.v1 import inference_pb2_grpc

OLD_KEY = remember(secrets.token_urlsafe(24))
NEW_KEY = remember(secrets.token_urlsafe(24))


class Files:
    """A config file and its key file, rewritten by the tests."""

    def __init__(self, folder: Path, backend: str) -> None:
        self.config = folder / "tfgate.toml"
        self.keys = folder / "keys.toml"
        self.backend = backend

    def write(self, key: str, models: str = '["half_*"]', limits: str = "") -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.keys.write_text(f'[keys.alpha]\nsha256 = "{digest}"\n', encoding="utf-8")
        self.config.write_text(
            f'listen = "127.0.0.1:0"\nbackend = "{self.backend}"\n\n'
            f'[auth]\nenabled = true\nkeys_file = "{self.keys}"\n\n'
            f"[clients.alpha]\nmodels = {models}\n\n{limits}",
            encoding="utf-8",
        )

    def load(self) -> config_module.Config:
        return config_module.load({}, {}, str(self.config))


@pytest_asyncio.fixture
async def files_gateway(
    backend: FakeTFServing, tmp_path: Path
) -> AsyncIterator[tuple[Files, Gateway, grpc.aio.Channel]]:
    files = Files(tmp_path, backend.target)
    files.write(OLD_KEY)
    gateway = Gateway(files.load(), reread=files.load)
    port = await gateway.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield files, gateway, channel
    await channel.close()
    await gateway.stop(grace=0)


async def predict(channel: grpc.aio.Channel, key: str, model: str = "half_plus_two") -> object:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    return await stub.Predict(
        v1_predict(model), metadata=(("authorization", f"Bearer {key}"),), timeout=5
    )


async def refused(channel: grpc.aio.Channel, key: str, model: str = "half_plus_two") -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await predict(channel, key, model)
    return info.value.code().name


async def reload(gateway: Gateway) -> None:
    task = gateway.reload()
    assert task is not None
    await task


@pytest.mark.asyncio
async def test_new_keys_clients_and_limits_apply_after_a_reload(
    files_gateway: tuple[Files, Gateway, grpc.aio.Channel],
) -> None:
    files, gateway, channel = files_gateway
    await predict(channel, OLD_KEY)
    assert await refused(channel, NEW_KEY) == "UNAUTHENTICATED"

    files.write(NEW_KEY)  # the key replaced
    await reload(gateway)
    assert await refused(channel, OLD_KEY) == "UNAUTHENTICATED"
    await predict(channel, NEW_KEY)

    files.write(NEW_KEY, models='["other"]')  # the client's rights narrowed
    await reload(gateway)
    assert await refused(channel, NEW_KEY) == "PERMISSION_DENIED"

    files.write(NEW_KEY, limits="[limits.clients.alpha]\nrate = 1\nburst = 1\n")
    await reload(gateway)
    await predict(channel, NEW_KEY)
    assert await refused(channel, NEW_KEY) == "RESOURCE_EXHAUSTED"  # its one token spent


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda f: f.config.write_text("[auth\nenabled = true\n"), "config file"),
        (lambda f: f.keys.write_text('[keys.alpha]\nsha256 = "not-hex"\n'), "keys"),
        (lambda f: f.keys.unlink(), "keys"),
        (lambda f: f.write(NEW_KEY, limits="[limits]\nrate = -1\n"), "limits.rate"),
        (lambda f: f.write(NEW_KEY, models='"half_*"'), "clients.alpha.models"),
    ],
)
async def test_a_file_that_does_not_validate_leaves_the_old_settings(
    files_gateway: tuple[Files, Gateway, grpc.aio.Channel],
    caplog: pytest.LogCaptureFixture,
    break_it: object,
    reason: str,
) -> None:
    files, gateway, channel = files_gateway
    caplog.set_level(logging.INFO, logger="tfgate")
    assert callable(break_it)
    break_it(files)
    await reload(gateway)
    await predict(channel, OLD_KEY)  # the old key still in force
    assert await refused(channel, NEW_KEY) == "UNAUTHENTICATED"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("reload refused, the previous settings stay in force: ")
    assert reason in warnings[0], warnings[0]


@pytest.mark.asyncio
async def test_calls_in_flight_finish_through_a_reload(
    files_gateway: tuple[Files, Gateway, grpc.aio.Channel], backend: FakeTFServing
) -> None:
    files, gateway, channel = files_gateway
    await predict(channel, OLD_KEY)  # the signatures cached: the next calls go to Predict
    backend.delay = 0.5
    in_flight = [asyncio.ensure_future(predict(channel, OLD_KEY)) for _ in range(5)]
    for _ in range(500):  # at most 5 s
        if backend.in_flight == 5:
            break
        await asyncio.sleep(0.01)
    assert backend.in_flight == 5
    files.write(NEW_KEY)
    await reload(gateway)
    answers = await asyncio.gather(*in_flight)  # none dropped, though their key is gone
    assert len(answers) == 5
    backend.delay = 0.0
    assert await refused(channel, OLD_KEY) == "UNAUTHENTICATED"


@pytest.mark.asyncio
async def test_settings_a_reload_cannot_apply_are_named(
    files_gateway: tuple[Files, Gateway, grpc.aio.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    files, gateway, _ = files_gateway
    caplog.set_level(logging.INFO, logger="tfgate")
    text = files.config.read_text(encoding="utf-8")
    files.config.write_text("max_concurrency = 7\n" + text, encoding="utf-8")
    await reload(gateway)
    messages = [r.getMessage() for r in caplog.records if r.name == "tfgate.app"]
    assert "reload: max_concurrency changed; that takes effect at a restart" in messages
    assert gateway.config.max_concurrency != 7


@pytest.mark.asyncio
async def test_sighup_reloads_a_running_tfgate(backend: FakeTFServing, tmp_path: Path) -> None:
    files = Files(tmp_path, backend.target)
    files.write(OLD_KEY)
    log = tmp_path / "tfgate.log"
    proc, port = start_tfgate(backend.target, log, "--config", str(files.config))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await predict(channel, OLD_KEY)
            files.write(NEW_KEY)
            os.kill(proc.pid, signal.SIGHUP)
            for _ in range(100):  # the reload is done when the new key is taken
                try:
                    await predict(channel, NEW_KEY)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
            await predict(channel, NEW_KEY)
            assert await refused(channel, OLD_KEY) == "UNAUTHENTICATED"
    finally:
        end(proc)
    text = log.read_text(encoding="utf-8")
    assert "reload: keys, clients and limits read again (1 clients)" in text
    assert OLD_KEY not in text and NEW_KEY not in text
