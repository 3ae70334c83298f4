"""TF Serving's own API, forwarded: PredictionService and ModelService.GetModelStatus.

Clients written for TF Serving can point at tfgate unchanged and get its retries, retry budget,
concurrency cap, load shedding, deadlines and health. Requests and answers travel as the bytes
they arrived as: nothing is parsed or re-encoded, so this path costs little more than a proxy.
It validates nothing either; that is what tfgate.v1 is for. Only the model name is read (from
the request's first field, ModelSpec in every TF Serving request) for the access log.
"""

from __future__ import annotations

from typing import Final

import grpc

from tfgate import wire
from tfgate.calls import Call, Record
from tfgate.fronts.grpc import Limits, RawHandler, rpc
from tfgate.inference import Inference
from tfgate.tfs.tensorflow_serving.apis import (
    model_pb2,
    model_service_pb2,
    prediction_service_pb2,
)

PREDICTION_SERVICE: Final = prediction_service_pb2.DESCRIPTOR.services_by_name[
    "PredictionService"
].full_name
MODEL_SERVICE: Final = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name

# What is forwarded. ModelService.HandleReloadConfigRequest changes what TF Serving serves: an
# operator's call to TF Serving itself, not something to open to every caller of the gateway.
METHODS: Final = {
    PREDICTION_SERVICE: ("Predict", "GetModelMetadata", "Classify", "Regress", "MultiInference"),
    MODEL_SERVICE: ("GetModelStatus",),
}


def _same(data: bytes) -> bytes:
    return data


def model_name(data: bytes) -> str:
    """The model a serialized TF Serving request names (its first field is a ModelSpec), or "-"."""
    spec = wire.find_field(data, 1)
    if spec is None:
        return "-"
    try:
        return model_pb2.ModelSpec.FromString(spec).name or "-"
    except Exception:  # MultiInferenceRequest's field 1 is a task, not a ModelSpec
        return "-"


class PassThrough:
    """TF Serving's own gRPC API, forwarded through the request core."""

    def __init__(self, inference: Inference, limits: Limits) -> None:
        self._inference = inference
        self._limits = limits

    def _forwarder(self, path: str) -> RawHandler[bytes]:
        inference = self._inference

        @rpc("tfs-grpc", path, _same, self._limits)
        async def forward(request: bytes, call: Call, record: Record) -> bytes:
            record.model = model_name(request)
            return await inference.forward(path, request, call)

        return forward

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                service,
                {
                    method: grpc.unary_unary_rpc_method_handler(
                        self._forwarder(f"/{service}/{method}")
                    )
                    for method in methods
                },
            )
            for service, methods in METHODS.items()
        ]
