"""Selectors, TF Serving's requests written as bytes, and answers written as tfgate.v1.

Pure. The plans (tfgate.plans.plan) check a request against its signature and hand their
tensors here; TF Serving's message types stay inside this module, tfgate.tensors, the plans and
tfgate.backends.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from google.protobuf import wrappers_pb2

from tfgate import dtypes, tensors, wire
from tfgate.errors import (
    MAX_NAME,
    BadBackendAnswer,
    FailedPrecondition,
    InvalidArgument,
    check_name,
    counted,
)
from tfgate.signatures import DEFAULT_SIGNATURE, SIGNATURE_DEF_FIELD, ModelMetadata, Signature
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)
from tfgate.v1 import inference_pb2

if TYPE_CHECKING:
    from tfgate.domain import Answer

# ModelVersionStatus.State numbers (tensorflow_serving/apis/get_model_status.proto).
_STATES: Final = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}


class Selector(NamedTuple):
    """Which version of which model a caller asked for: a number, a label, or the latest.

    A named tuple: it keys the signature cache, and tuples hash and compare in C.
    """

    model: str
    version: int = 0
    label: str = ""

    def describe(self) -> str:
        if self.version:
            return f"model '{self.model}' version {self.version}"
        if self.label:
            return f"model '{self.model}' label '{self.label}'"
        return f"model '{self.model}'"

    def model_spec(self, signature: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.model, signature_name=signature)
        if self.version:
            spec.version.CopyFrom(wrappers_pb2.Int64Value(value=self.version))
        elif self.label:
            spec.version_label = self.label
        return spec


def selector(model: str, version: int, label: str) -> Selector:
    """Checks the model/version/version_label fields shared by Predict and GetModel."""
    if not model:
        raise InvalidArgument("model: required, got an empty name")
    check_name("model", model)
    check_name("version_label", label)
    if version < 0:
        raise InvalidArgument(f"version: must be positive (or 0 for the latest), got {version}")
    if version and label:
        raise InvalidArgument(
            f"version and version_label: set at most one, got {version} and '{label}'"
        )
    return Selector(model, version, label)


def check_names(signature: str, inputs: Iterable[str], output_filter: Iterable[str]) -> None:
    """Refuses a Predict's names over tfgate's bound (tfgate.errors.MAX_NAME), naming the field,
    before any of them is quoted in a message."""
    check_name("signature", signature)
    for name in inputs:
        if len(name) > MAX_NAME:
            check_name(f"input '{name[:32]}...'", name)
    for name in output_filter:
        if len(name) > MAX_NAME:
            check_name(f"output_filter '{name[:32]}...'", name)


def metadata_request(sel: Selector) -> get_model_metadata_pb2.GetModelMetadataRequest:
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=sel.model_spec(), metadata_field=[SIGNATURE_DEF_FIELD]
    )


def status_request(sel: Selector) -> get_model_status_pb2.GetModelStatusRequest:
    """GetModelStatus for ``sel``: every version of the model when it names none."""
    return get_model_status_pb2.GetModelStatusRequest(model_spec=sel.model_spec())


def signature_of(meta: ModelMetadata, name: str) -> tuple[str, Signature]:
    key = name or DEFAULT_SIGNATURE
    found = meta.signatures.get(key)
    if found is None:
        # TF Serving's own code and words for this case.
        raise FailedPrecondition(
            f"Serving signature key \"{key}\" not found. Model '{meta.model}' version "
            f"{meta.version} has: {meta.offered()}"
        )
    return key, found


def check_output_filter(names: Sequence[str], outputs: Collection[str], where: str) -> list[str]:
    """``names`` if each is one of ``outputs``, once; else INVALID_ARGUMENT naming the culprit."""
    wanted: list[str] = []
    for name in names:
        if name not in outputs:
            raise InvalidArgument(
                f"output_filter: '{name}' is not an output of {where} (outputs: "
                f"{', '.join(outputs)})"
            )
        if name in wanted:
            raise InvalidArgument(f"output_filter: '{name}' is listed twice")
        wanted.append(name)
    return wanted


def signature_place(signature: str, model: str, version: int) -> str:
    """How error messages name a signature of one model version."""
    return f"signature '{signature}' of model '{model}' version {version}"


@dataclass(frozen=True)
class BackendRequest:
    """A serialized tensorflow.serving.PredictRequest."""

    data: bytes

    def parse(self) -> predict_pb2.PredictRequest:
        return predict_pb2.PredictRequest.FromString(self.data)


@functools.lru_cache(maxsize=1024)
def _model_spec_field(sel: Selector, signature: str) -> bytes:
    """PredictRequest.model_spec (field 1) for ``sel`` and ``signature``, serialized."""
    return b"".join(wire.nested(1, [sel.model_spec(signature).SerializeToString()]))


def backend_request(
    sel: Selector,
    signature: str,
    inputs: Iterable[tuple[str, list[wire.Chunk]]],
    output_filter: Sequence[str],
) -> BackendRequest:
    """The TF Serving PredictRequest of serialized TensorProtos (tfgate.tensors), written as
    wire bytes: each tensor's values are copied once, into the request."""
    chunks: list[wire.Chunk] = [_model_spec_field(sel, signature)]
    for key, tensor in inputs:
        chunks.append(wire.map_entry_head(2, key, wire.size_of(tensor)))
        chunks += tensor
    chunks += [wire.length_delimited(3, alias.encode()) for alias in output_filter]
    return BackendRequest(b"".join(chunks))


