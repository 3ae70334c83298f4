"""Draining the gRPC server: tfgate's own services count their calls in flight and, once a
shutdown has begun, refuse new ones with ``UNAVAILABLE`` while the listener stays open.

Health and reflection are not wrapped, so that a health check sees ``NOT_SERVING`` during the
drain rather than a refused connection (tfgate.app stops the server only after it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import grpc

from tfgate.calls import Call, Record
from tfgate.errors import Unavailable
from tfgate.fronts.grpc import id_trailer, metadata_of
from tfgate.metrics import NO_METRICS, Metrics

SHUTTING_DOWN: Final = "tfgate is shutting down; send the call to another instance"

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class Drain:
    """Counts the calls tfgate's own services are running and, once draining, refuses new ones.

    Health and reflection are not wrapped: they keep answering while tfgate drains.
    """

    def __init__(self, metrics: Metrics = NO_METRICS) -> None:
        self.metrics = metrics
        self.open = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def wrap(self, front: str, generic: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
        return _Drained(self, front, generic)

    def begin(self) -> None:
        self.draining = True

    async def wait_idle(self, within: float) -> bool:
        """Whether every call in flight finished within ``within`` seconds."""
        try:
            async with asyncio.timeout(max(within, 0.0)):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def counted(self, front: str, method: str, behavior: Behavior) -> Behavior:
        name = method if front == "tfs-grpc" else method.rsplit("/", 1)[-1]

        async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if self.draining:
                credentials, rid = metadata_of(context)
                call = Call(front, name, time.monotonic(), context.peer() or "", rid, credentials)
                record = Record(call, self.metrics)
                record.request_bytes = len(request) if isinstance(request, bytes) else 0
                record.done(Unavailable(SHUTTING_DOWN))
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, id_trailer(call))
            self.open += 1
            self._idle.clear()
            try:
                return await behavior(request, context)
            finally:
                self.open -= 1
                if not self.open:
                    self._idle.set()

        return run


class _Drained(grpc.GenericRpcHandler):
    """A generic handler whose unary methods go through ``Drain.counted``."""

    def __init__(self, drain: Drain, front: str, inner: grpc.GenericRpcHandler) -> None:
        self._drain = drain
        self._front = front
        self._inner = inner
        self._cache: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        try:
            return self._cache[method]
        except KeyError:
            pass
        found = self._inner.service(handler_call_details)
        if found is None:
            return None  # not cached: a caller can name any number of unknown methods
        if found.unary_unary is not None:
            behavior = self._drain.counted(self._front, method, cast(Behavior, found.unary_unary))
            found = found._replace(unary_unary=behavior)  # type: ignore[attr-defined]
        self._cache[method] = found
        return found
