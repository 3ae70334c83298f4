"""What an operator reads, not a caller: ``GET /metrics`` (tfgate.metrics), in Prometheus' text
format, and the status page at ``/`` (tfgate.fronts.http.status_page).

They are served on ``admin_listen`` when that is set, a listener of its own that serves nothing
else, so that they can stay off the public port; else on ``http_listen`` beside the API. Like
the probes, they ask for no credentials and are not calls: no access-log line, not counted.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from tfgate.fronts.http.status_page import StatusPage
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
    Without ``metrics`` (``metrics = false``) it serves the status page alone."""

    def __init__(
        self, listen: str, metrics: Exported | None, status_page: StatusPage | None = None
    ) -> None:
        self._listen = listen
        self.app = web.Application()
        if metrics is not None:
            add_metrics(self.app.router, metrics)
        if status_page is not None:
            status_page.add_to(self.app.router)
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
