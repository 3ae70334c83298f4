"""What every front knows about a call, and the steps every call passes through.

A front builds one ``Call`` per incoming request (its protocol's deadline, request id, peer) and
records it in a ``Record``, which writes the one access-log line per call, whatever the front.
Policies that must apply to every front alike are steps here, not branches in a front.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tfgate.errors import code_of

access_logger = logging.getLogger("tfgate.access")


@dataclass(slots=True)
class Call:
    """One incoming call, as the core sees it (read-only by convention: not frozen, since a
    frozen dataclass costs a microsecond more to build, on every call)."""

    front: str  # "grpc" (tfgate.v1), "tfs-grpc" (TF Serving's API), "http", "tfs-http"
    method: str  # "Predict", "GetModel", "/tensorflow.serving.PredictionService/Predict", ...
    deadline: float  # time.monotonic() instant by which the answer is due
    peer: str = ""
    request_id: str = ""


class Record:
    """The access log of one call: ``METHOD model=NAME version=V code=CODE ms=MS front=FRONT``.

    The front sets ``model`` and ``version`` as it learns them, and calls ``done`` with the
    exception the call ended with, if any (tfgate.errors.code_of decides its code), so that
    every front logs the same codes.
    """

    __slots__ = ("call", "method", "model", "start", "version")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.method = call.method  # a front may name the method once it has routed the call
        self.model = "-"
        self.version: object = "-"
        self.start = time.perf_counter()

    def done(self, exc: BaseException | None = None) -> None:
        if access_logger.isEnabledFor(logging.INFO):  # else not even its arguments
            access_logger.info(
                "%s model=%s version=%s code=%s ms=%.2f front=%s",
                self.method,
                self.model,
                self.version,
                code_of(exc).name,
                (time.perf_counter() - self.start) * 1000.0,
                self.call.front,
            )
