"""Conversion between tfgate.v1.Tensor, numpy arrays and TF Serving's TensorProto.

Pure functions, no I/O. Numeric data moves as whole arrays: a request's values become one
``tensor_content`` buffer, and a response's values are written as one packed field, so no step
loops over elements in Python. Arrays hold each dtype's wire layout (see tfgate.dtypes); string
tensors are object arrays of ``bytes``.
"""

from __future__ import annotations

import array
import functools
import math
import sys
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np

from tfgate import dtypes, wire
from tfgate.dtypes import DType
from tfgate.errors import BadBackendAnswer, InvalidArgument, Unsupported, counted
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tfgate.v1 import inference_pb2

Array = np.ndarray[Any, Any]
Shape = tuple[int, ...]
# An input as a front hands it over: a tfgate.v1.Tensor (gRPC, or tfgate.v1 as JSON) or an array
# parsed from TF Serving's REST JSON.
Given = inference_pb2.Tensor | Array

# The value lists of tfgate.v1.Tensor, in field order.
VALUE_LISTS: Final = ("floats", "doubles", "ints", "strings", "bytes_values", "bools")
_VALUE_FIELDS: Final = frozenset(VALUE_LISTS)
# No tensor, even an empty one, may span more than this many elements in its non-zero dimensions.
_MAX_EXTENT: Final = 2**40
# Dimensions a request tensor may have: numpy's limit (TensorFlow's is 254).
MAX_RANK: Final = 64
_F32: Final = np.dtype("<f4")
_F64: Final = np.dtype("<f8")


class _SameBytes(NamedTuple):
    """A float dtype whose TensorProto values and tfgate.v1.Tensor list are the very same
    little-endian bytes."""

    field: int  # the tfgate.v1.Tensor list's field number
    values: str  # its name
    proto_values: str  # the TensorProto *_val list
    element: np.dtype[Any]
    code: str  # the array module's type code
    dtype_field: bytes  # tfgate.v1.Tensor.dtype (field 8), written


# TensorProto dtype enum -> how its values move without numpy.
_SAME_BYTES: Final = {
    1: _SameBytes(2, "floats", "float_val", _F32, "f", wire.length_delimited(8, b"float32")),
    2: _SameBytes(3, "doubles", "double_val", _F64, "d", wire.length_delimited(8, b"float64")),
}


def _listed(values: Sequence[Any], dtype: Any) -> Array:
    """A message's repeated scalar field as a 1-D array of ``dtype``.

    numpy reads a long field in bulk, but costs ~5 µs per call; a few values are cheaper one by one.
    """
    if len(values) <= wire.FEW:
        return np.fromiter(values, dtype=dtype, count=len(values))
    return np.array(values, dtype=dtype)


def _float_bytes(values: Sequence[float], same: _SameBytes) -> wire.Chunk:
    """A float list's packed little-endian bytes: through the array module for a few values, as
    numpy's buffer for many (see _listed)."""
    if len(values) > wire.FEW:
        return wire.view(np.array(values, dtype=same.element))
    out = array.array(same.code, values)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def _in_place(
    packed: tuple[int, memoryview] | None, field: int, count: int, itemsize: int
) -> memoryview | None:
    """``packed``'s payload (bytes, as tfgate.wire.fields gives it) when it is list ``field``
    with as many values as the message says, ``count``: the values, read in place."""
    if packed is not None and packed[0] == field and packed[1].nbytes == count * itemsize:
        return packed[1]
    return None


def describe_shape(shape: Shape | None) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def check_shape(what: str, shape: Shape, spec: Shape | None) -> None:
    """Refuses ``shape`` where the signature's ``spec`` (-1: any size) says otherwise."""
    if spec is None:
        return
    if len(shape) != len(spec) or any(s >= 0 and s != d for d, s in zip(shape, spec, strict=True)):
        raise InvalidArgument(
            f"{what}: shape {describe_shape(shape)} does not match the signature's "
            f"{describe_shape(spec)}"
        )


