"""A small HTTP client for tests of tfgate's HTTP front (aiohttp's, on 127.0.0.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tests.conftest import Running, StartGateway


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


async def start_http(start_gateway: StartGateway, backend: str, **settings: Any) -> Running:
    """tfgate with its HTTP front on 127.0.0.1:0, in front of ``backend``."""
    return await start_gateway(backend, http_listen="127.0.0.1:0", **settings)


def base_url(gw: Running) -> str:
    return f"http://127.0.0.1:{gw.gateway.http_port}"


async def call(
    gw: Running,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    data = body.encode() if isinstance(body, str) else body
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base_url(gw) + path, data=data, headers=headers) as response,
    ):
        return Answer(response.status, await response.read(), dict(response.headers))
