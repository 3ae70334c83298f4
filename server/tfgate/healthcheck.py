"""``tfgate healthcheck``: asks a running tfgate for its grpc.health.v1 status."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2


def health_status(target: str, timeout: float) -> int | None:
    """The grpc.health.v1 status ``target`` answers, or None while nothing answers."""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            answer: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return int(answer.status)


def check_health(target: str, timeout: float) -> bool:
    return health_status(target, timeout) == health_pb2.HealthCheckResponse.SERVING
