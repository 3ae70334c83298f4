"""The gRPC servicers and server.

A thread-pool server: each RPC runs on a worker thread, where ``Session.run`` releases the
GIL. Handlers return responses or raise; ``_StatusInterceptor`` is the one place that turns
a ``ServingError`` into the RPC's status, and anything else into INTERNAL with a generic
message (the traceback goes to the log).

As TF Serving does with ``--enable_grpc_healthcheck_service``, the standard health service
reports "", "ModelService" and "PredictionService" as SERVING once the port is open, which is
after every model has loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfgate_model_server import examples, metadata, multi_inference, predict
from tfgate_model_server.errors import ServingError, Unimplemented
from tfgate_model_server.manager import ServableManager

logger = logging.getLogger(__name__)

HEALTH_SERVICES = ("", "ModelService", "PredictionService")
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# TF Serving accepts messages up to INT32_MAX bytes.
_MAX_MESSAGE = 2**31 - 1


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, manager: ServableManager, *, as_tensor_content: bool) -> None:
        self._manager = manager
        self._as_tensor_content = as_tensor_content

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        return predict.predict(
            self._manager,
            request,
            as_tensor_content=self._as_tensor_content,
            timeout=context.time_remaining(),
        )

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        return examples.classify(self._manager, request, timeout=context.time_remaining())

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        return examples.regress(self._manager, request, timeout=context.time_remaining())

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        return multi_inference.multi_inference(
            self._manager, request, timeout=context.time_remaining()
        )

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return metadata.get_model_metadata(self._manager, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, manager: ServableManager) -> None:
        self._manager = manager

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return metadata.get_model_status(self._manager, request)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented(
            "The local model server loads its model config once; restart it to reload."
        )


class _StatusInterceptor(grpc.ServerInterceptor):
    """Maps the exceptions a unary handler raises to the RPC's status."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        method = handler_call_details.method

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behavior(request, context)
            except ServingError as exc:
                logger.debug("%s: %s: %s", method, exc.code.name, exc.message)
                context.abort(exc.code, exc.status_message())
            except Exception:
                logger.exception("%s failed", method)
                context.abort(grpc.StatusCode.INTERNAL, "internal error in the model server")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def build_server(
    manager: ServableManager,
    *,
    address: str,
    as_tensor_content: bool = False,
    max_workers: int = 16,
) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A started server on ``address`` ("host:port", port 0 for any) and its bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[_StatusInterceptor()],
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, as_tensor_content=as_tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    server.start()
    for service in HEALTH_SERVICES:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
