"""Fetching a JWKS document over HTTP with aiohttp: the one place the JWT verifier meets a network.

tfgate.policy.jwt takes any ``JwksFetch``; this is the one it uses for ``jwks_url``. Kept apart so
that the policies, which the request core imports, load no transport.
"""

from __future__ import annotations

from typing import Final

import aiohttp

FETCH_TIMEOUT: Final = 5.0
MAX_JWKS_BYTES: Final = 1 << 20


class HttpFetch:
    """GETs a URL with a timeout and a size limit, on one lazily made aiohttp session."""

    def __init__(self, timeout: float = FETCH_TIMEOUT, limit: int = MAX_JWKS_BYTES) -> None:
        self._timeout = timeout
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> bytes:
        """The body of a 200 answer; ConnectionError, TimeoutError or ValueError otherwise."""
        if self._session is None:  # made here, inside the running loop
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > self._limit:
                        raise ValueError(f"more than {self._limit} bytes")
        except aiohttp.ClientError as exc:
            # aiohttp's exceptions stay here; the verifier sees the standard library's.
            raise ConnectionError(str(exc) or type(exc).__name__) from None
        return bytes(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