def _fitted(what: str, count: int, spec: Shape | None) -> Shape:
    """The shape of ``count`` values sent without one: the signature's ``spec`` with its one
    unknown dimension (-1) worked out, e.g. [-1, 1] with 3 values is [3, 1]. For an unknown rank
    one value is a scalar (as TF Serving's columnar JSON reads it) and more are 1-D. Refused when
    no shape of ``spec`` holds ``count`` values, or more than one does."""
    if spec is None:
        return () if count == 1 else (count,)
    if len(spec) == 1 and spec[0] < 0:  # the common batch of scalars
        return (count,)
    unknown = [i for i, d in enumerate(spec) if d < 0]
    known = math.prod(d for d in spec if d >= 0)
    if not unknown:
        if known == count:
            return spec
    elif known and count % known == 0 and len(unknown) == 1:
        at = unknown[0]
        return (*spec[:at], count // known, *spec[at + 1 :])
    elif known and count % known == 0:
        raise InvalidArgument(
            f"{what}: the signature's {describe_shape(spec)} holds {counted(count, 'value')} "
            "in more than one shape: send a shape"
        )
    raise InvalidArgument(
        f"{what}: no shape of the signature's {describe_shape(spec)} holds "
        f"{counted(count, 'value')}"
    )


def _request_shape(
    what: str, tensor: inference_pb2.Tensor, count: int, spec: Shape | None
) -> Shape:
    if not tensor.shape:
        shape = _fitted(what, count, spec)
    else:
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidArgument(f"{what}: shape {describe_shape(shape)} has a negative dimension")
    if len(shape) > MAX_RANK:
        raise InvalidArgument(
            f"{what}: shape has {len(shape)} dimensions, more than tfgate's {MAX_RANK}"
        )
    if math.prod(d for d in shape if d) > _MAX_EXTENT:
        raise InvalidArgument(f"{what}: shape {describe_shape(shape)} is too large")
    size = math.prod(shape)
    if size != count:
        raise InvalidArgument(
            f"{what}: shape {describe_shape(shape)} holds {counted(size, 'value')}, but "
            f"{counted(count, 'was', 'were')} given"
        )
    return shape


def chosen_list(what: str, tensor: inference_pb2.Tensor) -> tuple[str | None, Sequence[Any]]:
    """The one value list ``tensor`` sets, and its values; (None, ()) when it sets none."""
    # ListFields lists only the fields set, in field order: one call, however many lists.
    present = [(f.name, v) for f, v in tensor.ListFields() if f.name in _VALUE_FIELDS]
    if len(present) > 1:
        names = ", ".join(name for name, _ in present)
        raise InvalidArgument(f"{what}: set exactly one value list, got {names}")
    return present[0] if present else (None, ())


def _to_float(what: str, values: Array, dtype: DType) -> Array:
    assert dtype.wire is not None
    if values.dtype == dtype.wire:
        return values  # nothing to cast, nothing that can overflow
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype.is_bfloat16:
            out = float32_to_bfloat16(values.astype(np.float32))
            overflow = np.isinf(bfloat16_to_float32(out))
        else:
            out = values.astype(dtype.wire)
            overflow = np.isinf(out)
    if overflow.any() and np.isfinite(values[overflow]).any():
        raise InvalidArgument(f"{what}: a value is out of range for {dtype.name}")
    return out


def _to_int(what: str, values: Array, dtype: DType) -> Array:
    assert dtype.wire is not None
    low, high = dtypes.int_range(dtype)
    if values.dtype.kind == "f" and (
        not np.isfinite(values).all() or (np.trunc(values) != values).any()
    ):
        raise InvalidArgument(
            f"{what}: {dtype.name} needs whole numbers, got a value with a fraction (send ints)"
        )
    # A float's bound is high + 1, a power of two and so exact in float64: float64(high) itself
    # rounds up to it for the 64-bit types, and would let 2**63 through to wrap around.
    if values.size and (
        values.min() < low
        or (values.max() >= float(high + 1) if values.dtype.kind == "f" else values.max() > high)
    ):
        raise InvalidArgument(f"{what}: a value is out of range for {dtype.name} [{low}, {high}]")
    return values.astype(dtype.wire)


def cast(what: str, values: Array, dtype: DType) -> Array:
    """Numeric ``values`` in ``dtype``'s wire layout, refusing what it cannot hold exactly."""
    if dtype.kind == "int":
        return _to_int(what, values, dtype)
    if dtype.kind == "float":
        return _to_float(what, values, dtype)
    raise InvalidArgument(f"{what}: numbers cannot be cast to {dtype.name}")


def from_domain(
    what: str,
    tensor: inference_pb2.Tensor,
    dtype: DType,
    spec: Shape | None,
    packed: tuple[int, memoryview] | None = None,
    *,
    flat: bool = False,
) -> Array:
    """The request tensor ``tensor`` as an array of ``dtype``, validated against ``spec``.

    ``what`` names the tensor in error messages, e.g. "input 'x'". ``packed`` may be the field
    number and wire payload of its ``floats`` or ``doubles`` (tfgate.wire.packed_inputs): the
    values are then read in place rather than copied out of the message, when the field is the
    list chosen and its size agrees with the message's. ``flat``: without a shape, the values
    are 1-D whatever ``spec`` says (a domain input, which no signature shapes).
    """
    chosen, values = chosen_list(what, tensor)
    if chosen is None and (not tensor.shape or math.prod(tensor.shape) != 0):
        # proto3 cannot tell an empty list from none: only a shape with a 0 says "empty".
        raise InvalidArgument(
            f"{what}: no value list; set exactly one of {', '.join(VALUE_LISTS)} "
            "(an empty tensor needs a shape with a 0 dimension, e.g. [0, 3])"
        )
    if flat and not tensor.shape:
        shape: Shape = (len(values),)
    else:
        shape = _request_shape(what, tensor, len(values), spec)
    check_shape(what, shape, spec)
    if dtype.kind == "unsupported":
        raise Unsupported(f"{what}: the signature's dtype {dtype.name} cannot be fed by tfgate")
    if chosen is None:
        if dtype.kind == "string":
            return np.empty(shape, dtype=object)
        assert dtype.wire is not None
        return np.zeros(shape, dtype=dtype.wire)
    if dtype.kind == "string":
        if chosen == "strings":
            return _object_array(list(map(str.encode, values)), shape)
        if chosen == "bytes_values":
            return _object_array(list(values), shape)
    elif dtype.kind == "bool":
        if chosen == "bools":
            return _listed(values, np.bool_).reshape(shape)
    elif chosen == "ints":
        source = _listed(values, np.int64)
        converted = (
            _to_int(what, source, dtype) if dtype.kind == "int" else _to_float(what, source, dtype)
        )
        return converted.reshape(shape)
    elif chosen in ("floats", "doubles"):
        field, element = (2, _F32) if chosen == "floats" else (3, _F64)
        payload = _in_place(packed, field, len(values), element.itemsize)
        if payload is not None:
            source = np.frombuffer(payload, dtype=element)
        else:
            source = _listed(values, element)
        converted = (
            _to_int(what, source, dtype) if dtype.kind == "int" else _to_float(what, source, dtype)
        )
        return converted.reshape(shape)
    expected = {
        "string": "strings or bytes_values",
        "bool": "bools",
        "int": "ints (or whole-number floats)",
        "float": "floats, doubles or ints",
    }[dtype.kind]
    raise InvalidArgument(f"{what}: expects {dtype.name} ({expected}), got {chosen}")


def encode_input(
    what: str,
    given: Given,
    dtype: DType,
    spec: Shape | None,
    packed: tuple[int, memoryview] | None = None,
) -> tuple[Shape, list[wire.Chunk]]:
    """The serialized TensorProto, in chunks, for an input given as a tfgate.v1.Tensor or as an
    array (from JSON), cast to ``dtype`` and checked against ``spec``; and its shape.

    float32 and float64 inputs sent in the list of their own type (floats, doubles) need no cast,
    and their TensorProto bytes are the list's packed bytes: those are written without numpy,
    read in place when ``packed`` has them (see ``from_domain``).
    """
    if isinstance(given, np.ndarray):
        array = from_array(what, given, dtype, spec)
        return array.shape, to_proto_chunks(array, dtype)
    # Only a dense float input: a sparse one shares its dtype's enum, and is refused below.
    same = _SAME_BYTES.get(dtype.enum) if dtype.kind == "float" else None
    if same is not None:
        chosen, values = chosen_list(what, given)
        if chosen == same.values:
            shape = _request_shape(what, given, len(values), spec)
            check_shape(what, shape, spec)
            payload = _in_place(packed, same.field, len(values), same.element.itemsize)
            content = _float_bytes(values, same) if payload is None else payload
            head = _proto_head(dtype.enum, shape, len(content))
            return shape, [head, content] if len(content) else [head]
    array = from_domain(what, given, dtype, spec, packed)
    return array.shape, to_proto_chunks(array, dtype)


# What JSON values arrive as (tfgate.fronts.http): numpy's kinds, named as a caller sees them.
_GIVEN_KIND: Final = {"b": "bools", "i": "numbers", "u": "numbers", "f": "numbers", "O": "strings"}


def from_array(what: str, given: Array, dtype: DType, spec: Shape | None) -> Array:
    """An input array as JSON gives it (int64, uint64, float64, bool, or bytes objects) as an
    array of ``dtype``, validated against ``spec``: the rules of ``from_domain``."""
    check_shape(what, given.shape, spec)
    if dtype.kind == "unsupported":
        raise Unsupported(f"{what}: the signature's dtype {dtype.name} cannot be fed by tfgate")
    got = _GIVEN_KIND.get(given.dtype.kind, given.dtype.name)
    if dtype.kind == "string" and got == "strings":
        return given
    if dtype.kind == "bool" and got == "bools":
        return given
    if dtype.kind == "int" and got == "numbers":
        return _to_int(what, given.reshape(-1), dtype).reshape(given.shape)
    if dtype.kind == "float" and got == "numbers":
        return _to_float(what, given.reshape(-1), dtype).reshape(given.shape)
    expected = {
        "string": "strings",
        "bool": "true or false",
        "int": "whole numbers",
        "float": "numbers",
    }[dtype.kind]
    raise InvalidArgument(f"{what}: expects {dtype.name} ({expected}), got {got}")


def _object_array(items: Sequence[bytes], shape: Shape) -> Array:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def to_proto(array: Array, dtype: DType) -> tensor_pb2.TensorProto:
    """``array`` (in ``dtype``'s wire layout) as a TensorProto; numbers go in tensor_content."""
    proto = tensor_pb2.TensorProto(
        dtype=dtype.enum,  # type: ignore[arg-type]
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]
        ),
    )
    if dtype.kind == "string":
        proto.string_val.extend(array.ravel().tolist())
    else:
        assert dtype.wire is not None
        proto.tensor_content = np.ascontiguousarray(array, dtype=dtype.wire).tobytes()
    return proto


