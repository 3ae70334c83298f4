"""The HTTP/JSON front: one aiohttp server beside the gRPC one, on the same event loop.

Routes: TF Serving's REST API under ``/v1/`` (tfgate.fronts.http.tfserving), tfgate.v1 as JSON
under ``/tfgate/v1/`` (tfgate.fronts.http.v1), the probes ``/healthz`` and ``/readyz``, and
``/metrics`` unless the admin listener serves it (tfgate.fronts.http.admin).
Every call goes through the request core (tfgate.inference), exactly as a gRPC call does.

``Middleware`` is the one place where exceptions become HTTP answers: TF Serving's routes
answer with TF Serving's status table and ``{"error": ...}``, the rest with
tfgate.fronts.http.errors' table and google.rpc.Status's JSON (tfgate.fronts.http.v1_json).
Unexpected errors answer a generic message and log the traceback. Bodies are read up to
``max_message_bytes`` (tfgate.fronts.http.base.read_body).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from tfgate.calls import REQUEST_ID, Call, Record, loggable
from tfgate.config import Config
from tfgate.errors import (
    INTERNAL_MESSAGE,
    Code,
    GatewayError,
    Unauthenticated,
    bounded,
    code_of,
    retry_after_seconds,
)
from tfgate.fronts.http import admin, errors, tfserving, tfserving_json, v1, v1_json
from tfgate.fronts.http.base import Converter, credentials_of, json_response, open_record
from tfgate.fronts.http.status_page import StatusPage
from tfgate.inference import Inference
from tfgate.metrics import NO_METRICS, Exported, Metrics
from tfgate.tracing import Tracing

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _tf_serving_route(request: web.Request) -> bool:
    return tfserving.PATH.match(request.path) is not None


def _error(
    request: web.Request,
    code: Code,
    message: str,
    status: int | None = None,
    retry_after: float | None = None,
) -> web.Response:
    if _tf_serving_route(request):
        http = status or tfserving_json.TFS_HTTP_STATUS[code.name]
        answer = json_response(tfserving_json.error_body(bounded(message)), http)
    else:
        body = v1_json.error_json(code, bounded(message))
        answer = json_response(body, status or errors.HTTP_STATUS[code])
    answer.headers.update(errors.HEADERS.get(code, {}))
    if retry_after is not None:  # RFC 9110 section 10.2.3: whole seconds
        answer.headers["Retry-After"] = str(retry_after_seconds(retry_after))
    return answer


def _front(request: web.Request) -> str:
    return "tfs-http" if _tf_serving_route(request) else "http"


class Middleware:
    """The one place where exceptions become HTTP answers (see the module docstring), and where
    every call but the probes gets its access-log Record; it also knows the calls in flight,
    which a shutdown lets finish."""

    def __init__(
        self,
        default_timeout: float,
        metrics: Metrics = NO_METRICS,
        tracing: Tracing | None = None,
    ) -> None:
        self._timeout = default_timeout
        self._metrics = metrics
        self._tracing = tracing
        self.in_flight: set[asyncio.Task[object]] = set()
        # Set once the server stops: a call cancelled then did not lose its caller, the
        # server dropped it.
        self.stopping = False

    @web.middleware
    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _NOT_CALLS:
            return await handler(request)
        record = open_record(request, _front(request), self._timeout, self._metrics, self._tracing)
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            return await self._answer(request, handler, record)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _answer(
        self, request: web.Request, handler: Handler, record: Record
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except GatewayError as exc:
            answer = _error(request, exc.code, exc.message, retry_after=exc.retry_after)
            return _finish(record, answer, exc)
        except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, too large
            if exc.status < 400:
                raise
            code = errors.CODE_OF_STATUS.get(exc.status, Code.INVALID_ARGUMENT)
            answer = _error(request, code, exc.text or exc.reason, exc.status)
            if exc.status == 405:
                answer.headers["Allow"] = exc.headers.get("Allow", "")
            return _finish(record, answer, _Refused(code, exc.text or exc.reason))
        except asyncio.CancelledError as exc:  # the client went away (handler_cancellation)
            record.done_with(Code.UNAVAILABLE if self.stopping else code_of(exc))
            raise
        except Exception as exc:
            logger.exception("HTTP %s %s failed", loggable(request.method), loggable(request.path))
            return _finish(record, _error(request, Code.INTERNAL, INTERNAL_MESSAGE), exc)
        return _finish(record, response, None)


def _finish(
    record: Record, answer: web.StreamResponse, exc: BaseException | None
) -> web.StreamResponse:
    """The answer, with the call's id in its ``x-request-id`` header, once the access log has
    its status and size."""
    answer.headers[REQUEST_ID] = record.call.request_id
    record.http_status = answer.status
    if isinstance(answer, web.Response) and isinstance(answer.body, bytes):
        record.response_bytes = len(answer.body)
    record.done(exc)
    return answer


class _Refused(GatewayError):
    """An HTTP status aiohttp answered with, as the code the access log records."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


