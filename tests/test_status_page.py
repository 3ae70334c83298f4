"""GET / (tfgate.fronts.http.status_page) against tfgate in front of the fake TF Serving."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.fake_tfserving import FakeTFServing, Model, Version, default_models, half_plus
from tests.test_auth import CLIENTS, keys_file
from tfgate.policy.config import PolicyConfig

pytestmark = pytest.mark.asyncio

EVIL = "<script>alert(1)</script>"


class Page(HTMLParser):
    """The page's script elements, the text of its model-name cells, and its data-model attrs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.names: list[str] = []
        self.attrs_seen: list[str] = []
        self._in_name = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.scripts += tag == "script"
        self._in_name = tag == "td" and found.get("class") == "name"
        if "data-model" in found:
            self.attrs_seen.append(found["data-model"] or "")

    def handle_data(self, data: str) -> None:
        if self._in_name:
            self.names.append(data)
            self._in_name = False


async def _get(url: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_the_page_escapes_what_comes_from_outside(start_gateway: StartGateway) -> None:
    models = default_models()
    models[EVIL] = Model(versions={1: Version({"serving_default": half_plus(2.0)})})
    fake = FakeTFServing(models)
    await fake.start()
    try:
        gw = await start_gateway(
            fake.target, http_listen="127.0.0.1:0", health_models=(EVIL, "half_plus_two")
        )
        base = f"http://127.0.0.1:{gw.gateway.http_port}"
        async with aiohttp.ClientSession() as session:
            url = f"{base}/tfgate/v1/models/half_plus_two:predict"
            async with session.post(url, json={"inputs": {"x": {"floats": [1]}}}) as answer:
                assert answer.status == 200
        status, text, headers = await _get(base + "/")
    finally:
        await fake.stop()
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    page = Page()
    page.feed(text)
    assert page.scripts == 1  # the form's own, not the model name
    assert EVIL not in text
    assert EVIL in page.names and "half_plus_two" in page.names
    assert EVIL in page.attrs_seen
    assert '<td class="num">0</td>' in text  # the evil model: no calls
    assert "0.00/s" not in text and "/s</td>" in text  # half_plus_two: the Predict above


async def test_the_page_is_refused_while_auth_is_on(
    backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path
) -> None:
    policy = PolicyConfig(True, keys_file(tmp_path / "keys.toml"), clients=CLIENTS)
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0", policy=policy)
    status, text, _ = await _get(f"http://127.0.0.1:{gw.gateway.http_port}/")
    assert status == 403
    assert "[auth] is on" in text
    assert "half_plus_two" not in text


async def _predict(port: int) -> int:
    url = f"http://127.0.0.1:{port}/tfgate/v1/models/half_plus_two:predict"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"inputs": {"x": {"floats": [1]}}}) as answer,
    ):
        return answer.status


async def test_each_gateway_counts_only_its_own_calls(
    backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    one = await start_gateway(backend.target, http_listen="127.0.0.1:0")
    two = await start_gateway(backend.target, http_listen="127.0.0.1:0")
    for _ in range(3):
        assert await _predict(one.gateway.http_port) == 200
    assert await _predict(two.gateway.http_port) == 200
    assert one.gateway.window.stats()["half_plus_two"].calls == 3
    assert two.gateway.window.stats()["half_plus_two"].calls == 1


async def test_admin_listen_shows_the_page_with_auth_on_and_without_the_form(
    backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path
) -> None:
    policy = PolicyConfig(True, keys_file(tmp_path / "keys.toml"), clients=CLIENTS)
    gw = await start_gateway(
        backend.target,
        http_listen="127.0.0.1:0",
        admin_listen="127.0.0.1:0",
        policy=policy,
        health_models=("half_plus_two",),
    )
    status, text, headers = await _get(f"http://127.0.0.1:{gw.gateway.admin_port}/")
    assert status == 200
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    page = Page()
    page.feed(text)
    assert "half_plus_two" in page.names
    assert page.scripts == 0 and 'id="predict"' not in text
    assert "POST /tfgate/v1/models/half_plus_two:predict" in text
    # Where the metrics go, the page goes: not on the public port.
    assert (await _get(f"http://127.0.0.1:{gw.gateway.http_port}/"))[0] == 404
