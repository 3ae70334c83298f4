"""The status page in a real browser: Debian's headless Chromium, driven over the DevTools
protocol, loads GET / from tfgate in front of the local model server, reads the model table,
sends the Predict form and reads the answer its script shows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.tools import debian_tool
from tfgate.app import Gateway
from tfgate.config import Config

pytestmark = pytest.mark.asyncio
TIMEOUT = 30.0


@pytest_asyncio.fixture
async def page_url(model_server: str) -> AsyncIterator[str]:
    config = Config(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        backend=model_server,
        health_interval=0.2,
        health_models=("half_plus_two",),
    )
    gateway = Gateway(config)
    await gateway.start()
    yield f"http://127.0.0.1:{gateway.http_port}/"
    await gateway.stop(grace=0)


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        await self._ws.send_json({"id": self._ids, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=TIMEOUT)
            if message.get("id") == self._ids:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def value(self, expression: str) -> Any:
        found = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return found["result"].get("value")

    async def until(self, expression: str) -> Any:
        give_up = time.monotonic() + TIMEOUT
        while time.monotonic() < give_up:
            value = await self.value(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        pytest.fail(f"the page never had {expression}")


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    process = await asyncio.create_subprocess_exec(
        debian_tool("chromium"),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes the port it took here
        give_up = time.monotonic() + TIMEOUT
        while not (active.exists() and active.read_text().strip()):
            assert time.monotonic() < give_up, "Chromium never opened its DevTools port"
            assert process.returncode is None, "Chromium exited"
            await asyncio.sleep(0.1)
        port = int(active.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as listing:
                targets = await listing.json()
            target = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        if process.returncode is None:
            process.kill()  # our own child, by its PID
        await asyncio.wait_for(process.wait(), TIMEOUT)


async def test_the_page_shows_the_models_and_its_form_gets_an_answer(
    page_url: str, browser: DevTools
) -> None:
    await browser.send("Page.enable")
    await browser.send("Page.navigate", url=page_url)
    await browser.until("document.readyState === 'complete' && !!document.getElementById('send')")
    names = await browser.value(
        "Array.from(document.querySelectorAll('#models td.name')).map(c => c.textContent)"
    )
    assert "half_plus_two" in names
    versions = await browser.value(
        "document.querySelector('tr[data-model=\"half_plus_two\"]').children[2].textContent"
    )
    assert "AVAILABLE" in versions
    filled = await browser.value(
        "document.getElementById('model').value = 'half_plus_two';"
        "document.getElementById('model').dispatchEvent(new Event('change'));"
        "document.getElementById('body').value"
    )
    assert "inputs" in json.loads(filled)  # the example the page offers for the model
    await browser.value(
        "document.getElementById('body').value = "
        '\'{"inputs": {"x": {"floats": [1, 2]}}, "version": "1"}\';'
        "document.getElementById('send').click(); true"
    )
    shown = await browser.until(
        "document.getElementById('answer').dataset.status &&"
        " document.getElementById('answer').textContent"
    )
    status, _, body = shown.partition(" ")
    assert status == "200", shown
    assert json.loads(body)["outputs"]["y"]["floats"] == [2.5, 3.0]
