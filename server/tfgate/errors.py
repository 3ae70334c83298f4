"""tfgate's errors, and the one place where they become gRPC statuses.

Expected failures are raised as a ``GatewayError`` carrying the status code the caller gets::

    GatewayError
    ├── InvalidArgument      the request is wrong; the message names the field
    ├── NotFound             no such model or version
    ├── FailedPrecondition   e.g. no such signature in that version
    ├── ResourceExhausted    load shed, limits
    ├── Unavailable          the backend cannot be reached (after retries)
    ├── DeadlineExceeded     the caller's deadline ran out inside tfgate
    ├── Unsupported          a dtype tfgate.v1.Tensor cannot carry (UNIMPLEMENTED)
    ├── BadBackendAnswer     TF Serving's answer does not add up (INTERNAL)
    └── BackendError         a status TF Serving returned, mapped through BACKEND_CODES

Anything else that escapes a handler is a bug: the caller gets ``INTERNAL`` with a generic
message, and the traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("tfgate.access")


class GatewayError(Exception):
    """An expected failure, answered with ``code`` and ``message``."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GatewayError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(GatewayError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(GatewayError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(GatewayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(GatewayError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(GatewayError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unsupported(GatewayError):
    code = grpc.StatusCode.UNIMPLEMENTED


class BadBackendAnswer(GatewayError):
    code = grpc.StatusCode.INTERNAL


class BackendError(GatewayError):
    """A status TF Serving answered with, as the caller will see it."""

    def __init__(self, code: grpc.StatusCode, message: str, backend_code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code
        self.backend_code = backend_code


# What each status TF Serving can return becomes for tfgate's caller. TF Serving's own codes for
# the caller's mistakes pass through with TF Serving's message; codes that say something about the
# deployment rather than the request (auth between tfgate and TF Serving, a broken backend) become
# INTERNAL, since the caller can do nothing about them. tests/test_errors.py checks that every
# grpc.StatusCode but OK has a row.
BACKEND_CODES: Final[dict[grpc.StatusCode, grpc.StatusCode]] = {
    grpc.StatusCode.CANCELLED: grpc.StatusCode.UNAVAILABLE,  # the backend dropped the call
    grpc.StatusCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: grpc.StatusCode.INTERNAL,
    grpc.StatusCode.PERMISSION_DENIED: grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL: grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED: grpc.StatusCode.INTERNAL,
}

# Codes whose message is about the request or the model and so is shown as TF Serving wrote it;
# the rest are prefixed, so that a caller can tell the backend's failure from tfgate's.
_VERBATIM: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def from_backend(code: grpc.StatusCode, details: str | None) -> BackendError:
    """The error tfgate answers with when TF Serving's answer was ``code``/``details``."""
    mapped = BACKEND_CODES.get(code, grpc.StatusCode.INTERNAL)
    text = details or code.name
    if code not in _VERBATIM:
        text = f"TF Serving answered {code.name}: {text}"
    return BackendError(mapped, text, code)


_Req = TypeVar("_Req")
_Msg = TypeVar("_Msg", bound=Message)
_Resp = TypeVar("_Resp")
Handler = Callable[[Any, _Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Resp]]
RawHandler = Callable[[Any, bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Resp]]


def parser(request_type: type[_Msg]) -> Callable[[bytes], _Msg]:
    """Parses a request of ``request_type``; garbage is INVALID_ARGUMENT, not grpc's INTERNAL."""
    name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> _Msg:
        try:
            return request_type.FromString(data)
        except DecodeError:
            raise InvalidArgument(f"request: not a valid {name} ({len(data)} bytes)") from None

    return parse


def _model_field(request: Any) -> str:
    return str(getattr(request, "model", "") or "-")


def _version_field(response: Any) -> object:
    return getattr(response, "version", "-")


def rpc(
    method: str,
    parse: Callable[[bytes], _Req],
    model_of: Callable[[_Req], str] = _model_field,
    version_of: Callable[[_Resp], object] = _version_field,
) -> Callable[[Handler[_Req, _Resp]], RawHandler[_Resp]]:
    """Wraps a servicer method: the one place where errors become statuses.

    The wrapped method takes the request's bytes and ``parse`` turns them into its argument.
    One access-log line is written per call: ``METHOD model=NAME version=V code=CODE ms=MS``,
    with the model and version read by ``model_of`` and ``version_of``.
    """

    def decorate(fn: Handler[_Req, _Resp]) -> RawHandler[_Resp]:
        @functools.wraps(fn)
        async def wrapper(
            self: Any, data: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> _Resp:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            model = "-"
            version: object = "-"
            try:
                request = parse(data)
                model = model_of(request)
                response = await fn(self, request, context)
                version = version_of(response)
                return response
            except GatewayError as exc:
                code = exc.code
                await context.abort(exc.code, exc.message)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                logger.exception("%s failed", method)
                await context.abort(code, "internal error in tfgate; see its log")
            finally:
                if access_logger.isEnabledFor(logging.INFO):  # else not even its arguments
                    access_logger.info(
                        "%s model=%s version=%s code=%s ms=%.2f",
                        method,
                        model,
                        version,
                        code.name,
                        (time.perf_counter() - start) * 1000.0,
                    )
            raise AssertionError("unreachable: abort() raises")  # pragma: no cover

        return wrapper

    return decorate
