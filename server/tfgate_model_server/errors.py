"""The model server's exceptions.

::

    ModelServerError
    ├── ServingError            an RPC fails with this gRPC status and message
    │   ├── InvalidArgument
    │   ├── NotFound
    │   ├── FailedPrecondition
    │   └── Unimplemented
    └── StartupError            the server cannot start: bad config, a model fails to load

``service`` turns a ``ServingError`` into the RPC's status, in one place. Messages follow
TF Serving's wording, since the gateway and its tests see them; like TF Serving, a message
longer than 1024 characters is cut and marked "...TRUNCATED".
"""

from __future__ import annotations

import grpc

_MESSAGE_LIMIT = 1024


class ModelServerError(Exception):
    """Base of the model server's expected errors."""


class ServingError(ModelServerError):
    """An expected RPC failure: a gRPC status code and TF Serving's message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def status_message(self) -> str:
        """The message as TF Serving sends it (ToGRPCStatus)."""
        if len(self.message) > _MESSAGE_LIMIT:
            return self.message[:_MESSAGE_LIMIT] + "...TRUNCATED"
        return self.message


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(ServingError):
    code = grpc.StatusCode.UNIMPLEMENTED


class StartupError(ModelServerError):
    """The model config is invalid or a model cannot be loaded."""