def to_proto_chunks(array: Array, dtype: DType) -> list[wire.Chunk]:
    """``to_proto(array, dtype)``, serialized, in chunks: the values are not copied here."""
    if dtype.kind == "string":
        return [to_proto(array, dtype).SerializeToString()]
    assert dtype.wire is not None
    content = np.ascontiguousarray(array, dtype=dtype.wire)  # 1-D at least: a scalar's shape is
    head = _proto_head(dtype.enum, array.shape, content.nbytes)  # the array's
    return [head, wire.view(content)] if content.nbytes else [head]


@functools.lru_cache(maxsize=1024)
def _proto_head(enum: int, shape: Shape, nbytes: int) -> bytes:
    """A numeric TensorProto up to its tensor_content payload: dtype, shape, content header."""
    dims: list[wire.Chunk] = []
    for d in shape:
        dims += wire.nested(2, [wire.int64_field(1, int(d))])
    chunks: list[wire.Chunk] = [wire.int64_field(1, enum), *wire.nested(2, dims)]
    if nbytes:
        chunks.append(wire.header(4, nbytes))
    return b"".join(chunks)


# TensorProto fields that say what a tensor is, not what it holds.
_NOT_VALUES: Final = frozenset({"dtype", "tensor_shape", "version_number"})
# numpy's limit on an array's dimensions (TensorFlow allows 254).
_MAX_DIMS: Final = 64


