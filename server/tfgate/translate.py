"""tfgate.v1 requests to TF Serving requests, and TF Serving answers back to tfgate.v1.

Pure: every check that can be made without the backend is made here, so that a request that
would fail never reaches TF Serving. TF Serving's message types stay inside this module and
tfgate.upstream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, NoReturn

from google.protobuf import wrappers_pb2

from tfgate import tensors, wire
from tfgate.dtypes import DType
from tfgate.errors import FailedPrecondition, InvalidArgument
from tfgate.signatures import DEFAULT_SIGNATURE, SIGNATURE_DEF_FIELD, ModelMetadata, Signature
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)
from tfgate.v1 import inference_pb2

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
    if version < 0:
        raise InvalidArgument(f"version: must be positive (or 0 for the latest), got {version}")
    if version and label:
        raise InvalidArgument(
            f"version and version_label: set at most one, got {version} and '{label}'"
        )
    return Selector(model, version, label)


def metadata_request(sel: Selector) -> get_model_metadata_pb2.GetModelMetadataRequest:
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=sel.model_spec(), metadata_field=[SIGNATURE_DEF_FIELD]
    )


def status_request(model: str) -> get_model_status_pb2.GetModelStatusRequest:
    return get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model))


def signature_of(meta: ModelMetadata, name: str) -> tuple[str, Signature]:
    key = name or DEFAULT_SIGNATURE
    found = meta.signatures.get(key)
    if found is None:
        # TF Serving's own code and words for this case.
        raise FailedPrecondition(
            f"Serving signature key \"{key}\" not found. Model '{meta.model}' version "
            f"{meta.version} has: {', '.join(meta.signatures) or 'none'}"
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


def count_values(request: inference_pb2.PredictRequest) -> int:
    """How many values the request's input tensors carry in all."""
    return sum(
        len(t.floats)
        + len(t.doubles)
        + len(t.ints)
        + len(t.strings)
        + len(t.bytes_values)
        + len(t.bools)
        for t in request.inputs.values()
    )


def signature_place(signature: str, model: str, version: int) -> str:
    """How error messages name a signature of one model version."""
    return f"signature '{signature}' of model '{model}' version {version}"


def check_value_count(request: inference_pb2.PredictRequest, max_elements: int) -> None:
    """INVALID_ARGUMENT when the request's inputs carry more than ``max_elements`` values."""
    # Every value takes at least a byte on the wire: a request of at most that many bytes
    # needs no count.
    if request.ByteSize() <= max_elements:
        return
    total = count_values(request)
    if total > max_elements:
        raise InvalidArgument(
            f"inputs: {total} values in all, more than tfgate's max_tensor_elements "
            f"({max_elements})"
        )


def predict_request(
    request: inference_pb2.PredictRequest,
    sel: Selector,
    meta: ModelMetadata,
    max_elements: int = 2**62,
    packed: Mapping[str, tuple[int, memoryview]] | None = None,
) -> BackendRequest:
    """The TF Serving PredictRequest for ``request``, validated against the signature.

    ``packed``: the request's float payloads as found in its bytes (tfgate.wire.packed_inputs),
    read in place instead of copied out of the message.
    """
    check_value_count(request, max_elements)
    name, signature = signature_of(meta, request.signature)
    inputs = request.inputs
    if len(inputs) != len(signature.inputs) or not all(k in inputs for k in signature.inputs):
        _refuse_inputs(set(inputs), name, signature, meta)
    if request.output_filter:
        where = signature_place(name, meta.model, meta.version)
        check_output_filter(request.output_filter, signature.outputs, where)

    written = []
    for key in inputs:  # a protobuf map's items() is iterated in Python, its keys in C
        spec = signature.inputs[key]
        chunks = tensors.from_domain_chunks(
            f"input '{key}'",
            inputs[key],
            spec.dtype,
            spec.shape,
            packed.get(key) if packed else None,
        )
        written.append((key, chunks))
    return _request(sel, name, written, request.output_filter)


