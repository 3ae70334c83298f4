"""The gRPC front: tfgate.v1.InferenceService, and the one place where errors become statuses.

Requests arrive as bytes; ``rpc`` parses them, builds the ``Call``, runs the handler inside the
access log (tfgate.calls.Record) and turns every exception into a status through ``STATUS``.
The servicer only translates tfgate.v1 to the request core (tfgate.inference) and back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError, Message

from tfgate import translate, wire
from tfgate.calls import Call, Record
from tfgate.domain import Predict
from tfgate.errors import INTERNAL_MESSAGE, Code, GatewayError, InvalidArgument
from tfgate.inference import Inference
from tfgate.v1 import inference_pb2

logger = logging.getLogger(__name__)

SERVICE_NAME: Final = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name

# Each code as a gRPC status: the same names. tests/test_fronts_grpc.py checks it is complete.
STATUS: Final[dict[Code, grpc.StatusCode]] = {code: grpc.StatusCode[code.name] for code in Code}

_Req = TypeVar("_Req")
_Msg = TypeVar("_Msg", bound=Message)
_Resp = TypeVar("_Resp")
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[_Req, Call, Record], Awaitable[_Resp]]
RawHandler = Callable[[bytes, Context], Awaitable[_Resp]]


def call_of(context: Context, front: str, method: str, default_timeout: float) -> Call:
    """The Call for a gRPC call: its deadline, else ``default_timeout`` from now; its peer."""
    # grpc.aio answers None when the caller set no deadline, whatever its stubs say.
    remaining = cast(float | None, context.time_remaining())
    deadline = time.monotonic() + (default_timeout if remaining is None else remaining)
    return Call(front, method, deadline, context.peer() or "")


def parser(request_type: type[_Msg]) -> Callable[[bytes], _Msg]:
    """Parses a request of ``request_type``; garbage is INVALID_ARGUMENT, not grpc's INTERNAL."""
    name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> _Msg:
        try:
            return request_type.FromString(data)
        except DecodeError:
            raise InvalidArgument(f"request: not a valid {name} ({len(data)} bytes)") from None

    return parse


def rpc(
    front: str, method: str, parse: Callable[[bytes], _Req], default_timeout: float
) -> Callable[[Handler[_Req, _Resp]], RawHandler[_Resp]]:
    """Wraps a handler ``fn(request, call, record)``: the one place where errors become statuses.

    The wrapped handler takes the request's bytes and ``parse`` turns them into its argument;
    the handler sets ``record.model`` / ``record.version`` for the access log.
    """

    def decorate(fn: Handler[_Req, _Resp]) -> RawHandler[_Resp]:
        async def wrapper(data: bytes, context: Context) -> _Resp:
            record = Record(call_of(context, front, method, default_timeout))
            try:
                response = await fn(parse(data), record.call, record)
            except GatewayError as exc:
                record.done(exc)
                await context.abort(STATUS[exc.code], exc.message)
            except asyncio.CancelledError as exc:
                record.done(exc)
                raise
            except Exception as exc:
                logger.exception("%s failed", method)
                record.done(exc)
                await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
            record.done()
            return response

        return wrapper

    return decorate


# Below this many values, reading the parsed message is as cheap as finding them in the bytes.
_IN_PLACE_FROM = 4096


def _packed_inputs(
    request: inference_pb2.PredictRequest, data: bytes
) -> dict[str, tuple[int, memoryview]] | None:
    if len(data) < 4 * _IN_PLACE_FROM:
        return None  # too short to hold that many floats
    large = any(len(t.floats) + len(t.doubles) >= _IN_PLACE_FROM for t in request.inputs.values())
    return wire.packed_inputs(data) if large else None


_parse_predict = parser(inference_pb2.PredictRequest)


def predict_of(data: bytes) -> Predict:
    """A serialized tfgate.v1.PredictRequest as the core's request; its large float inputs are
    read in place from ``data``. (The HTTP front's tfgate.v1 JSON comes through here too.)"""
    request = _parse_predict(data)
    return Predict(
        request.model,
        request.version,
        request.version_label,
        request.signature,
        request.inputs,
        request.output_filter,
        len(data),
        _packed_inputs(request, data),
    )


class InferenceServicer:
    """tfgate.v1.InferenceService over the request core."""

    def __init__(self, inference: Inference, default_timeout: float) -> None:
        self._inference = inference
        self._default_timeout = default_timeout

    def handler(self) -> grpc.GenericRpcHandler:
        inference = self._inference
        timeout = self._default_timeout

        @rpc("grpc", "Predict", predict_of, timeout)
        async def predict(request: Predict, call: Call, record: Record) -> bytes:
            record.model = request.model or "-"
            answer = await inference.predict(request, call)
            encoded = translate.v1_response(answer)
            record.version = encoded.version
            return encoded.data

        @rpc("grpc", "GetModel", parser(inference_pb2.GetModelRequest), timeout)
        async def get_model(
            request: inference_pb2.GetModelRequest, call: Call, record: Record
        ) -> inference_pb2.Model:
            record.model = request.model or "-"
            sel = translate.selector(request.model, request.version, request.version_label)
            model = await inference.get_model(sel, call)
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