@dataclass(frozen=True)
class EncodedResponse:
    """A serialized tfgate.v1.PredictResponse, sent as it is, and the version that answered."""

    data: bytes
    version: int

    def parse(self) -> inference_pb2.PredictResponse:
        return inference_pb2.PredictResponse.FromString(self.data)


# The most bytes of values tfgate fills in for an output that carries fewer values than its
# shape holds (TensorFlow repeats the last): more could make a few bytes allocate gigabytes.
MAX_BROADCAST_BYTES: Final = 1 << 20


def check_answer(
    answer: predict_pb2.PredictResponse, expected: Collection[str], max_elements: int
) -> None:
    """Refuses TF Serving's Predict answer when it lacks an output it was asked for (``expected``;
    any answer has at least one), when an output's shape is not a tensor's, when its outputs
    hold more than ``max_elements`` values in all, or when an output would expand past
    MAX_BROADCAST_BYTES from fewer values than its shape holds: checked on the shapes alone,
    before any value is read, as a few bytes may declare a shape of billions of values. TF
    Serving writes every value of an output; a TensorProto may carry fewer (the last repeated),
    which tfgate reads as TensorFlow does, but only that far."""
    outputs = answer.outputs
    if not outputs:
        raise BadBackendAnswer("TF Serving's answer has no outputs")
    for name in expected:
        if name not in outputs:
            raise BadBackendAnswer(
                f"TF Serving's answer lacks output '{name}' (it has: {', '.join(outputs)})"
            )
    sizes = {
        key: math.prod(tensors.answer_shape(f"output '{key}'", outputs[key])) for key in outputs
    }
    total = sum(sizes.values())
    if total > max_elements:
        held = (
            f"output '{next(iter(sizes))}' holds {total} values"
            if len(sizes) == 1
            else f"outputs {', '.join(map(repr, sizes))} hold {total} values in all"
        )
        raise BadBackendAnswer(
            f"TF Serving's answer: {held}, more than tfgate's max_tensor_elements ({max_elements})"
        )
    for key, size in sizes.items():
        proto = outputs[key]
        dtype = dtypes.from_enum(proto.dtype)
        item = max(dtype.wire.itemsize, 1) if dtype.wire is not None else 8
        if size * item <= MAX_BROADCAST_BYTES:
            continue
        carried = len(getattr(proto, dtype.val_field)) if dtype.val_field else 0
        carried += len(proto.tensor_content) // item
        if carried < size:
            raise BadBackendAnswer(
                f"TF Serving's answer: output '{key}' of shape "
                f"{tensors.describe_shape(tuple(d.size for d in proto.tensor_shape.dim))} "
                f"carries {counted(carried, 'value')} for its {size}: tfgate fills in at most "
                f"{MAX_BROADCAST_BYTES} bytes from fewer values than a shape holds"
            )


def v1_response(answer: Answer) -> EncodedResponse:
    """``answer`` as a tfgate.v1.PredictResponse, written as wire bytes and handed to gRPC as
    they are: large outputs never pass through Python lists, and each output's values are
    copied once."""
    chunks: list[wire.Chunk] = [
        wire.length_delimited(1, answer.model.encode()),
        wire.int64_field(2, answer.version),
        wire.length_delimited(3, answer.signature.encode()),
    ]
    for name, output in answer.outputs:
        tensor = output.domain_chunks(f"output '{name}'")
        chunks.append(wire.map_entry_head(4, name, wire.size_of(tensor)))
        chunks += tensor
    return EncodedResponse(b"".join(chunks), answer.version)


def _tensor_spec(spec: tensors.Shape | None, dtype_name: str) -> inference_pb2.TensorSpec:
    if spec is None:
        return inference_pb2.TensorSpec(dtype=dtype_name, unknown_rank=True)
    return inference_pb2.TensorSpec(dtype=dtype_name, shape=spec)


def model_view(
    status: get_model_status_pb2.GetModelStatusResponse, meta: ModelMetadata
) -> inference_pb2.Model:
    """The tfgate.v1.Model for GetModel: every version's state, one version's signatures."""
    model = inference_pb2.Model(name=meta.model, version=meta.version)
    for item in sorted(status.model_version_status, key=lambda s: s.version):
        model.versions.add(
            version=item.version,
            state=_STATES.get(item.state, f"STATE_{item.state}"),
            error=item.status.error_message,
        )
    for name, signature in meta.signatures.items():
        if name.startswith("__saved_model"):
            continue  # SavedModel's own init op: listed by TF Serving, not something to call
        view = model.signatures[name]
        view.method = signature.method
        for key, spec in signature.inputs.items():
            view.inputs[key].CopyFrom(_tensor_spec(spec.shape, spec.dtype.name))
        for key, spec in signature.outputs.items():
            view.outputs[key].CopyFrom(_tensor_spec(spec.shape, spec.dtype.name))
    return model
