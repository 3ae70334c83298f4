"""The request core: Predict, GetModel and TF Serving's own API, the same for every front.

No transport here (no grpc, no HTTP): a front translates its protocol into a domain request
(tfgate.domain) and a ``Call`` (tfgate.calls), calls ``Inference``, and translates the answer
back. The gate (tfgate.policy.gate) admits each call first, whatever its method: who is calling,
whether they may call that method on that model, and whether the rate limits let it through.
Validation, preprocessing (the request's plan, tfgate.plans.plan), the signature cache and the
backend call (with its retries, budget, concurrency cap and deadline, behind
tfgate.backends.base.Backend) happen here or below, once for all fronts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Final

from tfgate import translate, wire
from tfgate.backends.base import Backend
from tfgate.batcher import Batcher
from tfgate.cache import ResponseCache, key_of
from tfgate.calls import Call
from tfgate.catalog import Catalog
from tfgate.domain import Answer, Predict
from tfgate.errors import BackendError, Code, InvalidArgument
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.plans.plan import Plan, Plans, Prepared, check_value_count
from tfgate.policy.config import PolicyConfig
from tfgate.policy.gate import Gate
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
)
from tfgate.v1 import inference_pb2

# TF Serving's answers that mean the cached view of a model is out of date.
_STALE: Final = frozenset({Code.NOT_FOUND, Code.FAILED_PRECONDITION})
# The forwarded TF Serving method whose first field holds tasks, each naming its model.
_MULTI_INFERENCE: Final = "/tensorflow.serving.PredictionService/MultiInference"
# The method a client must be granted for TF Serving's own API (tfgate.policy.config.METHODS).
TF_SERVING: Final = "tfserving"
_OPEN: Final = Gate(PolicyConfig())


def predict_method(call: Call) -> str:
    """The method a Predict is granted as: TF Serving's REST predict is TF Serving's API."""
    return TF_SERVING if call.front == "tfs-http" else "Predict"


def _spec_names(spec: bytes | memoryview) -> list[str]:
    return [
        bytes(payload).decode("utf-8", "replace")
        for number, payload in wire.fields(spec)
        if number == 1 and payload is not None
    ]


def models_named(path: str, request: bytes) -> Sequence[str]:
    """Every model name a serialized TF Serving request holds, as TF Serving would read it.

    Its ModelSpec is field 1 (MultiInference: field 1 of each task in field 1). A field sent
    twice is merged by protobuf, the last name winning: so every name found is returned, and a
    caller cannot show the gate one model and TF Serving another. No name at all is [""].
    Raises InvalidArgument when the bytes are not a message.
    """
    try:
        specs = [p for n, p in wire.fields(request) if n == 1 and p is not None]
        if path == _MULTI_INFERENCE:
            specs = [p for task in specs for n, p in wire.fields(task) if n == 1 and p is not None]
        names = [name for spec in specs for name in _spec_names(spec)]
    except ValueError:
        raise InvalidArgument(f"request: not a valid message for {path}") from None
    return names or [""]


class Inference:
    def __init__(
        self,
        backend: Backend,
        catalog: Catalog,
        plans: Plans,
        max_elements: int,
        gate: Gate = _OPEN,
        *,
        metrics: Metrics = NO_METRICS,
        caches: Mapping[str, ResponseCache] | None = None,
        batchers: Mapping[str, Batcher] | None = None,
    ) -> None:
        self.backend = backend
        self.caches = caches or {}  # by model: those with a [models.NAME.cache] table
        self.batchers = batchers or {}  # by model: those with a [models.NAME.batching] table
        self.metrics = metrics
        self.catalog = catalog
        self.plans = plans
        self.gate = gate
        self._max_elements = max_elements

    async def admit(self, call: Call, method: str, model: str) -> None:
        """Lets a front refuse a call before it reads its body; the core admits it again (and
        only then counts it against the rate limits)."""
        await self.gate.authorize(call, method, model)

    async def predict(self, request: Predict, call: Call) -> Answer:
        await self.gate.admit(call, predict_method(call), request.model)
        sel = translate.selector(request.model, request.version, request.label)
        translate.check_names(request.signature, request.inputs, request.output_filter)
        meta = self.catalog.cached(sel) or await self.catalog.metadata(sel, call)
        check_value_count(request, self._max_elements)  # before the signature, as always
        plan = self.plans.plan(meta, request.signature)
        trace = call.trace
        step = None if trace is None else trace.step("preprocess")
        started = time.perf_counter()
        try:
            prepared = plan.prepare(sel, request, self._max_elements)
        except Exception as exc:
            if step is not None:
                step.done(exc)
            raise
        self.metrics.preprocessed(sel.model, time.perf_counter() - started)
        if step is not None:
            step.done()
        cache = self.caches.get(sel.model)
        if cache is None:
            return await self._ask(sel, plan, prepared, call)
        key = key_of(plan, prepared)
        return await cache.answer(
            key, plan.version, call, lambda: self._ask(sel, plan, prepared, call)
        )

    async def _ask(
        self, sel: translate.Selector, plan: Plan, prepared: Prepared, call: Call
    ) -> Answer:
        """TF Serving's answer to ``prepared``, checked and made domain outputs: sent alone, or
        in a batch when the model batches and the signature is batched (tfgate.batcher)."""
        batcher = self.batchers.get(sel.model)
        data = prepared.request.data
        try:
            if batcher is not None and plan.batched and plan.version:
                answer = await batcher.predict(data, call, plan.version, plan.signature)
            else:
                answer = await self.backend.predict(data, call)
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
        await self.gate.admit(call, "GetModel", model)
        return await self.describe(model, version, label, call)

    async def describe(
        self, model: str, version: int, label: str, call: Call
    ) -> inference_pb2.Model:
        """GetModel's answer without the gate: for tfgate's own status page."""
        sel = translate.selector(model, version, label)
        # The signatures first: an unknown model is then refused in the very words of Predict.
        meta = await self.catalog.metadata(sel, call)
        status = await self.backend.get_model_status(
            translate.status_request(translate.Selector(sel.model)), call
        )
        view = translate.model_view(status, meta)
        self.plans.describe(meta, view)
        return view

    async def model_status(
        self, sel: translate.Selector, call: Call
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """The state of the versions ``sel`` names (all of them, for the model alone)."""
        await self.gate.admit(call, TF_SERVING, sel.model)
        return await self.backend.get_model_status(translate.status_request(sel), call)

    async def model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        await self.gate.admit(call, TF_SERVING, request.model_spec.name)
        return await self.backend.get_model_metadata(request, call)

    async def forward(self, path: str, request: bytes, call: Call) -> bytes:
        """A TF Serving method called as it is (TF Serving's own API through tfgate)."""
        if self.gate.active:  # the bytes are read only for the gate
            await self.gate.admit_all(call, TF_SERVING, models_named(path, request))
        return await self.backend.forward(path, request, call)
