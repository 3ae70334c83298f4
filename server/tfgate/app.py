"""Wiring and lifecycle: the gRPC server, its services, the health monitor, graceful shutdown.

Shutdown drains before it stops: grpc.aio's ``server.stop(grace)`` closes the listeners at once,
so health checks would be refused and ``NOT_SERVING`` never seen. Instead tfgate keeps serving
while it drains: health answers ``NOT_SERVING``, new calls to tfgate's services are refused with
``UNAVAILABLE`` (tfgate.fronts.drain), and the calls in flight get the grace period; those still
running then are cancelled together, reported in one log line, and only then does the server
stop.

Metrics (tfgate.metrics) are served at ``/metrics`` on ``admin_listen`` when it is set, a
listener of its own (tfgate.fronts.http.admin), else on ``http_listen``.

With ``tls_cert`` set, both listeners speak TLS only (tfgate.tls); their certificates are
re-read when the files change and on SIGHUP (``Gateway.reload``), without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tfgate import batcher, cache
from tfgate.backends.upstream import Upstream
from tfgate.calls import Call
from tfgate.catalog import Catalog
from tfgate.config import Config, ConfigError
from tfgate.fronts import passthrough
from tfgate.fronts.drain import Drain
from tfgate.fronts.grpc import SERVICE_NAME, ClosedServices, InferenceServicer, Limits
from tfgate.fronts.passthrough import PassThrough
from tfgate.inference import Inference
from tfgate.metrics import Exported, metrics_for
from tfgate.plans.plan import Plans
from tfgate.policy.config import PolicyError
from tfgate.policy.gate import Gate
from tfgate.status import Window
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2
from tfgate.tls import Certificates
from tfgate.tracing import Tracing, tracing_for
from tfgate.translate import Selector

if TYPE_CHECKING:
    from tfgate.fronts.http.admin import AdminFront
    from tfgate.fronts.http.app import HttpFront
    from tfgate.fronts.http.status_page import StatusPage
    from tfgate.status_view import Overview

logger = logging.getLogger(__name__)

# Seconds /readyz answers 503 before the listeners close, at most; never more than the grace.
_READINESS_DRAIN = 1.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(config: Config) -> list[tuple[str, int]]:
    """The gRPC server's settings.

    ``max_streams_per_connection`` calls at once per HTTP/2 connection; a client's further
    calls wait in its own channel. Overload protection is off: it would also count streams the
    client has finished but the server has not yet freed (grpc.aio frees them only as Python gets
    to them), so an honest client sending calls as fast as earlier ones finish would get
    RST_STREAM(REFUSED_STREAM), which grpc's clients report as UNAVAILABLE, not the
    RESOURCE_EXHAUSTED of tfgate's shedding.

    grpc's core holds calls that have arrived but that tfgate's event loop has not yet taken in;
    past ``max_pending_requests`` it cancels new ones at random, past the hard limit all of them.
    These bound what an HTTP/2 rapid reset (HEADERS then RST_STREAM, again and again, on one
    connection) makes grpc allocate: with overload protection off every reset stream becomes a
    call in this backlog, and grpc's defaults (1,000 and 3,000) let one connection grow tfgate's
    memory by tens of MB. Twice one connection's streams: an honest client never fills it alone.
    """
    pending = 2 * config.max_streams_per_connection
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # A second tfgate on a taken port must fail, not share it silently.
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
        ("grpc.http.overload_protection", 0),
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * pending),
    ]


class ListenError(OSError):
    """A listener could not be opened (its address is taken or invalid); the message names it."""


def _listen_failed(exc: BaseException, address: str, setting: str) -> None:
    """Raises ListenError naming ``setting`` when ``exc`` is the OSError of a failed bind."""
    if isinstance(exc, OSError):
        reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"cannot listen on {address} ({setting}): {reason or exc}") from None


def _check_free(address: str, setting: str) -> None:
    """Raises ListenError if ``address`` (HOST:PORT) is taken; grpc would only say it failed."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if int(port) == 0 or host in ("", "*"):
        return
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return  # grpc reports an unknown host itself
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ListenError(f"cannot listen on {address} ({setting}): {reason}") from None


