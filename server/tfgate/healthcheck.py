"""``tfgate healthcheck``: asks a running tfgate for its grpc.health.v1 status."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2


def check_health(target: str, timeout: float) -> bool:
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
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING
