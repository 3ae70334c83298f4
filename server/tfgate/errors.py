"""tfgate's errors, with no transport in them: each front maps them to its own statuses.

Expected failures are raised as a ``GatewayError`` carrying the ``Code`` the caller gets::

    GatewayError
    ├── InvalidArgument      the request is wrong; the message names the field
    ├── NotFound             no such model or version
    ├── FailedPrecondition   e.g. no such signature in that version
    ├── ResourceExhausted    load shed, limits
    │   └── RateLimited      a rate limit (tfgate.policy.limits); says when to retry
    ├── Unauthenticated      no credentials, or not valid ones: "missing", "invalid", "expired"
    ├── PermissionDenied     the client may not call that method on that model
    ├── Unavailable          the backend cannot be reached (after retries)
    ├── DeadlineExceeded     the caller's deadline ran out inside tfgate
    ├── Unsupported          a dtype tfgate.v1.Tensor cannot carry (UNIMPLEMENTED)
    ├── Cancelled            the caller went away (an HTTP connection closed mid-call)
    ├── Unauthenticated      no credentials or refused ones: "missing", "invalid", "expired"
    ├── BadBackendAnswer     TF Serving's answer does not add up (INTERNAL)
    └── BackendError         a status TF Serving returned, mapped through BACKEND_CODES

``Code`` names gRPC's status codes (same names, same numbers) without importing grpc: the gRPC
front (tfgate.fronts.grpc) and the HTTP front (tfgate.fronts.http.errors) each turn a code into
their status in one table. Anything else that escapes the core is a bug: the caller gets
``INTERNAL`` with a generic message, and the traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Final


class Code(enum.Enum):
    """The canonical status codes (google.rpc.Code), as gRPC numbers them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GatewayError(Exception):
    """An expected failure, answered with ``code`` and ``message``."""

    code: Code = Code.INTERNAL
    # Seconds after which a retry may succeed, when the error knows: every front sends it
    # (HTTP Retry-After; gRPC trailing metadata retry-after and grpc-retry-pushback-ms).
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GatewayError):
    code = Code.INVALID_ARGUMENT


class NotFound(GatewayError):
    code = Code.NOT_FOUND


class FailedPrecondition(GatewayError):
    code = Code.FAILED_PRECONDITION


class ResourceExhausted(GatewayError):
    code = Code.RESOURCE_EXHAUSTED


class RateLimited(ResourceExhausted):
    """A rate limit is reached; a token is available again in ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(retry_after: float) -> int:
    """``retry_after`` as HTTP's Retry-After says it (RFC 9110 section 10.2.3): whole seconds,
    rounded up, at least 1."""
    return max(1, math.ceil(retry_after))


def retry_after_ms(retry_after: float) -> int:
    """``retry_after`` in whole milliseconds, rounded up, for gRPC's grpc-retry-pushback-ms."""
    return max(0, math.ceil(retry_after * 1000.0))


class Unauthenticated(GatewayError):
    """The caller could not be identified. The message is the reason alone, and never holds
    what the caller presented."""

    code = Code.UNAUTHENTICATED
    REASONS: Final = ("missing", "invalid", "expired")

    def __init__(self, reason: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"not a reason to refuse credentials: {reason!r}")
        super().__init__(reason)
        self.reason = reason


class PermissionDenied(GatewayError):
    code = Code.PERMISSION_DENIED


class Unavailable(GatewayError):
    code = Code.UNAVAILABLE


class DeadlineExceeded(GatewayError):
    code = Code.DEADLINE_EXCEEDED


class Unsupported(GatewayError):
    code = Code.UNIMPLEMENTED


class Cancelled(GatewayError):
    """The caller went away before the call was answered."""

    code = Code.CANCELLED


class BadBackendAnswer(GatewayError):
    code = Code.INTERNAL


class BackendError(GatewayError):
    """A status TF Serving answered with, as the caller will see it."""

    def __init__(self, code: Code, message: str, backend_code: Code) -> None:
        super().__init__(message)
        self.code = code
        self.backend_code = backend_code


