"""The request core: Predict, GetModel and TF Serving's own API, the same for every front.

No transport here (no grpc, no HTTP): a front translates its protocol into a domain request
(tfgate.domain) and a ``Call`` (tfgate.calls), calls ``Inference``, and translates the answer
back. Validation, preprocessing (the request's plan, tfgate.plans.plan), the signature cache
and the backend call (with its retries, budget, concurrency cap and deadline, behind
tfgate.backends.base.Backend) happen here or below, once for all fronts.
"""

from __future__ import annotations

from typing import Final

from tfgate import translate
from tfgate.backends.base import Backend
from tfgate.calls import Call
from tfgate.catalog import Catalog
from tfgate.domain import Answer, Predict
from tfgate.errors import BackendError, Code
from tfgate.plans.plan import Plans, check_value_count
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
)
from tfgate.v1 import inference_pb2

# TF Serving's answers that mean the cached view of a model is out of date.
_STALE: Final = frozenset({Code.NOT_FOUND, Code.FAILED_PRECONDITION})


class Inference:
    def __init__(self, backend: Backend, catalog: Catalog, plans: Plans, max_elements: int) -> None:
        self.backend = backend
        self.catalog = catalog
        self.plans = plans
        self._max_elements = max_elements

    async def predict(self, request: Predict, call: Call) -> Answer:
        sel = translate.selector(request.model, request.version, request.label)
        translate.check_names(request.signature, request.inputs, request.output_filter)
        meta = self.catalog.cached(sel) or await self.catalog.metadata(sel, call)
        check_value_count(request, self._max_elements)  # before the signature, as always
        plan = self.plans.plan(meta, request.signature)
        prepared = plan.prepare(sel, request, self._max_elements)
        try:
            answer = await self.backend.predict(prepared.request.data, call)
        except BackendError as exc:
            if exc.backend_code in _STALE:
                self.catalog.forget(sel.model)
                self.plans.forget(sel.model)
            raise
        spec = answer.model_spec
        version = spec.version.value
        expected = plan.expected(prepared.wanted, version or plan.version)
        translate.check_answer(answer, expected, self._max_elements)
        self.catalog.answered(sel, version)
        return Answer(
            spec.name or sel.model,
            version,
            spec.signature_name or plan.signature,
            plan.outputs(answer, prepared.wanted),
        )

    async def get_model(
        self, model: str, version: int, label: str, call: Call
    ) -> inference_pb2.Model:
        """Every version's state, and the signatures of the version named (or the latest)."""
        sel = translate.selector(model, version, label)
        # The signatures first: an unknown model is then refused in the very words of Predict.
        meta = await self.catalog.metadata(sel, call)
        status = await self.model_status(translate.Selector(sel.model), call)
        view = translate.model_view(status, meta)
        self.plans.describe(meta, view)
        return view

    async def model_status(
        self, sel: translate.Selector, call: Call
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """The state of the versions ``sel`` names (all of them, for the model alone)."""
        return await self.backend.get_model_status(translate.status_request(sel), call)

    async def model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return await self.backend.get_model_metadata(request, call)

    async def forward(self, path: str, request: bytes, call: Call) -> bytes:
        """A TF Serving method called as it is (TF Serving's own API through tfgate)."""
        return await self.backend.forward(path, request, call)
