"""The grpcurl examples of the README and docs/preprocessing.md, run as written with the venv's
grpcurl against tfgate (the demo config) in front of the local model server on the demo
SavedModels, as `make run` serves them; each documented answer must be what comes back, values
to the last digit."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tfgate.app import Gateway
from tfgate.config import Config
from tfgate.plans import config as pipeline_config
from tfgate.plans.plan import Plans

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", ROOT / "docs" / "preprocessing.md")
DEMO = ROOT / "config" / "tfgate.toml"
DOCUMENTED = "127.0.0.1:8080"
BINARY = ".venv/bin/grpcurl"


def commands(block: str) -> list[str]:
    """The commands of a ```sh block, continuation lines joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def examples(text: str) -> list[tuple[list[str], Any]]:
    """Each ```sh block of grpcurl commands, and the ```json answer that follows it (before the
    next ```sh block), if any. A fragment such as ``"outputs": {...}`` is read as an object."""
    found = []
    for block, rest in re.findall(r"```sh\n(.*?)\n```(.*?)(?=```sh|\Z)", text, re.DOTALL):
        lines = commands(block)
        if not lines or not all(line.startswith(BINARY) for line in lines):
            continue
        answer = re.search(r"```json\n(.*?)\n```", rest, re.DOTALL)
        documented = None
        if answer:
            body = answer.group(1).strip()
            documented = json.loads(body if body.startswith("{") else "{" + body + "}")
        found.append((lines, documented))
    return found


def contains(got: Any, want: Any) -> bool:
    """``got`` holds every field ``want`` documents, with equal values (a list whole)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and contains(got[k], want[k]) for k in want)
    return bool(got == want) and type(got) is type(want)


@pytest_asyncio.fixture
async def target(model_server: str) -> AsyncIterator[str]:
    config = Config(listen="127.0.0.1:0", backend=model_server, health_interval=0.2)
    gateway = Gateway(config, Plans(pipeline_config.load(str(DEMO))))
    port = await gateway.start()
    yield f"127.0.0.1:{port}"
    await gateway.stop(grace=0)


async def grpcurl(line: str, target: str) -> str:
    args = shlex.split(line.replace(DOCUMENTED, target))
    args[0] = str(Path(sys.executable).parent / "grpcurl")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, f"{line}\n{err.decode()}"
    return out.decode()


def test_the_pages_have_examples_with_answers() -> None:
    found = [e for page in PAGES for e in examples(page.read_text(encoding="utf-8"))]
    assert len(found) >= 3
    assert sum(documented is not None for _, documented in found) >= 3


@pytest.mark.asyncio
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
async def test_grpcurl_examples_answer_as_documented(page: Path, target: str) -> None:
    text = await asyncio.to_thread(page.read_text, encoding="utf-8")
    for lines, documented in examples(text):
        answers = [(line, await grpcurl(line, target)) for line in lines]  # each runs
        if documented is not None:
            # A page shows the answer to the first call with a request body in its block.
            line, answer = next((line, a) for line, a in answers if " -d " in line)
            assert contains(json.loads(answer), documented), (line, answer)
