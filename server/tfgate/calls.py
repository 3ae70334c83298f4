"""What every front knows about a call, and the steps every call passes through.

A front builds one ``Call`` per incoming request (its protocol's deadline, request id, peer) and
records it in a ``Record``, which writes the one access-log line per call, whatever the front.
Policies that must apply to every front alike are steps here, not branches in a front.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Final

from tfgate.errors import Code, code_of

access_logger = logging.getLogger("tfgate.access")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the caller presented to prove who it is (tfgate.policy.gate reads it). Secrets:
    kept out of ``repr``, so that no log line or error can show them."""

    authorization: str = field(default="", repr=False)  # the header / metadata value, as sent
    api_key: str = field(default="", repr=False)  # x-api-key
    tls_identity: str | None = None  # the verified client certificate's identity, if any


NO_CREDENTIALS: Final = Credentials()


@dataclass(slots=True)
class Call:
    """One incoming call, as the core sees it (read-only by convention: not frozen, since a
    frozen dataclass costs a microsecond more to build, on every call)."""

    front: str  # "grpc" (tfgate.v1), "tfs-grpc" (TF Serving's API), "http", "tfs-http"
    method: str  # "Predict", "GetModel", "/tensorflow.serving.PredictionService/Predict", ...
    deadline: float  # time.monotonic() instant by which the answer is due
    peer: str = ""
    request_id: str = ""
    credentials: Credentials = NO_CREDENTIALS
    client: str = "-"  # who is calling, once tfgate.policy.gate has said so


# Characters a logged value may hold as it is; anything else is quoted and escaped.
_PLAIN: Final = re.compile(r"[A-Za-z0-9_.:/@+\-]+")
# Characters of a caller's value a log line shows at most.
MAX_LOGGED: Final = 256


def loggable(value: object) -> str:
    """``value`` as a log line may show it: as it is when plain; else in double quotes with
    control characters, quotes, backslashes and non-ASCII escaped (so no caller text can break
    a line or forge a field), and cut to MAX_LOGGED characters, saying how long it was."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_LOGGED and _PLAIN.fullmatch(text):
        return text
    cut = text[:MAX_LOGGED]
    escaped = cut.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    more = f"...({len(text)} characters)" if len(text) > MAX_LOGGED else ""
    return f'"{escaped}"{more}'


class Record:
    """The access log of one call: ``METHOD model=NAME version=V code=CODE ms=MS client=NAME
    front=FRONT``.

    The front sets ``model`` and ``version`` as it learns them, and calls ``done`` with the
    exception the call ended with, if any (tfgate.errors.code_of decides its code), so that
    every front logs the same codes; or ``done_with`` the code the caller got when no
    exception says it (a call grpc cancelled). The model and version, which the caller
    named, go through ``loggable``.
    """

    __slots__ = ("call", "method", "model", "start", "version")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.method = call.method  # a front may name the method once it has routed the call
        self.model = "-"
        self.version: object = "-"
        self.start = time.perf_counter()

    def done(self, exc: BaseException | None = None) -> None:
        self.done_with(code_of(exc))

    def done_with(self, code: Code) -> None:
        if access_logger.isEnabledFor(logging.INFO):  # else not even its arguments
            access_logger.info(
                "%s model=%s version=%s code=%s ms=%.2f client=%s front=%s",
                self.method,  # the front's own words; an HTTP path in it is loggable already
                loggable(self.model),
                loggable(self.version),
                code.name,
                (time.perf_counter() - self.start) * 1000.0,
                loggable(self.call.client),
                self.call.front,
            )
