"""The gRPC front: tfgate.v1.InferenceService, and the one place where errors become statuses.

Requests arrive as bytes; ``rpc`` parses them, builds the ``Call``, runs the handler inside the
access log (tfgate.calls.Record) and turns every exception into a status through ``STATUS``.
The servicer only translates tfgate.v1 to the request core (tfgate.inference) and back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeAlias, TypeVar, cast

import grpc
from google.protobuf.message import Message

from tfgate import tls, translate
from tfgate.calls import (
    CACHE_CONTROL,
    NO_CREDENTIALS,
    REQUEST_ID,
    Call,
    Credentials,
    Record,
    no_cache,
    request_id,
)
from tfgate.domain import Predict
from tfgate.errors import (
    INTERNAL_MESSAGE,
    Code,
    GatewayError,
    ResourceExhausted,
    Unauthenticated,
    bounded,
    retry_after_ms,
    retry_after_seconds,
)
from tfgate.fronts.v1 import parser, predict_of
from tfgate.inference import Inference
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.policy.gate import Gate
from tfgate.tracing import TRACEPARENT, TRACESTATE, Tracing, joined, parent_of, trace_of
from tfgate.v1 import inference_pb2

logger = logging.getLogger(__name__)

SERVICE_NAME: Final = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name

# Each code as a gRPC status: the same names. tests/test_fronts_grpc.py checks it is complete.
STATUS: Final[dict[Code, grpc.StatusCode]] = {code: grpc.StatusCode[code.name] for code in Code}

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[_Req, Call, Record], Awaitable[_Resp]]
RawHandler = Callable[[bytes, Context], Awaitable[_Resp]]


class _Read(NamedTuple):
    """What tfgate reads of a call's metadata (empty or None when absent)."""

    authorization: str
    api_key: str
    request_id: str | None
    traceparent: str | None
    tracestate: str | None  # several entries joined, as W3C reads them
    no_cache: bool  # cache-control: no-cache (tfgate.cache)


def _read(metadata: Iterable[tuple[str, str | bytes]] | None) -> _Read:
    """``authorization``, ``x-api-key``, ``x-request-id``, ``traceparent``, ``tracestate`` and
    ``cache-control`` in a call's metadata, in one pass."""
    authorization = api_key = ""
    given: str | None = None
    traceparent: str | None = None
    tracestate: list[str] = []
    fresh = False
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == "authorization":
            authorization = value
        elif key == "x-api-key":
            api_key = value
        elif key == REQUEST_ID:
            given = value
        elif key == TRACEPARENT:
            traceparent = value
        elif key == TRACESTATE:
            tracestate.append(value)
        elif key == CACHE_CONTROL:
            fresh = fresh or no_cache(value)
    return _Read(authorization, api_key, given, traceparent, joined(tracestate), fresh)


def _credentials(read: _Read, context: Context, peer_identity: bool) -> Credentials:
    if read.authorization or read.api_key:
        return Credentials(read.authorization, read.api_key)
    identity = tls.peer_identity_grpc(context) if peer_identity else None
    return NO_CREDENTIALS if identity is None else Credentials(tls_identity=identity)


def metadata_of(context: Context, peer_identity: bool = False) -> tuple[Credentials, str]:
    """The call's credentials and its request id (the caller's ``x-request-id`` when sane, else
    a new one), in one pass over its metadata; with ``peer_identity``, a caller that sent no
    token is its verified client certificate's name."""
    read = _read(context.invocation_metadata())
    return _credentials(read, context, peer_identity), request_id(read.request_id)


def call_of(context: Context, front: str, method: str, limits: Limits) -> Call:
    """The Call for a gRPC call: its deadline, else the default timeout from now; its peer,
    credentials, request id and trace (tfgate.tracing)."""
    # grpc.aio answers None when the caller set no deadline, whatever its stubs say.
    remaining = cast(float | None, context.time_remaining())
    deadline = time.monotonic() + (limits.default_timeout if remaining is None else remaining)
    read = _read(context.invocation_metadata())
    credentials = _credentials(read, context, limits.peer_identity)
    rid = request_id(read.request_id)
    call = Call(front, method, deadline, context.peer() or "", rid, credentials)
    call.no_cache = read.no_cache
    parent = None if read.traceparent is None else parent_of(read.traceparent, read.tracestate)
    if parent is not None or limits.tracing is not None:
        call.trace = trace_of(limits.tracing, parent, front, method)
    return call


def id_trailer(call: Call) -> tuple[tuple[str, str], ...]:
    """The call's id, returned to its caller in the trailing metadata of the answer or of the
    error. Not in the initial metadata: a gRPC client that has received headers has committed
    the call and no longer retries it, so that a refusal sent after them would never be retried
    (nor its ``grpc-retry-pushback-ms`` obeyed)."""
    return ((REQUEST_ID, call.request_id),)


@dataclass(frozen=True)
class Limits:
    """What the gRPC server is set to, as the handlers must know it: the deadline of a call
    without one, the largest answer grpc sends (its max_send_message_length), and whether the
    server is stopping (a call cancelled then is answered UNAVAILABLE by grpc)."""

    default_timeout: float
    max_send: int = 2**31 - 1
    stopping: Callable[[], bool] = lambda: False
    # Read each caller's client certificate (mutual TLS with [auth] tls_identity): the gate
    # may need it; else not even looked at.
    peer_identity: bool = False
    # Told of every call, through its Record.
    metrics: Metrics = NO_METRICS
    # Traces every call, when on (tfgate.tracing).
    tracing: Tracing | None = None


