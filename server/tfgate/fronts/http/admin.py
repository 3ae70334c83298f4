"""What an operator reads, not a caller: ``GET /metrics`` (tfgate.metrics), in Prometheus' text
format.

It is served on ``admin_listen`` when that is set, a listener of its own that serves nothing
else, so that the metrics can stay off the public port; else on ``http_listen`` beside the API.
Like the probes, it asks for no credentials and is not a call: no access-log line, not counted.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from tfgate.metrics import CONTENT_TYPE, Exported

PATH: Final = "/metrics"


def add_metrics(router: web.UrlDispatcher, metrics: Exported) -> None:
    async def scrape(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    router.add_get(PATH, scrape)


class AdminFront:
    """The admin listener: ``start`` binds ``listen`` (HOST:PORT) and returns the port.
    Without ``metrics`` (``metrics = false``) it serves nothing yet."""

    def __init__(self, listen: str, metrics: Exported | None) -> None:
        self._listen = listen
        self.app = web.Application()
        if metrics is not None:
            add_metrics(self.app.router, metrics)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        host, _, port = self._listen.rpartition(":")
        host = host.strip("[]")
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, None if host in ("", "*") else host, int(port), reuse_port=False
        )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
