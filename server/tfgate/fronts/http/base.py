"""What every HTTP route shares: its Call (deadline from ``grpc-timeout``) and JSON answers."""

from __future__ import annotations

import re
import time
from typing import Final

from aiohttp import web

from tfgate.calls import Call, Record
from tfgate.errors import InvalidArgument

RECORD_KEY: Final = web.RequestKey("tfgate.record", Record)
# A deadline as gRPC's grpc-timeout header writes it: up to 8 digits and a unit.
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_JSON: Final = "application/json"


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def begin(request: web.Request, front: str, method: str, default_timeout: float) -> Record:
    """The Call and access-log Record of an HTTP call; its deadline from ``grpc-timeout``."""
    header = request.headers.get("grpc-timeout")
    timeout = default_timeout
    if header is not None:
        match = _TIMEOUT.match(header.strip())
        if match is None:
            raise InvalidArgument(
                f"grpc-timeout: expected digits and a unit (H, M, S, m, u, n), e.g. 500m; "
                f"got {header[:64]!r}"
            )
        timeout = int(match.group(1)) * _UNITS[match.group(2)]
    peer = request.remote or ""
    request_id = request.headers.get("x-request-id", "")
    call = Call(front, method, time.monotonic() + timeout, peer, request_id)
    record = Record(call)
    request[RECORD_KEY] = record
    return record