def bad_answer(what: str, text: str) -> BadBackendAnswer:
    """INTERNAL for an answer TF Serving would never send: ``what`` names the output or field."""
    return BadBackendAnswer(f"TF Serving's answer: {what}: {text}")


def answer_shape(what: str, proto: tensor_pb2.TensorProto) -> Shape:
    """The shape of TF Serving's output ``proto``, refused unless it is a tensor's: a known rank,
    no negative dimension, and not too large to be held (TensorFlow's own rules, numpy's limit).
    Reads the shape only, so it costs the same for any size."""
    if proto.tensor_shape.unknown_rank:
        raise bad_answer(what, "a shape of unknown rank")
    shape = tuple([d.size for d in proto.tensor_shape.dim])
    if shape and min(shape) < 0:
        raise bad_answer(what, f"shape {describe_shape(shape)} has a negative dimension")
    size = math.prod(shape)
    if size > _MAX_EXTENT or (not size and math.prod(d for d in shape if d) > _MAX_EXTENT):
        raise bad_answer(what, f"shape {describe_shape(shape)} is too large")
    return shape


def _answer_dtype(what: str, proto: tensor_pb2.TensorProto) -> DType:
    if proto.dtype == 0:
        raise bad_answer(what, "dtype DT_INVALID")
    dtype = dtypes.from_enum(proto.dtype)
    if dtype.kind == "unsupported":
        raise Unsupported(f"{what}: dtype {dtype.name} cannot be carried by tfgate.v1.Tensor")
    return dtype