class Gateway:
    """One tfgate server. ``start`` binds and returns the port; ``stop`` drains and closes."""

    def __init__(
        self,
        config: Config,
        plans: Plans | None = None,
        reread: Callable[[], Config] | None = None,
        *,
        tracing: Tracing | None = None,
        caches: Mapping[str, cache.CacheConfig] | None = None,
        batching: Mapping[str, batcher.BatchingConfig] | None = None,
    ) -> None:
        """``tracing``: the gateway's tracer instead of the one ``config`` asks for (tests give
        one with an exporter of their own). ``caches``, ``batching``: the config file's
        [models.NAME.cache] and [models.NAME.batching] tables."""
        self.config = config
        # How a SIGHUP gets the settings again (the config file read anew), if it can.
        self._reread = reread
        self._reloading: asyncio.Task[None] | None = None
        # Its keys file first: it may be refused.
        gate = Gate.from_config(config.policy, limits=config.limits)
        # Read (and checked) before anything opens: a bad certificate stops tfgate at once.
        self.certificates = Certificates(config) if config.tls_cert else None
        self.metrics = metrics_for(config)
        # Traces (tfgate.tracing): None, and OpenTelemetry not even imported, unless configured.
        self.tracing = tracing if tracing is not None else tracing_for(config)
        self.upstream = Upstream(config, self.metrics)
        self.catalog = Catalog(self._metadata, config.metadata_ttl)
        self.inference = Inference(
            self.upstream,
            self.catalog,
            plans or Plans(),
            config.max_tensor_elements,
            gate,
            metrics=self.metrics,
            caches=cache.caches(caches or {}, self.metrics),
            batchers=batcher.batchers(
                batching or {},
                self.upstream.predict,
                config.max_tensor_elements,
                config.max_message_bytes,
                self.metrics,
                # Each client's calls take slots of its own share: batched on their own.
                per_client=config.limits.client_share < 1.0,
            ),
        )
        # Each health_models entry: whether some version of it is AVAILABLE.
        self.models_available: dict[str, bool] = {}
        self.metrics.watch(self.upstream, self.models_available, gate.shared)
        self.health = health.aio.HealthServicer()
        self.backend_up = False
        closed = [name for name in ("health", "reflection") if gate.closed(name)]
        interceptors = (
            [ClosedServices(lambda: self.inference.gate, tuple(closed))] if closed else []
        )
        self._server = grpc.aio.server(options=server_options(config), interceptors=interceptors)
        self.drain = Drain(self.metrics)
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self.port = 0
        self.http: HttpFront | None = None
        self.http_port = 0
        self.admin: AdminFront | None = None
        self.admin_port = 0
        self.window = Window()  # the status page's (tfgate.status), fed while a listener shows it

    async def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata for the catalog; a model it answers for is one TF Serving knows."""
        answer = await self.upstream.get_model_metadata(request, call)
        self.metrics.knows(request.model_spec.name)
        return answer

    async def start(self) -> int:
        # A [models.NAME] section that does not fit its model stops tfgate before it serves.
        call = Call("start", "check", time.monotonic() + min(self.config.default_timeout, 10.0))
        try:
            await self.inference.plans.check(lambda m: self.catalog.metadata(Selector(m), call))
        except BaseException:
            await self.upstream.close()
            raise
        limits = Limits(
            self.config.default_timeout,
            self.config.max_message_bytes,
            lambda: self._stopping,
            peer_identity=self.config.policy.tls_identity,
            metrics=self.metrics,
            tracing=self.tracing,
        )
        service = InferenceServicer(self.inference, limits)
        self._server.add_generic_rpc_handlers((self.drain.wrap("grpc", service.handler()),))
        names = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if self.config.tf_serving_api:
            forwarded = PassThrough(self.inference, limits)
            self._server.add_generic_rpc_handlers(
                [self.drain.wrap("tfs-grpc", h) for h in forwarded.handlers()]
            )
            names += passthrough.METHODS
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(names, self._server)
        await self._listen_grpc()
        await self._set_health(False)
        await self._server.start()
        if self.config.http_listen:
            from tfgate.fronts.http.app import HttpFront  # aiohttp: only when HTTP is on

            context = None if self.certificates is None else self.certificates.http_context()
            # The status page goes where the metrics go: admin_listen when set.
            page = None if self.config.admin_listen else self._status_page(admin=False)
            self.http = HttpFront(
                self.inference,
                self.config,
                self.ready,
                context,
                metrics=self.metrics,
                status_page=page,
                tracing=self.tracing,
            )
            try:
                self.http_port = await self.http.start()
            except BaseException as exc:
                await self._server.stop(0)
                await self.upstream.close()
                _listen_failed(exc, self.config.http_listen, "http_listen")
                raise
        if self.config.admin_listen:
            await self._start_admin()
        await self.inference.gate.start()  # a JWKS URL's keys, before the first token comes
        self._monitor = asyncio.create_task(self._watch_backend())
        if self.certificates is not None:
            self.certificates.start_watching()
        return self.port

    async def _start_admin(self) -> None:
        from tfgate.fronts.http.admin import AdminFront  # aiohttp: only when a listener is on

        metrics = self.metrics if isinstance(self.metrics, Exported) else None
        self.admin = AdminFront(self.config.admin_listen, metrics, self._status_page(admin=True))
        try:
            self.admin_port = await self.admin.start()
        except BaseException as exc:
            await self._server.stop(0)
            if self.http is not None:
                await self.http.stop(0)
            await self.upstream.close()
            _listen_failed(exc, self.config.admin_listen, "admin_listen")
            raise

    def _status_page(self, admin: bool) -> StatusPage:
        """The page at ``/``, and the window of calls it shows, fed from now on by every call
        that ends. On ``admin_listen`` (``admin``), the operators' listener, it is shown with
        [auth] on too, and without its Predict form (that listener serves no API); on
        ``http_listen`` it is refused while [auth] is on."""
        from tfgate.fronts.http.status_page import StatusPage
        from tfgate.status_view import overview

        self.window = Window([*self.inference.plans.configured, *self.config.health_models])
        self.metrics.observers = (self.window.observe,)
        window = self.window

        def gather() -> Awaitable[Overview]:
            return overview(self.config, self.upstream, self.inference, window, self.ready())

        if admin:
            return StatusPage(gather, lambda: True, form=False)
        return StatusPage(gather, lambda: not self.config.policy.enabled)

    async def _listen_grpc(self) -> None:
        """Binds the gRPC listener (TLS when a certificate is set); ListenError if it cannot."""
        try:
            _check_free(self.config.listen, "listen")  # before grpc, which logs its own line
        except ListenError:
            await self.upstream.close()
            raise
        try:
            if self.certificates is not None:
                credentials = self.certificates.grpc_credentials()
                self.port = self._server.add_secure_port(self.config.listen, credentials)
            else:
                self.port = self._server.add_insecure_port(self.config.listen)
        except RuntimeError:  # grpc's "Failed to bind to address ..."
            self.port = 0
        if not self.port:
            await self.upstream.close()
            raise ListenError(
                f"cannot listen on {self.config.listen} (listen): address in use or not local"
            )

    def reload(self) -> asyncio.Task[None] | None:
        """Re-reads what may change without a restart (SIGHUP): the TLS certificates; and, when
        the gateway knows how to read its settings again, the keys, clients, JWT keys and rate
        limits (``reload_policy``, in a task of its own, returned)."""
        if self.certificates is not None:
            self.certificates.reload()
        if self._reread is None or self._stopping:
            return None
        previous = self._reloading
        self._reloading = asyncio.get_running_loop().create_task(self._reload_after(previous))
        return self._reloading

    async def _reload_after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:  # one reload at a time, in the order of the signals
            await asyncio.gather(previous, return_exceptions=True)
        await self.reload_policy()

    async def reload_policy(self) -> None:
        """Reads the settings again and puts the new keys, clients and limits in force for the
        calls that come next; calls in flight finish under the gate they began with. Settings
        that do not validate are refused with one warning, and the previous ones stay."""
        assert self._reread is not None
        try:
            fresh = self._reread()
            gate = Gate.from_config(fresh.policy, limits=fresh.limits)
            await gate.start()
        except (ConfigError, PolicyError, OSError, ValueError) as exc:
            logger.warning("reload refused, the previous settings stay in force: %s", exc)
            return
        old, self.inference.gate = self.inference.gate, gate
        later = restart_only(self.config, fresh)
        self.config = dataclasses.replace(self.config, policy=fresh.policy, limits=fresh.limits)
        logger.info(
            "reload: keys, clients and limits read again (%d clients)", len(fresh.policy.clients)
        )
        if later:
            logger.warning(
                "reload: %s changed; that takes effect at a restart", ", ".join(sorted(later))
            )
        await old.close()

    def ready(self) -> bool:
        """Whether tfgate should get traffic: TF Serving answers and no shutdown has begun."""
        return self.backend_up and not self._stopping

    async def _set_health(self, up: bool) -> None:
        status = _SERVING if up else _NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_backend(self) -> None:
        """Health says SERVING only while TF Serving answers (and, per model, while available)."""
        interval = self.config.health_interval
        within = min(interval, 1.0)
        models = self.models_available
        while True:
            up = await self.upstream.probe(within)
            if up != self.backend_up:
                logger.info("backend %s is %s", self.upstream.target, "up" if up else "DOWN")
                self.backend_up = up
                await self._set_health(up)
            for model in self.config.health_models:
                available = up and await self.upstream.model_available(model, within)
                if models.get(model) != available:
                    logger.info(
                        "model %s is %s", model, "available" if available else "UNAVAILABLE"
                    )
                    models[model] = available
                    await self.health.set(f"model:{model}", _SERVING if available else _NOT_SERVING)
            await asyncio.sleep(interval)

    async def stop(self, grace: float | None = None) -> None:
        """Turns NOT_SERVING and refuses new calls, while health keeps answering; lets in-flight
        calls finish within grace, cancels the rest (one log line), then closes."""
        self._stopping = True
        if self._reloading is not None:
            await asyncio.gather(self._reloading, return_exceptions=True)
        self.drain.begin()
        await self.health.enter_graceful_shutdown()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self.certificates is not None:
            await self.certificates.stop_watching()
        grace = self.config.grace_period if grace is None else grace
        stops = [self._stop_grpc(grace)]
        if self.http is not None:
            stops.append(self._stop_http(self.http, grace))
        await asyncio.gather(*stops)
        if self.admin is not None:  # last: the drain can be watched to its end
            await self.admin.stop()
        await self.inference.gate.close()
        await self.upstream.close()
        if self.tracing is not None:  # last: the spans of the calls drained above go too
            await self.tracing.close()

    async def _stop_grpc(self, grace: float) -> None:
        if not await self.drain.wait_idle(grace) and self.drain.open:
            logger.warning(
                "shutdown: %d calls still running after the %.1f s grace period are cancelled",
                self.drain.open,
                grace,
            )
        await self._server.stop(0)

    @staticmethod
    async def _stop_http(http: HttpFront, grace: float) -> None:
        if grace > 0:
            # /readyz answers 503 a moment before the listener closes, so that a load balancer
            # polling it stops sending calls first.
            await asyncio.sleep(min(grace, _READINESS_DRAIN))
        await http.stop(grace)


def restart_only(old: Config, new: Config) -> list[str]:
    """The settings a reload does not apply that ``new`` changes: every one but the keys,
    clients and rate limits (of which the fair share and tls_identity need a restart too)."""
    changed = [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in ("policy", "limits") and getattr(old, f.name) != getattr(new, f.name)
    ]
    if old.limits.client_share != new.limits.client_share:
        changed.append("limits.client_share")
    if old.policy.tls_identity != new.policy.tls_identity:
        changed.append("auth.tls_identity")
    grpc_open = {"health", "reflection"}
    if set(old.policy.open) & grpc_open != set(new.policy.open) & grpc_open:
        changed.append("auth.open (health, reflection)")
    return changed


async def serve(
    config: Config,
    plans: Plans | None = None,
    reread: Callable[[], Config] | None = None,
    caches: Mapping[str, cache.CacheConfig] | None = None,
    batching: Mapping[str, batcher.BatchingConfig] | None = None,
) -> int:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully; returns the exit status.
    SIGHUP re-reads the certificates and, with ``reread``, the keys, clients and limits."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    gateway = Gateway(config, plans, reread, caches=caches, batching=batching)
    port = await gateway.start()
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    host = config.listen.rsplit(":", 1)[0]
    print(f"tfgate listening on {host}:{port} (backend {config.backend})", flush=True)
    if gateway.http is not None:
        http_host = config.http_listen.rsplit(":", 1)[0]
        print(f"tfgate HTTP on {http_host}:{gateway.http_port}", flush=True)
    if gateway.admin is not None:
        base = f"http://{config.admin_listen.rsplit(':', 1)[0]}:{gateway.admin_port}"
    elif gateway.http is not None:
        scheme = "https" if config.tls_cert else "http"
        base = f"{scheme}://{http_host}:{gateway.http_port}"
    else:
        base = ""
    if base:
        if config.metrics:
            print(f"tfgate metrics on {base}/metrics", flush=True)
        print(f"tfgate status page on {base}/", flush=True)
    await stopping.wait()
    logger.info("shutting down; in-flight calls get %.1f s", config.grace_period)
    await gateway.stop()
    return 0