# The probes and the metrics: open without credentials, and no access-log line.
_NOT_CALLS: Final = frozenset({"/healthz", "/readyz", admin.PATH})


class HttpFront:
    """The HTTP server: ``start`` binds and returns the port, ``stop`` drains and closes."""

    def __init__(
        self,
        inference: Inference,
        config: Config,
        ready: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
        *,
        metrics: Metrics = NO_METRICS,
        status_page: StatusPage | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``ssl_context``: TLS only, with this context (tfgate.tls loads new certificates
        into it in place). ``metrics``: told of every call; served at /metrics unless
        ``admin_listen`` is set. ``status_page``: served at ``/``. ``tracing``: traces every
        call, when on."""
        self._config = config
        self._inference = inference
        self._ssl = ssl_context
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self._middleware = Middleware(config.default_timeout, metrics, tracing)
        self.app = web.Application(
            middlewares=[self._middleware.handle], client_max_size=config.max_message_bytes
        )
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        if isinstance(metrics, Exported) and not config.admin_listen:
            admin.add_metrics(self.app.router, metrics)
        limit, convert = config.max_message_bytes, Converter()
        tfserving.TfServingRoutes(inference, limit, convert).add_to(self.app.router)
        v1.V1Routes(inference, limit, convert).add_to(self.app.router)
        if status_page is not None:
            status_page.add_to(self.app.router)

    async def _refused(self, request: web.Request) -> web.Response | None:
        """With ``[auth] open`` leaving out the probes, the 401 a caller without valid
        credentials gets; else None."""
        gate = self._inference.gate
        if not gate.closed("probes"):
            return None
        call = Call("http", request.path, time.monotonic(), credentials=credentials_of(request))
        try:
            await gate.authenticate(call)
        except Unauthenticated as exc:
            return _error(request, exc.code, exc.message)
        return None

    async def _healthz(self, request: web.Request) -> web.Response:
        refused = await self._refused(request)
        return refused or json_response(b'{"status":"ok"}')

    async def _readyz(self, request: web.Request) -> web.Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        # With [limits] redis: whether the limits are shared now, or counted here alone. Never
        # a reason to be unready: a Redis that is down fails no call.
        shared = self._inference.gate.shared
        note = b""
        if shared is not None:
            note = b',"rate_limits":"shared"' if shared.shared else b',"rate_limits":"local"'
        if self._ready():
            return json_response(b'{"status":"ready"' + note + b"}")
        return json_response(b'{"status":"not ready"' + note + b"}", 503)

    async def start(self) -> int:
        host, _, port = self._config.http_listen.rpartition(":")
        host = host.strip("[]")
        # tfgate writes its own access log (tfgate.calls), one line per call on every front.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            # A call whose client went away is cancelled, and with it its backend call.
            handler_cancellation=True,
            # stop() has let in-flight calls finish, within its grace, before the runner closes.
            shutdown_timeout=0.1,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            None if host in ("", "*") else host,
            int(port),
            reuse_port=False,
            ssl_context=self._ssl,
        )
        await site.start()
        self._site = site
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self, grace: float) -> None:
        """Stops accepting, lets in-flight calls finish within ``grace`` seconds, closes."""
        if self._runner is None:
            return
        self._middleware.stopping = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        pending = set(self._middleware.in_flight)
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
        await self._runner.cleanup()
        self._runner = None
