"""The curl examples of docs/http.md, run as written with Debian's curl against tfgate (HTTP on,
the demo config) in front of the local model server on the demo SavedModels."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from tests.tools import debian_tool
from tfgate.app import Gateway
from tfgate.config import Config
from tfgate.plans import config as pipeline_config
from tfgate.plans.plan import Plans

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "http.md"
DEMO = ROOT / "config" / "tfgate.toml"
DOCUMENTED = "http://127.0.0.1:8081"


def examples(text: str) -> list[tuple[str, Any]]:
    """Each ```sh block holding one curl command, and the ```json block right after it."""
    found = re.findall(r"```sh\n(curl [^\n]*)\n```\n\n```json\n(.*?)\n```", text, re.DOTALL)
    return [(command, orjson.loads(answer)) for command, answer in found]


def same(got: Any, want: Any) -> bool:
    """Equal JSON, floats to the last digit printed (a JSON number equal to an int is a float
    here only if the page writes it so)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        return float(got) == want
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(same, got, want))
    return bool(got == want) and type(got) is type(want)


def curl_binary() -> str:
    return debian_tool("curl")


@pytest_asyncio.fixture
async def http_base(model_server: str) -> AsyncIterator[str]:
    config = Config(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        backend=model_server,
        health_interval=0.2,
    )
    gateway = Gateway(config, Plans(pipeline_config.load(str(DEMO))))
    await gateway.start()
    for _ in range(100):  # /readyz is an example too: wait for the first health probe
        if gateway.ready():
            break
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{gateway.http_port}"
    await gateway.stop(grace=0)


def test_the_page_has_examples_of_every_route_family() -> None:
    commands = [command for command, _ in examples(PAGE.read_text(encoding="utf-8"))]
    assert len(commands) >= 8
    for needle in (":predict", ":regress", "/versions/", "/labels/", "/tfgate/v1/", "/readyz"):
        assert any(needle in c for c in commands), needle
    assert all(DOCUMENTED in c for c in commands)


@pytest.mark.asyncio
async def test_every_curl_example_answers_as_shown(http_base: str) -> None:
    curl = curl_binary()
    checked = 0
    for command, want in examples(PAGE.read_text(encoding="utf-8")):
        args = shlex.split(command.replace(DOCUMENTED, http_base))
        process = await asyncio.create_subprocess_exec(
            curl, "-sS", *args[1:], stdout=asyncio.subprocess.PIPE, env={**os.environ}
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, command
        got = orjson.loads(out)
        assert same(got, want), f"{command}\n got: {got}\nwant: {want}"
        checked += 1
    assert checked >= 8


def test_same_compares_values_not_just_shapes() -> None:
    assert same({"a": [1.0, "x"]}, {"a": [1.0, "x"]})
    assert same({"a": [4]}, {"a": [4.0]})
    assert not same({"a": [0.0174682029]}, {"a": [0.0174682047]})  # the last digit counts
    assert not same({"a": [1.1]}, {"a": [1.0]})
    assert not same({"a": 1}, {"a": "1"})
    assert not same([1, 2], [1, 2, 3])
