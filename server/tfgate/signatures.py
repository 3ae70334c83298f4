"""A model version's signatures, read from TF Serving's GetModelMetadata answer.

Pure: TF Serving's ``SignatureDefMap`` goes in, tfgate's own frozen description comes out, and
the rest of tfgate validates requests against that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError

from tfgate import dtypes
from tfgate.dtypes import DType
from tfgate.errors import BadBackendAnswer
from tfgate.tensors import Shape, describe_shape
from tfgate.tfs.tensorflow.core.protobuf import meta_graph_pb2
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2

DEFAULT_SIGNATURE: Final = "serving_default"
SIGNATURE_DEF_FIELD: Final = "signature_def"
# SavedModel's own entries in the signature map (__saved_model_init_op): not for callers.
INTERNAL_PREFIX: Final = "__saved_model"


@dataclass(frozen=True)
class TensorSpec:
    """What a signature declares for one tensor. ``shape`` is None for an unknown rank."""

    dtype: DType
    shape: Shape | None

    def describe(self) -> str:
        return f"{self.dtype.name} {describe_shape(self.shape)}"


@dataclass(frozen=True)
class Signature:
    method: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    @property
    def batched(self) -> bool:
        """Whether every input and output is batched: its first dimension -1 (any size), so
        that calls can be joined along it and the answer cut back into their rows."""
        tensors = (*self.inputs.values(), *self.outputs.values())
        return bool(self.inputs) and all(
            spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] == -1
            for spec in tensors
        )


@dataclass(frozen=True)
class ModelMetadata:
    """The signatures of one resolved model version."""

    model: str
    version: int
    signatures: Mapping[str, Signature]

    def offered(self) -> str:
        """The signatures a caller can name, for messages: SavedModel's own init op (which TF
        Serving lists too) is not one of them."""
        return ", ".join(k for k in self.signatures if not k.startswith(INTERNAL_PREFIX)) or "none"


def _spec(info: meta_graph_pb2.TensorInfo, what: str) -> TensorSpec:
    if info.WhichOneof("encoding") != "name":
        # Sparse and composite tensors cannot be fed through a dense tfgate.v1.Tensor.
        return TensorSpec(DType(info.dtype, "sparse", "unsupported", None, None), None)
    # No tensor_shape at all (an older export, e.g. TF Serving's half_plus_three) says no more
    # than unknown_rank does; a scalar's is present and empty.
    shape = info.tensor_shape
    known = info.HasField("tensor_shape") and not shape.unknown_rank
    dims = tuple(int(d.size) for d in shape.dim) if known else None
    if dims is not None and any(d < -1 for d in dims):
        # -1 is a dimension of any size; below it, TensorFlow's shapes have nothing.
        raise BadBackendAnswer(
            f"TF Serving's answer: {what}: shape {describe_shape(dims)} has a dimension below -1"
        )
    return TensorSpec(dtypes.from_enum(info.dtype), dims)


def _signature(definition: meta_graph_pb2.SignatureDef, where: str) -> Signature:
    return Signature(
        method=definition.method_name,
        inputs={k: _spec(v, f"{where}, input '{k}'") for k, v in sorted(definition.inputs.items())},
        outputs={
            k: _spec(v, f"{where}, output '{k}'") for k, v in sorted(definition.outputs.items())
        },
    )


def from_metadata(
    response: get_model_metadata_pb2.GetModelMetadataResponse,
) -> ModelMetadata:
    """tfgate's view of a GetModelMetadataResponse asked with metadata_field "signature_def"."""
    model, version = response.model_spec.name, response.model_spec.version.value
    where = f"the metadata of model '{model}' version {version}"
    packed = response.metadata.get(SIGNATURE_DEF_FIELD)
    if packed is None:
        raise BadBackendAnswer(f"TF Serving's answer: {where} has no signature_def")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    try:
        unpacked = packed.Unpack(signature_map)
    except DecodeError:
        raise BadBackendAnswer(
            f"TF Serving's answer: {where}: signature_def is not a valid SignatureDefMap"
        ) from None
    if not unpacked:
        raise BadBackendAnswer(
            f"TF Serving's answer: {where}: signature_def holds a '{packed.type_url}', "
            "not a SignatureDefMap"
        )
    return ModelMetadata(
        model=model,
        version=version,
        signatures={
            k: _signature(v, f"{where}, signature '{k}'")
            for k, v in sorted(signature_map.signature_def.items())
        },
    )
