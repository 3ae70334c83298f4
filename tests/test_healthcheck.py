"""``tfgate healthcheck``: one line for every outcome, and help text for every flag."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from tests.conftest import StartGateway
from tests.fake_tfserving import FakeTFServing
from tfgate import cli


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfgate", "healthcheck", "--timeout", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.asyncio
async def test_one_line_on_success_and_on_each_failure(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(backend.target)
    for _ in range(100):
        if gw.gateway.ready():
            break
        await asyncio.sleep(0.05)
    ok = await asyncio.to_thread(healthcheck, "--target", gw.target)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"tfgate healthcheck: {gw.target}: SERVING"]
    unknown = await asyncio.to_thread(healthcheck, "--target", gw.target, "--service", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == [
        f"tfgate healthcheck: {gw.target} (nope): NOT_FOUND: no such service"
    ]
    await backend.stop()  # TF Serving gone: tfgate answers NOT_SERVING
    for _ in range(100):
        if not gw.gateway.ready():
            break
        await asyncio.sleep(0.05)
    down = await asyncio.to_thread(healthcheck, "--target", gw.target)
    assert down.returncode == 1
    assert down.stderr.splitlines() == [f"tfgate healthcheck: {gw.target}: NOT_SERVING"]


def test_nothing_listening_says_so_in_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening
        done = healthcheck("--target", target)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"tfgate healthcheck: {target}: UNAVAILABLE: connection refused: nothing listens there"
    ]


def test_every_flag_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["healthcheck", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--target TARGET tfgate's gRPC HOST:PORT" in text
    assert "--timeout TIMEOUT seconds to wait" in text
    assert "--service SERVICE the service to ask about" in text
