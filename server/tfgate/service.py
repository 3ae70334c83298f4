"""tfgate.v1.InferenceService: translate the request, call TF Serving, translate back.

Requests arrive as bytes and are parsed, and errors become statuses, in tfgate.errors.rpc.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from tfgate import translate, wire
from tfgate.catalog import Catalog
from tfgate.errors import BackendError, parser, rpc
from tfgate.signatures import ModelMetadata
from tfgate.upstream import Upstream, deadline_of
from tfgate.v1 import inference_pb2

if TYPE_CHECKING:
    from tfgate.pipelines import Plan

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name

# TF Serving's answers that mean the cached view of a model is out of date.
_STALE = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})


# A Predict request, parsed, with the bytes it came as: large float inputs are read from those.
Received = tuple[inference_pb2.PredictRequest, bytes]
# Below this many values, reading the parsed message is as cheap as finding them in the bytes.
_IN_PLACE_FROM = 4096


def _with_bytes(
    parse: Callable[[bytes], inference_pb2.PredictRequest],
) -> Callable[[bytes], Received]:
    return lambda data: (parse(data), data)


def _model_of_received(received: Received) -> str:
    return received[0].model or "-"


def _packed_inputs(
    request: inference_pb2.PredictRequest, data: bytes
) -> dict[str, tuple[int, memoryview]] | None:
    if len(data) < 4 * _IN_PLACE_FROM:
        return None  # too short to hold that many floats
    large = any(len(t.floats) + len(t.doubles) >= _IN_PLACE_FROM for t in request.inputs.values())
    return wire.packed_inputs(data) if large else None


class Preprocessing(Protocol):
    """What the service asks of tfgate.pipelines.Pipelines, which is imported only when the
    config file has [models.NAME] sections."""

    def plan(self, meta: ModelMetadata, signature: str) -> Plan | None: ...

    def describe(self, meta: ModelMetadata, model: inference_pb2.Model) -> None: ...

    async def check(self, metadata: Callable[[str], Awaitable[ModelMetadata]]) -> None: ...


class NoPreprocessing:
    """No [models.NAME] section: every request takes the plain path."""

    def plan(self, meta: ModelMetadata, signature: str) -> Plan | None:
        return None

    def describe(self, meta: ModelMetadata, model: inference_pb2.Model) -> None:
        return None

    async def check(self, metadata: Callable[[str], Awaitable[ModelMetadata]]) -> None:
        return None


class InferenceService:
    def __init__(
        self,
        upstream: Upstream,
        catalog: Catalog,
        default_timeout: float,
        max_elements: int,
        pipelines: Preprocessing | None = None,
    ) -> None:
        self._upstream = upstream
        self._catalog = catalog
        self._default_timeout = default_timeout
        self._max_elements = max_elements
        self._pipelines = pipelines or NoPreprocessing()

    @rpc("Predict", _with_bytes(parser(inference_pb2.PredictRequest)), _model_of_received)
    async def predict(
        self, received: Received, context: grpc.aio.ServicerContext[Any, Any]
    ) -> translate.EncodedResponse:
        request, data = received
        deadline = deadline_of(context, self._default_timeout)
        sel = translate.selector(request.model, request.version, request.version_label)
        meta = self._catalog.cached(sel) or await self._catalog.metadata(sel, deadline)
        plan = self._pipelines.plan(meta, request.signature)
        outputs = None
        if plan is None:
            backend_request = translate.predict_request(
                request, sel, meta, self._max_elements, _packed_inputs(request, data)
            )
        else:
            prepared = plan.prepare(request, self._max_elements)
            backend_request = translate.backend_request(
                sel, plan.signature, prepared.inputs, prepared.output_filter
            )
            outputs = prepared.outputs
        try:
            answer = await self._upstream.predict(backend_request.data, deadline)
        except BackendError as exc:
            if exc.backend_code in _STALE:
                self._catalog.forget(sel.model)
            raise
        self._catalog.answered(sel, answer.model_spec.version.value)
        return translate.predict_response(answer, sel, backend_request.signature, outputs)

    @rpc("GetModel", parser(inference_pb2.GetModelRequest))
    async def get_model(
        self, request: inference_pb2.GetModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.Model:
        deadline = deadline_of(context, self._default_timeout)
        sel = translate.selector(request.model, request.version, request.version_label)
        status = await self._upstream.get_model_status(
            translate.status_request(sel.model), deadline
        )
        meta = await self._catalog.metadata(sel, deadline)
        model = translate.model_view(status, meta)
        self._pipelines.describe(meta, model)
        return model

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(
                    self.predict,
                    # Already wire bytes (tfgate.translate.predict_response).
                    response_serializer=operator.attrgetter("data"),
                ),
                "GetModel": grpc.unary_unary_rpc_method_handler(
                    self.get_model,
                    response_serializer=inference_pb2.Model.SerializeToString,
                ),
            },
        )