def trailers_of(exc: GatewayError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata a refusal carries: when to retry, if the error knows
    (``retry-after`` in whole seconds, as HTTP's header; ``grpc-retry-pushback-ms``, which a
    gRPC client with a retry policy waits before its next attempt)."""
    if exc.retry_after is None:
        return ()
    return (
        ("retry-after", str(retry_after_seconds(exc.retry_after))),
        ("grpc-retry-pushback-ms", str(retry_after_ms(exc.retry_after))),
    )


def _size(response: object) -> int:
    return len(response) if isinstance(response, bytes) else cast(Message, response).ByteSize()


def _cancelled_code(context: Context, limits: Limits) -> Code:
    """What the caller of a call grpc cancelled received: its deadline passed, the server
    stopped, or the caller went away."""
    remaining = cast(float | None, context.time_remaining())
    if remaining is not None and remaining <= 0.001:
        return Code.DEADLINE_EXCEEDED
    if limits.stopping():
        return Code.UNAVAILABLE
    return Code.CANCELLED


def rpc(
    front: str, method: str, parse: Callable[[bytes], _Req], limits: Limits
) -> Callable[[Handler[_Req, _Resp]], RawHandler[_Resp]]:
    """Wraps a handler ``fn(request, call, record)``: the one place where errors become statuses.

    The wrapped handler takes the request's bytes and ``parse`` turns them into its argument;
    the handler sets ``record.model`` / ``record.version`` for the access log, which records
    the code the caller gets. Messages are cut to tfgate.errors.MAX_MESSAGE_BYTES, which any
    grpc-message header holds.
    """

    def decorate(fn: Handler[_Req, _Resp]) -> RawHandler[_Resp]:
        async def wrapper(data: bytes, context: Context) -> _Resp:
            call = call_of(context, front, method, limits)
            record = Record(call, limits.metrics)
            record.request_bytes = len(data)
            try:
                response = await fn(parse(data), call, record)
                size = _size(response)
                if size > limits.max_send:
                    # grpc would refuse to send it after the log said OK: refused here instead.
                    raise ResourceExhausted(
                        f"the answer is {size} bytes, more than tfgate's max_message_bytes "
                        f"({limits.max_send})"
                    )
            except GatewayError as exc:
                record.done(exc)
                trailers = trailers_of(exc) + id_trailer(call)
                await context.abort(STATUS[exc.code], bounded(exc.message), trailers)
            except asyncio.CancelledError:
                record.done_with(_cancelled_code(context, limits))
                raise
            except Exception as exc:
                logger.exception("%s failed", method)
                record.done(exc)
                await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, id_trailer(call))
            record.response_bytes = size
            record.done()
            context.set_trailing_metadata(id_trailer(call))
            return response

        return wrapper

    return decorate


class InferenceServicer:
    """tfgate.v1.InferenceService over the request core."""

    def __init__(self, inference: Inference, limits: Limits) -> None:
        self._inference = inference
        self._limits = limits

    def handler(self) -> grpc.GenericRpcHandler:
        inference = self._inference
        limits = self._limits

        @rpc("grpc", "Predict", predict_of, limits)
        async def predict(request: Predict, call: Call, record: Record) -> bytes:
            record.model = request.model or "-"
            answer = await inference.predict(request, call)
            encoded = translate.v1_response(answer)
            record.version = encoded.version
            return encoded.data

        @rpc("grpc", "GetModel", parser(inference_pb2.GetModelRequest), limits)
        async def get_model(
            request: inference_pb2.GetModelRequest, call: Call, record: Record
        ) -> inference_pb2.Model:
            record.model = request.model or "-"
            model = await inference.get_model(
                request.model, request.version, request.version_label, call
            )
            record.version = model.version
            return model

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(predict),
                "GetModel": grpc.unary_unary_rpc_method_handler(
                    get_model, response_serializer=inference_pb2.Model.SerializeToString
                ),
            },
        )


_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only
# The services ``[auth] open`` may leave out, by their methods' prefix.
_SERVICE_PREFIXES: Final = {
    "health": ("/grpc.health.v1.Health/",),
    "reflection": (
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/grpc.reflection.v1.ServerReflection/",
    ),
}


class ClosedServices(grpc.aio.ServerInterceptor):
    """Asks the health service's and reflection's callers for credentials, when ``[auth] open``
    leaves them out (installed only then: an interceptor costs every call). The gate is read
    anew each call, so that a reload's keys apply; a caller's client certificate cannot name it
    here (grpc shows interceptors no peer), so a token is needed."""

    def __init__(self, gate_of: Callable[[], Gate], services: tuple[str, ...]) -> None:
        self._gate_of = gate_of
        self._prefixes = tuple(p for name in services for p in _SERVICE_PREFIXES[name])

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self._prefixes):
            return handler
        authorization, api_key, *_ = _read(details.invocation_metadata)
        credentials = Credentials(authorization, api_key)
        call = Call("grpc", details.method, time.monotonic(), credentials=credentials)
        try:
            await self._gate_of().authenticate(call)
        except Unauthenticated as exc:
            return _refusing(handler, exc.message)
        return handler


def _refusing(handler: _Handler, message: str) -> _Handler:
    async def refuse(request: object, context: Context) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
    kind = next(k for k in kinds if getattr(handler, k) is not None)
    return handler._replace(**{kind: refuse})  # type: ignore[attr-defined,no-any-return]