def value_field(what: str, proto: tensor_pb2.TensorProto, dtype: DType) -> str | None:
    """The one field holding ``proto``'s values: tensor_content, the dtype's own ``*_val`` list,
    or None for no values at all. Values anywhere else would be dropped or misread."""
    found = [f.name for f, _ in proto.ListFields() if f.name not in _NOT_VALUES]
    if not found:
        return None
    if len(found) > 1:
        raise bad_answer(what, f"values in both {' and '.join(found)}")
    field = found[0]
    if field == "tensor_content" and dtype.kind == "string":
        raise bad_answer(what, "string values in tensor_content (TF Serving writes string_val)")
    if field not in ("tensor_content", dtype.val_field):
        raise bad_answer(
            what, f"{dtype.name} values in {field} (expected {dtype.val_field} or tensor_content)"
        )
    return field


def _checked_values(what: str, listed: Sequence[Any], dtype: DType) -> Array:
    """A ``*_val`` list as an array of ``dtype``'s wire layout, refusing values it cannot hold:
    the narrow integers share int32 ``int_val``, and half_val carries 16-bit patterns in int32s
    (TensorFlow writes each pattern as an unsigned 16-bit number)."""
    assert dtype.wire is not None and dtype.val_field is not None
    if dtype.val_field not in ("int_val", "half_val"):
        return _listed(listed, dtype.wire)
    values = _listed(listed, np.int32)
    if dtype.val_field == "half_val":
        low, high = 0, 0xFFFF
    else:
        low, high = dtypes.int_range(dtype)
    if values.size and (values.min() < low or values.max() > high):
        wrong = int(values[(values < low) | (values > high)][0])
        if dtype.val_field == "half_val":
            raise bad_answer(
                what, f"half_val value {wrong} is not a {dtype.name} bit pattern (0 to 65535)"
            )
        raise bad_answer(what, f"int_val value {wrong} is out of range for {dtype.name}")
    if dtype.val_field == "half_val":
        return values.astype(np.uint16).view(dtype.wire)
    return values.astype(dtype.wire)


