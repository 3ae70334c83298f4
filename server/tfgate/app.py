"""Wiring and lifecycle: the gRPC server, its services, the health monitor, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tfgate.backends.upstream import Upstream
from tfgate.calls import Call
from tfgate.catalog import Catalog
from tfgate.config import Config
from tfgate.fronts import passthrough
from tfgate.fronts.grpc import SERVICE_NAME, InferenceServicer, Limits
from tfgate.fronts.passthrough import PassThrough
from tfgate.inference import Inference
from tfgate.plans.plan import Plans
from tfgate.translate import Selector

if TYPE_CHECKING:
    from tfgate.fronts.http.app import HttpFront

logger = logging.getLogger(__name__)

# Seconds /readyz answers 503 before the listeners close, at most; never more than the grace.
_READINESS_DRAIN = 1.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Gateway:
    """One tfgate server. ``start`` binds and returns the port; ``stop`` drains and closes."""

    def __init__(self, config: Config, plans: Plans | None = None) -> None:
        self.config = config
        self.upstream = Upstream(config)
        self.catalog = Catalog(self.upstream.get_model_metadata, config.metadata_ttl)
        self.inference = Inference(
            self.upstream, self.catalog, plans or Plans(), config.max_tensor_elements
        )
        self.health = health.aio.HealthServicer()
        self.backend_up = False
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # A second tfgate on a taken port must fail, not share it silently.
                ("grpc.so_reuseport", 0),
            ]
        )
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self.port = 0
        self.http: HttpFront | None = None
        self.http_port = 0

    async def start(self) -> int:
        # A [models.NAME] section that does not fit its model stops tfgate before it serves.
        call = Call("start", "check", time.monotonic() + min(self.config.default_timeout, 10.0))
        try:
            await self.inference.plans.check(lambda m: self.catalog.metadata(Selector(m), call))
        except BaseException:
            await self.upstream.close()
            raise
        limits = Limits(
            self.config.default_timeout, self.config.max_message_bytes, lambda: self._stopping
        )
        service = InferenceServicer(self.inference, limits)
        self._server.add_generic_rpc_handlers((service.handler(),))
        names = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if self.config.tf_serving_api:
            forwarded = PassThrough(self.inference, limits)
            self._server.add_generic_rpc_handlers(forwarded.handlers())
            names += passthrough.METHODS
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(names, self._server)
        self.port = self._server.add_insecure_port(self.config.listen)
        if not self.port:
            raise OSError(f"cannot listen on {self.config.listen}")
        await self._set_health(False)
        await self._server.start()
        if self.config.http_listen:
            from tfgate.fronts.http.app import HttpFront  # aiohttp: only when HTTP is on

            self.http = HttpFront(self.inference, self.config, self.ready)
            try:
                self.http_port = await self.http.start()
            except BaseException:
                await self._server.stop(0)
                await self.upstream.close()
                raise
        self._monitor = asyncio.create_task(self._watch_backend())
        return self.port

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
        models: dict[str, bool] = {}
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
        """Turns NOT_SERVING, stops accepting calls, lets in-flight ones finish within grace."""
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        grace = self.config.grace_period if grace is None else grace
        if self.http is not None and grace > 0:
            # /readyz answers 503 a moment before the listeners close, so that a load balancer
            # polling it stops sending calls first.
            await asyncio.sleep(min(grace, _READINESS_DRAIN))
        stops = [self._server.stop(grace)]
        if self.http is not None:
            stops.append(self.http.stop(grace))
        await asyncio.gather(*stops)
        await self.upstream.close()


async def serve(config: Config, plans: Plans | None = None) -> int:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully; returns the exit status."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    gateway = Gateway(config, plans)
    port = await gateway.start()
    host = config.listen.rsplit(":", 1)[0]
    print(f"tfgate listening on {host}:{port} (backend {config.backend})", flush=True)
    if gateway.http is not None:
        http_host = config.http_listen.rsplit(":", 1)[0]
        print(f"tfgate HTTP on {http_host}:{gateway.http_port}", flush=True)
    await stopping.wait()
    logger.info("shutting down; in-flight calls get %.1f s", config.grace_period)
    await gateway.stop()
    return 0
