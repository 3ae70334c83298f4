"""What every HTTP route shares: its Call and access-log Record, its body, and JSON answers.

The middleware (tfgate.fronts.http.app) opens a Record for every call before routing, with
the front and a deadline ``default_timeout`` away; a route names its method with ``begin``,
which takes the deadline from ``grpc-timeout`` when there is one and the credentials from
``Authorization`` / ``X-API-Key``, and reads its body with
``read_body``, which refuses a body over the limit from its declared length before reading
anything, and otherwise as soon as it passes the limit.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Final, TypeVar

from aiohttp import web

from tfgate import tls
from tfgate.calls import (
    CACHE_CONTROL,
    NO_CREDENTIALS,
    REQUEST_ID,
    Call,
    Credentials,
    Record,
    loggable,
    no_cache,
    request_id,
)
from tfgate.errors import Cancelled, DeadlineExceeded, InvalidArgument
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.tracing import TRACEPARENT, TRACESTATE, Tracing, joined, parent_of, trace_of

RECORD_KEY: Final = web.RequestKey("tfgate.record", Record)
# A deadline as gRPC's grpc-timeout header writes it: up to 8 digits and a unit.
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# 99999999H is a valid header, but a deadline that far overflows gRPC's clock: ten years will do.
_LONGEST: Final = 10 * 365 * 86400.0
_JSON: Final = "application/json"


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def open_record(
    request: web.Request,
    front: str,
    default_timeout: float,
    metrics: Metrics = NO_METRICS,
    tracing: Tracing | None = None,
) -> Record:
    """The Record of a call not yet routed: ``METHOD PATH`` until a route names it; its Call
    has its peer, its request id (the caller's ``x-request-id`` when sane, else a new one) and
    its trace (tfgate.tracing: from ``traceparent`` / ``tracestate``)."""
    method = f"{loggable(request.method)} {loggable(request.path)}"
    headers = request.headers
    rid = request_id(headers.get(REQUEST_ID))
    call = Call(front, method, time.monotonic() + default_timeout, request.remote or "", rid)
    traceparent = headers.get(TRACEPARENT)
    if traceparent is not None or tracing is not None:
        parent = None
        if traceparent is not None:
            parent = parent_of(traceparent, joined(headers.getall(TRACESTATE, ())))
        call.trace = trace_of(tracing, parent, front, method)
    record = Record(call, metrics)
    request[RECORD_KEY] = record
    return record


def begin(request: web.Request, method: str, model: str) -> Record:
    """The routed call's Record (opened by the middleware), with its method and model, and its
    Call: the deadline from ``grpc-timeout`` when the header is there, else the default the
    Record was opened with."""
    record = request[RECORD_KEY]
    record.method = method
    record.model = model or "-"
    call = record.call
    header = request.headers.get("grpc-timeout")
    if header is not None:
        match = _TIMEOUT.match(header.strip())
        if match is None:
            raise InvalidArgument(
                f"grpc-timeout: expected digits and a unit (H, M, S, m, u, n), e.g. 500m; "
                f"got {header[:64]!r}"
            )
        timeout = min(int(match.group(1)) * _UNITS[match.group(2)], _LONGEST)
        call.deadline = time.monotonic() + timeout
    call.method = method
    call.credentials = credentials_of(request)
    call.no_cache = no_cache(request.headers.get(CACHE_CONTROL))
    return record


def credentials_of(request: web.Request) -> Credentials:
    """What the caller presented: ``Authorization`` or ``X-API-Key``; without either, the
    verified client certificate's name, if the connection has one (mutual TLS)."""
    headers = request.headers
    authorization, api_key = headers.get("Authorization", ""), headers.get("X-API-Key", "")
    if authorization or api_key:
        return Credentials(authorization, api_key)
    identity = tls.peer_identity_http(request)
    return NO_CREDENTIALS if identity is None else Credentials(tls_identity=identity)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, up to ``limit`` bytes (the application's client_max_size, which aiohttp
    enforces while reading); a body declared longer is refused before any of it is read, and a
    caller gone mid-body is Cancelled."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
    try:
        body = await request.read()
    except ConnectionResetError:
        raise Cancelled("the client closed the connection while sending its body") from None
    record = request.get(RECORD_KEY)
    if record is not None:
        record.request_bytes = len(body)
    return body


_T = TypeVar("_T")


class Converter:
    """Runs a JSON body's conversion: small ones inline, large ones in a worker thread, at most
    ``at_once`` of those at a time, so that a large body neither stalls the event loop (and
    with it every other call, gRPC included) nor has many copies of its expansion in memory
    at once. A caller waits for its turn only until its deadline."""

    def __init__(self, inline_below: int = 256 * 1024, at_once: int = 2) -> None:
        self._inline_below = inline_below
        self._turns = asyncio.Semaphore(at_once)

    async def __call__(self, convert: Callable[[bytes], _T], body: bytes, call: Call) -> _T:
        if len(body) < self._inline_below:
            return convert(body)
        try:
            async with asyncio.timeout(max(call.deadline - time.monotonic(), 0.0)):
                await self._turns.acquire()
        except TimeoutError:
            raise DeadlineExceeded(
                "the deadline ran out while waiting to convert a large body"
            ) from None
        try:
            return await asyncio.to_thread(convert, body)
        finally:
            self._turns.release()
