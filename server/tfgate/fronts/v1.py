"""tfgate.v1 messages as the request core's requests: shared by the gRPC front and by tfgate.v1
over HTTP, whose JSON bodies are first written as the same message bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from tfgate import wire
from tfgate.domain import Predict
from tfgate.errors import InvalidArgument
from tfgate.v1 import inference_pb2

_Msg = TypeVar("_Msg", bound=Message)


def parser(request_type: type[_Msg]) -> Callable[[bytes], _Msg]:
    """Parses a request of ``request_type``; garbage is INVALID_ARGUMENT, not grpc's INTERNAL."""
    name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> _Msg:
        try:
            return request_type.FromString(data)
        except DecodeError:
            raise InvalidArgument(f"request: not a valid {name} ({len(data)} bytes)") from None

    return parse


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
    read in place from ``data``."""
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