def own_copy(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one of several callers that share one failure (a response cache's
    single flight, a batch): each raises an exception of its own (its traceback, context and
    any note are that caller's), with the same type, message and fields, and the shared one as
    its cause."""
    twin = type(exc).__new__(type(exc))
    twin.args = exc.args
    twin.__dict__.update(exc.__dict__)
    twin.__cause__ = exc  # where it was raised, for a traceback that is logged
    return twin


# The message an unexpected error is answered with, on every front.
INTERNAL_MESSAGE: Final = "internal error in tfgate; see its log"

# The longest name (model, version label, signature, input, output) a request may carry, in
# characters: a name ends up in messages and logs, and gRPC sends a message in a header.
MAX_NAME: Final = 1024
# The most UTF-8 bytes of a message any front sends. gRPC percent-encodes a status message for
# its grpc-message header (up to 3 bytes per byte) and refuses headers over 8 KiB (16 KiB at
# most): a longer message would replace the call's status with RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES: Final = 2048


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes (at a character), marked with "..."."""
    if len(message) * 4 <= limit:
        return message  # no text of that many characters can be longer
    data = message.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return message
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def check_name(field: str, name: str) -> None:
    """INVALID_ARGUMENT naming ``field`` when ``name`` is longer than MAX_NAME."""
    if len(name) > MAX_NAME:
        raise InvalidArgument(
            f"{field}: {len(name)} characters long, more than tfgate's {MAX_NAME}"
        )


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun in its number: "1 value", "2 values", "1 was", "3 were"."""
    if count == 1:
        return f"1 {singular}"
    return f"{count} {plural or singular + 's'}"


# What each status TF Serving can return becomes for tfgate's caller. TF Serving's own codes for
# the caller's mistakes pass through with TF Serving's message; codes that say something about the
# deployment rather than the request (auth between tfgate and TF Serving, a broken backend) become
# INTERNAL, since the caller can do nothing about them. tests/test_errors.py checks that every
# code but OK has a row.
BACKEND_CODES: Final[dict[Code, Code]] = {
    Code.CANCELLED: Code.UNAVAILABLE,  # the backend dropped the call
    Code.UNKNOWN: Code.UNKNOWN,
    Code.INVALID_ARGUMENT: Code.INVALID_ARGUMENT,
    Code.DEADLINE_EXCEEDED: Code.DEADLINE_EXCEEDED,
    Code.NOT_FOUND: Code.NOT_FOUND,
    Code.ALREADY_EXISTS: Code.INTERNAL,
    Code.PERMISSION_DENIED: Code.INTERNAL,
    Code.RESOURCE_EXHAUSTED: Code.RESOURCE_EXHAUSTED,
    Code.FAILED_PRECONDITION: Code.FAILED_PRECONDITION,
    Code.ABORTED: Code.ABORTED,
    Code.OUT_OF_RANGE: Code.OUT_OF_RANGE,
    Code.UNIMPLEMENTED: Code.UNIMPLEMENTED,
    Code.INTERNAL: Code.INTERNAL,
    Code.UNAVAILABLE: Code.UNAVAILABLE,
    Code.DATA_LOSS: Code.INTERNAL,
    Code.UNAUTHENTICATED: Code.INTERNAL,
}

# Codes whose message is about the request or the model and so is shown as TF Serving wrote it;
# the rest are prefixed, so that a caller can tell the backend's failure from tfgate's.
_VERBATIM: Final = frozenset(
    {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE}
)

# Codes for which a second try cannot succeed: retrying them only adds load.
NEVER_RETRY: Final = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.FAILED_PRECONDITION,
        Code.OUT_OF_RANGE,
        Code.UNIMPLEMENTED,
        Code.ALREADY_EXISTS,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.DEADLINE_EXCEEDED,
        Code.CANCELLED,
    }
)


def from_backend(code: Code, details: str | None) -> BackendError:
    """The error tfgate answers with when TF Serving's answer was ``code``/``details``."""
    mapped = BACKEND_CODES.get(code, Code.INTERNAL)
    text = details or code.name
    if code not in _VERBATIM:
        text = f"TF Serving answered {code.name}: {text}"
    return BackendError(mapped, text, code)


def code_of(exc: BaseException | None) -> Code:
    """The code a call that ended with ``exc`` (None: it succeeded) is answered with."""
    if exc is None:
        return Code.OK
    if isinstance(exc, GatewayError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return Code.CANCELLED
    return Code.INTERNAL
