"""Micro-batching's pure half: several Predicts as one along the first dimension, and the one
answer cut back into each member's rows (tfgate.batcher gathers the members).

Pure, no I/O. Numbers are joined and cut as bytes (``tensor_content``: a row is a run of
bytes, rows follow each other); strings and the ``*_val`` encodings go through
tfgate.tensors. Padding up to an allowed batch size repeats the batch's first row, as
TensorFlow's own batching pads, so a model never sees values no caller sent; the padded rows'
answers are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tfgate import dtypes, tensors, translate
from tfgate.errors import BadBackendAnswer, FailedPrecondition
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tfgate.tfs.tensorflow_serving.apis import model_pb2, predict_pb2

# What must be equal for two requests to share a batch, besides the first dimension: each
# input's name, dtype and trailing dimensions, and the outputs asked for.
Key = tuple[object, ...]


@dataclass(frozen=True)
class Member:
    """One caller's request, parsed: its inputs and how many rows it brings."""

    request: predict_pb2.PredictRequest
    rows: int


def member_of(request: predict_pb2.PredictRequest) -> Member | None:
    """``request`` as a batch member, or None when it cannot be one: an input without a first
    dimension (a scalar, unknown rank), or inputs whose first dimensions differ."""
    rows = None
    for proto in request.inputs.values():
        dims = proto.tensor_shape.dim
        if proto.tensor_shape.unknown_rank or not dims:
            return None
        first = dims[0].size
        if rows is None:
            rows = first
        elif first != rows:
            return None
    if rows is None or rows <= 0:
        return None
    return Member(request, rows)


def key_of(request: predict_pb2.PredictRequest) -> Key:
    """What ``request`` shares with every other member of its batch (its first dimension
    aside): inputs by name with dtype and trailing dimensions, and its output filter."""
    inputs = tuple(
        sorted(
            (name, proto.dtype, tuple(d.size for d in proto.tensor_shape.dim[1:]))
            for name, proto in request.inputs.items()
        )
    )
    return inputs, tuple(sorted(request.output_filter))


def padded_size(rows: int, allowed: Sequence[int]) -> int:
    """The batch size ``rows`` are sent as: the smallest allowed size that holds them (none
    allowed: ``rows`` itself)."""
    for size in allowed:
        if size >= rows:
            return size
    return rows


def _shape(proto: tensor_pb2.TensorProto, rows: int) -> tensor_shape_pb2.TensorShapeProto:
    dims = [rows, *(d.size for d in proto.tensor_shape.dim[1:])]
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def _joined(name: str, parts: Sequence[tensor_pb2.TensorProto], pad: int) -> tensor_pb2.TensorProto:
    """The tensors ``parts`` (one input, every member) one after the other along the first
    dimension, with ``pad`` copies of the first row after them."""
    first = parts[0]
    rows = sum(p.tensor_shape.dim[0].size for p in parts)
    if all(p.tensor_content for p in parts):
        content = b"".join(p.tensor_content for p in parts)
        if pad:
            row = len(first.tensor_content) // first.tensor_shape.dim[0].size
            content += first.tensor_content[:row] * pad
        joined = tensor_pb2.TensorProto(dtype=first.dtype, tensor_shape=_shape(first, rows + pad))
        joined.tensor_content = content
        return joined
    arrays = [tensors.from_proto(f"input '{name}'", p)[1] for p in parts]
    if pad:
        arrays.append(np.repeat(arrays[0][:1], pad, axis=0))
    return tensors.to_proto(np.concatenate(arrays), dtypes.from_enum(first.dtype))


def merge(
    members: Sequence[Member], spec: model_pb2.ModelSpec, allowed: Sequence[int] = ()
) -> tuple[bytes, int]:
    """One PredictRequest for ``members`` (which share a Key) to the model version ``spec``
    names, padded up to an allowed size; returns it serialized, with the batch size sent."""
    rows = sum(m.rows for m in members)
    size = padded_size(rows, allowed)
    first = members[0].request
    merged = predict_pb2.PredictRequest(model_spec=spec, output_filter=first.output_filter)
    for name in first.inputs:
        parts = [m.request.inputs[name] for m in members]
        merged.inputs[name].CopyFrom(_joined(name, parts, size - rows))
    return merged.SerializeToString(), size


class Unsplittable(FailedPrecondition):
    """An output whose first dimension is not the batch's: the model reduced over the batch,
    so no member's share of it can be told."""

    def __init__(self, output: str, dims: Sequence[int], size: int) -> None:
        self.output = output
        super().__init__(
            f"output '{output}' has shape {list(dims)}, whose first dimension is not the batch "
            f"size {size}: the model does not answer row by row, so its calls cannot be "
            "batched (turn [models.NAME.batching] off for it)"
        )


def _cut(
    name: str, proto: tensor_pb2.TensorProto, rows: Sequence[int], size: int
) -> list[tensor_pb2.TensorProto]:
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or not dims or dims[0] != size:
        raise Unsplittable(name, dims, size)
    dtype = dtypes.BY_ENUM.get(proto.dtype)
    what = f"output '{name}'"
    if dtype is not None and tensors.value_field(what, proto, dtype) == "tensor_content":
        per_row, rest = divmod(len(proto.tensor_content), size)
        if rest:
            raise BadBackendAnswer(
                f"TF Serving's answer: output '{name}': {len(proto.tensor_content)} bytes of "
                f"tensor_content for {size} rows"
            )
        out, start = [], 0
        for n in rows:
            part = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=_shape(proto, n))
            part.tensor_content = proto.tensor_content[start * per_row : (start + n) * per_row]
            out.append(part)
            start += n
        return out
    found, array = tensors.from_proto(what, proto)
    out, start = [], 0
    for n in rows:
        out.append(tensors.to_proto(array[start : start + n], found))
        start += n
    return out


def split(
    answer: predict_pb2.PredictResponse, rows: Sequence[int], size: int, max_elements: int
) -> list[predict_pb2.PredictResponse]:
    """``answer`` to a merged request of ``size`` rows (``rows`` per member, padding after
    them) as one answer per member; Unsplittable names an output that is not row by row.
    ``max_elements`` bounds the answer's values, as for one call (translate.check_answer: the
    shapes checked before any value is read, and no output expanded far from fewer values)."""
    translate.check_answer(answer, (), max_elements)
    answers = [predict_pb2.PredictResponse(model_spec=answer.model_spec) for _ in rows]
    for name, proto in answer.outputs.items():
        for mine, part in zip(answers, _cut(name, proto, rows, size), strict=True):
            mine.outputs[name].CopyFrom(part)
    return answers