def _refuse_inputs(
    given: set[str], name: str, signature: Signature, meta: ModelMetadata
) -> NoReturn:
    """INVALID_ARGUMENT for inputs that are not the signature's: an unknown one, or missing ones."""
    where = signature_place(name, meta.model, meta.version)
    unknown = sorted(given - set(signature.inputs))
    if unknown:
        raise InvalidArgument(
            f"input '{unknown[0]}': not an input of {where} (inputs: {', '.join(signature.inputs)})"
        )
    missing = [k for k in signature.inputs if k not in given]
    specs = ", ".join(f"'{k}' ({signature.inputs[k].describe()})" for k in missing)
    raise InvalidArgument(f"inputs: missing {specs}, required by {where}")


@dataclass(frozen=True)
class BackendRequest:
    """A serialized tensorflow.serving.PredictRequest, and the signature it names."""

    data: bytes
    signature: str

    def parse(self) -> predict_pb2.PredictRequest:
        return predict_pb2.PredictRequest.FromString(self.data)


@functools.lru_cache(maxsize=1024)
def _model_spec_field(sel: Selector, signature: str) -> bytes:
    """PredictRequest.model_spec (field 1) for ``sel`` and ``signature``, serialized."""
    return b"".join(wire.nested(1, [sel.model_spec(signature).SerializeToString()]))


def backend_request(
    sel: Selector,
    signature: str,
    inputs: Mapping[str, tuple[DType, tensors.Array]],
    output_filter: Sequence[str],
) -> BackendRequest:
    """The TF Serving PredictRequest of arrays already in the signature's dtypes and shapes.

    Written as wire bytes: each tensor's values are copied once, into the request.
    """
    written = [
        (key, tensors.to_proto_chunks(array, dtype)) for key, (dtype, array) in inputs.items()
    ]
    return _request(sel, signature, written, output_filter)


def _request(
    sel: Selector,
    signature: str,
    inputs: Iterable[tuple[str, list[wire.Chunk]]],
    output_filter: Sequence[str],
) -> BackendRequest:
    """The PredictRequest of serialized TensorProtos."""
    chunks: list[wire.Chunk] = [_model_spec_field(sel, signature)]
    for key, tensor in inputs:
        chunks.append(wire.map_entry_head(2, key, wire.size_of(tensor)))
        chunks += tensor
    chunks += [wire.length_delimited(3, alias.encode()) for alias in output_filter]
    return BackendRequest(b"".join(chunks), signature)


# Turns one TF Serving output (name, dtype, array) into the domain outputs it makes.
Outputs = Callable[[str, DType, tensors.Array], Iterable[tuple[str, DType, tensors.Array]]]


@dataclass(frozen=True)
class EncodedResponse:
    """A serialized tfgate.v1.PredictResponse, sent as it is, and the version that answered."""

    data: bytes
    version: int

    def parse(self) -> inference_pb2.PredictResponse:
        return inference_pb2.PredictResponse.FromString(self.data)


def predict_response(
    response: predict_pb2.PredictResponse,
    sel: Selector,
    signature: str,
    outputs: Outputs | None = None,
) -> EncodedResponse:
    """TF Serving's answer as a tfgate.v1.PredictResponse, through ``outputs`` if given.

    Written as wire bytes, handed to gRPC as they are: large outputs never pass through Python
    lists, and each output's values are copied once.
    """
    spec = response.model_spec
    chunks: list[wire.Chunk] = [
        wire.length_delimited(1, (spec.name or sel.model).encode()),
        wire.int64_field(2, spec.version.value),
        wire.length_delimited(3, (spec.signature_name or signature).encode()),
    ]
    answered = response.outputs
    for key in answered:  # see predict_request
        proto = answered[key]
        if outputs is None:
            chunks += _output_entry(key, tensors.proto_to_domain_chunks(f"output '{key}'", proto))
            continue
        dtype, array = tensors.from_proto(f"output '{key}'", proto)
        for name, made_dtype, made_array in outputs(key, dtype, array):
            tensor = tensors.to_domain_chunks(f"output '{name}'", made_array, made_dtype)
            chunks += _output_entry(name, tensor)
    return EncodedResponse(b"".join(chunks), spec.version.value)


def _output_entry(name: str, tensor: list[wire.Chunk]) -> list[wire.Chunk]:
    """One entry of PredictResponse.outputs (field 4), a map entry of name and Tensor."""
    return [wire.map_entry_head(4, name, wire.size_of(tensor)), *tensor]


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