def from_proto(what: str, proto: tensor_pb2.TensorProto) -> tuple[DType, Array]:
    """The values of TF Serving's output ``proto``, in either encoding, as an array and its DType.

    ``*_val`` lists shorter than the shape repeat their last value, and no values at all are
    zeros (or empty strings), as TensorFlow reads a TensorProto (Tensor::FromProto). Anything
    else TF Serving would not send is refused (``bad_answer``) rather than read as some
    other value. The caller bounds the size first (tfgate.translate.check_answer): a broadcast
    expands to the whole shape.
    """
    dtype = _answer_dtype(what, proto)
    shape = answer_shape(what, proto)
    if len(shape) > _MAX_DIMS:
        raise Unsupported(
            f"TF Serving's answer: {what}: {len(shape)} dimensions, more than the "
            f"{_MAX_DIMS} tfgate converts"
        )
    size = math.prod(shape)
    encoding = value_field(what, proto, dtype)
    values: Array
    if encoding == "tensor_content":
        assert dtype.wire is not None
        content = proto.tensor_content
        if len(content) != size * dtype.wire.itemsize:
            raise bad_answer(
                what,
                f"tensor_content has {len(content)} bytes, shape {describe_shape(shape)} "
                f"of {dtype.name} needs {size * dtype.wire.itemsize}",
            )
        if dtype.kind == "bool" and content.translate(None, b"\0\1"):
            raise bad_answer(what, "bool tensor_content holds a byte other than 0 or 1")
        return dtype, np.frombuffer(content, dtype=dtype.wire).reshape(shape)
    if encoding is None:
        values = np.empty(0, dtype=_fill_dtype(dtype))
    elif dtype.kind == "string":
        values = _object_array(list(proto.string_val), (len(proto.string_val),))
    else:
        values = _checked_values(what, getattr(proto, encoding), dtype)
    count = len(values)
    if count > size:
        raise bad_answer(
            what, f"{count} values for shape {describe_shape(shape)} of {size} elements"
        )
    if count < size:
        fill = values[-1] if count else (b"" if dtype.kind == "string" else 0)
        padded = np.empty(size, dtype=values.dtype)
        padded[:count] = values
        padded[count:] = fill
        values = padded
    return dtype, values.reshape(shape)


def _fill_dtype(dtype: DType) -> np.dtype[Any]:
    return np.dtype(object) if dtype.kind == "string" else np.dtype(dtype.wire)


def to_domain(what: str, array: Array, dtype: DType) -> inference_pb2.Tensor:
    """``array`` as a tfgate.v1.Tensor, its value list chosen by ``dtype``."""
    return inference_pb2.Tensor.FromString(to_domain_bytes(what, array, dtype))


def to_domain_bytes(what: str, array: Array, dtype: DType) -> bytes:
    """``array`` as a serialized tfgate.v1.Tensor (see ``to_domain``)."""
    return b"".join(to_domain_chunks(what, array, dtype))


def _packed(field: int, values: Array) -> list[wire.Chunk]:
    if not values.size:
        return []
    return [wire.header(field, values.nbytes), wire.view(np.ascontiguousarray(values))]


