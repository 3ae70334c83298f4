"""``tfgate healthcheck``: asks a running tfgate for its grpc.health.v1 status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

_SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class ClientTls:
    """How to reach a tfgate that serves TLS: the CA that signed its certificate, the client
    certificate and key for mutual TLS, the name in its certificate if not the target's host."""

    ca: str
    cert: str = ""
    key: str = ""
    server_name: str = ""

    def channel(self, target: str) -> grpc.Channel:
        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None

        credentials = grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.secure_channel(target, credentials, options=options)


def health_status(
    target: str, timeout: float, service: str = "", tls: ClientTls | None = None
) -> int | None:
    """The grpc.health.v1 status ``target`` answers, or None while nothing answers."""
    try:
        return _ask(target, timeout, service, tls)
    except grpc.RpcError:
        return None


def _ask(target: str, timeout: float, service: str, tls: ClientTls | None = None) -> int:
    channel = grpc.insecure_channel(target) if tls is None else tls.channel(target)
    with channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        answer: health_pb2.HealthCheckResponse = check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return int(answer.status)


def check_health(
    target: str, timeout: float, service: str = "", tls: ClientTls | None = None
) -> tuple[bool, str]:
    """Whether ``target`` answers SERVING, and one line saying what it answered or what failed."""
    what = f"{target} ({service})" if service else target
    try:
        status = _ask(target, timeout, service, tls)
    except OSError as exc:
        return False, f"tfgate healthcheck: cannot read {exc.filename}: {exc.strerror}"
    except grpc.RpcError as exc:
        # The sync channel raises a grpc.Call as well as an RpcError, whatever its stubs say.
        failed: Any = exc
        code = failed.code()
        if code == grpc.StatusCode.NOT_FOUND:
            reason = "no such service"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = f"no answer within {timeout:g} s"
        elif code == grpc.StatusCode.UNAVAILABLE and "refused" in (failed.details() or ""):
            reason = "connection refused: nothing listens there"
        else:
            reason = " ".join((failed.details() or "no details").split())[:300]
        return False, f"tfgate healthcheck: {what}: {code.name}: {reason}"
    label = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return status == _SERVING, f"tfgate healthcheck: {what}: {label}"