def to_domain_chunks(what: str, array: Array, dtype: DType) -> list[wire.Chunk]:
    """``to_domain_bytes`` in chunks: the values are not copied here."""
    flat = array.reshape(-1)
    chunks: list[wire.Chunk] = [wire.packed_varints(1, np.asarray(array.shape, dtype=np.int64))]
    if dtype.kind == "float":
        if dtype.wire == _F64:
            chunks += _packed(3, flat.astype(_F64, copy=False))
        else:
            as_f32 = bfloat16_to_float32(flat) if dtype.is_bfloat16 else flat
            chunks += _packed(2, as_f32.astype(_F32, copy=False))
    elif dtype.kind == "int":
        if dtype.name == "uint64" and flat.size and flat.max() > np.iinfo(np.int64).max:
            raise Unsupported(f"{what}: a uint64 value does not fit tfgate.v1.Tensor.ints")
        chunks.append(wire.packed_varints(4, flat.astype(np.int64, copy=False)))
    elif dtype.kind == "bool":
        chunks += _packed(7, flat.astype(np.uint8))
    chunks.append(wire.length_delimited(8, dtype.name.encode()))
    if dtype.kind != "string":
        return chunks
    tensor = inference_pb2.Tensor.FromString(b"".join(chunks))
    items = flat.tolist()
    try:
        tensor.strings.extend(list(map(bytes.decode, items)))
    except UnicodeDecodeError:
        tensor.bytes_values.extend(items)
    return [tensor.SerializeToString()]


def proto_to_domain_chunks(what: str, proto: tensor_pb2.TensorProto) -> list[wire.Chunk]:
    """``to_domain_chunks(what, *from_proto(what, proto))``, written more directly for float32
    and float64 with one value per element: their bytes move over as they are, without numpy
    (and so with any number of dimensions)."""
    same = _SAME_BYTES.get(proto.dtype)
    if same is None:
        return _converted_chunks(what, proto)
    dims = answer_shape(what, proto)
    size = math.prod(dims)
    encoding = value_field(what, proto, dtypes.BY_ENUM[proto.dtype])
    content: wire.Chunk
    if encoding == "tensor_content":
        content = proto.tensor_content
    else:
        listed = getattr(proto, same.proto_values)
        if len(listed) != size:
            return _converted_chunks(what, proto)  # a broadcast, or a bad answer
        content = _float_bytes(listed, same)
    if len(content) != size * same.element.itemsize:
        return _converted_chunks(what, proto)  # refused there, with the sizes
    return [_domain_head(dims, same.field, len(content)), content, same.dtype_field]


@functools.lru_cache(maxsize=1024)
def _domain_head(shape: Shape, field: int, nbytes: int) -> bytes:
    """A tfgate.v1.Tensor up to its packed values: shape, and the values' tag and length."""
    head = wire.length_delimited(1, b"".join(map(wire.varint, shape)))
    return head + wire.header(field, nbytes) if nbytes else head


def _converted_chunks(what: str, proto: tensor_pb2.TensorProto) -> list[wire.Chunk]:
    dtype, array = from_proto(what, proto)
    return to_domain_chunks(what, array, dtype)


def float32_to_bfloat16(values: Array) -> Array:
    """float32 → bfloat16 bit patterns (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    out[np.isnan(values)] = 0x7FC0
    return out


def bfloat16_to_float32(bits: Array) -> Array:
    """bfloat16 bit patterns (uint16) → float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


class FromBackend:
    """An output tensor as TF Serving answered it, converted only when a front asks for it, in
    the form that front writes: tfgate.v1.Tensor wire bytes (gRPC) or an array (JSON)."""

    __slots__ = ("proto",)

    def __init__(self, proto: tensor_pb2.TensorProto) -> None:
        self.proto = proto

    def domain_chunks(self, what: str) -> list[wire.Chunk]:
        return proto_to_domain_chunks(what, self.proto)

    def array(self, what: str) -> tuple[DType, Array]:
        return from_proto(what, self.proto)


class Made:
    """An output tensor made by tfgate (postprocessing), as an array of ``dtype``."""

    __slots__ = ("dtype", "values")

    def __init__(self, dtype: DType, values: Array) -> None:
        self.dtype = dtype
        self.values = values

    def domain_chunks(self, what: str) -> list[wire.Chunk]:
        return to_domain_chunks(what, self.values, self.dtype)

    def array(self, what: str) -> tuple[DType, Array]:
        return self.dtype, self.values


Output = FromBackend | Made
