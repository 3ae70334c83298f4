"""TensorProto <-> numpy, with the semantics of TensorFlow's C++ ``Tensor`` (no I/O, no TF).

The functions take any generated ``tensorflow.TensorProto`` class (the server passes the
official one; tests may pass another copy) and use only its fields.

Decoding follows ``Tensor::FromProto``: a non-empty ``tensor_content`` must hold exactly the
tensor's bytes; otherwise the ``*_val`` field of the dtype is read, where fewer values than
elements repeat the last one, no values at all give zeros, and extra values are ignored.
Encoding follows ``Tensor::AsProtoField`` (every element in the ``*_val`` field, TF Serving's
default) or ``Tensor::AsProtoTensorContent`` (``--enable_serialization_as_tensor_content``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tfgate import wire

TensorProto = Any  # a generated tensorflow.TensorProto; it ships without type stubs


class TensorError(ValueError):
    """The proto does not describe a valid tensor (TF: "tensor parsing error")."""


@dataclass(frozen=True)
class _DType:
    enum: int
    name: str  # DataTypeString(), used in TensorFlow's error messages
    field: str  # the TensorProto field of AsProtoField
    numpy: str  # numpy dtype name; "object" holds bytes


# tensorflow/core/framework/types.proto. Quantized, resource and variant types are not
# supported: no SavedModel signature the gateway serves uses them.
_DTYPES = [
    _DType(1, "float", "float_val", "float32"),
    _DType(2, "double", "double_val", "float64"),
    _DType(3, "int32", "int_val", "int32"),
    _DType(4, "uint8", "int_val", "uint8"),
    _DType(5, "int16", "int_val", "int16"),
    _DType(6, "int8", "int_val", "int8"),
    _DType(7, "string", "string_val", "object"),
    _DType(8, "complex64", "scomplex_val", "complex64"),
    _DType(9, "int64", "int64_val", "int64"),
    _DType(10, "bool", "bool_val", "bool"),
    _DType(14, "bfloat16", "half_val", "bfloat16"),
    _DType(17, "uint16", "int_val", "uint16"),
    _DType(18, "complex128", "dcomplex_val", "complex128"),
    _DType(19, "half", "half_val", "float16"),
    _DType(22, "uint32", "uint32_val", "uint32"),
    _DType(23, "uint64", "uint64_val", "uint64"),
]
_BY_ENUM = {d.enum: d for d in _DTYPES}
_BY_NUMPY = {d.numpy: d for d in _DTYPES}


def dtype_name(enum: int) -> str:
    """TensorFlow's name for a DataType enum value, as in its error messages."""
    known = _BY_ENUM.get(enum)
    return known.name if known else f"unknown dtype enum ({enum})"


def dtype_enum(array: npt.NDArray[Any]) -> int:
    """The DataType enum value of a numpy array (bytes and str arrays are DT_STRING)."""
    return _dtype_of(array).enum


def _numpy_dtype(dtype: _DType) -> np.dtype[Any]:
    if dtype.numpy == "bfloat16":
        import ml_dtypes  # comes with TensorFlow; only bfloat16 tensors need it

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype.numpy)


def _dtype_of(array: npt.NDArray[Any]) -> _DType:
    name = "object" if array.dtype.kind in "OSU" else array.dtype.name
    known = _BY_NUMPY.get(name)
    if known is None:
        raise TensorError(f"unsupported numpy dtype {array.dtype}")
    return known


def _shape(proto: TensorProto) -> tuple[int, ...]:
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise TensorError("a tensor must have a known rank")
    dims = tuple(int(d.size) for d in shape.dim)
    if any(d < 0 for d in dims):
        raise TensorError(f"invalid shape {list(dims)}")
    return dims


def to_ndarray(proto: TensorProto) -> npt.NDArray[Any]:
    """Decodes a TensorProto; raises TensorError where ``Tensor::FromProto`` fails."""
    dtype = _BY_ENUM.get(proto.dtype)
    if dtype is None:
        raise TensorError(f"unsupported dtype {dtype_name(proto.dtype)}")
    shape = _shape(proto)
    count = math.prod(shape)
    np_dtype = _numpy_dtype(dtype)
    if proto.tensor_content:
        if dtype.enum == 7:
            flat = _decode_string_list(bytes(proto.tensor_content), count)
        else:
            content = bytes(proto.tensor_content)
            if len(content) != count * np_dtype.itemsize:
                raise TensorError(
                    f"tensor_content holds {len(content)} bytes, the shape needs "
                    f"{count * np_dtype.itemsize}"
                )
            # Host byte order, as TensorFlow writes it; every platform TF supports is
            # little-endian.
            flat = np.frombuffer(content, dtype=np_dtype).copy()
        return flat.reshape(shape)
    return _from_values(dtype, np_dtype, proto, count).reshape(shape)


def _from_values(
    dtype: _DType, np_dtype: np.dtype[Any], proto: TensorProto, count: int
) -> npt.NDArray[Any]:
    raw = list(getattr(proto, dtype.field))
    if dtype.field == "half_val":
        values: npt.NDArray[Any] = np.array(raw, dtype=np.uint16).view(np_dtype)
    elif dtype.field in ("scomplex_val", "dcomplex_val"):
        pairs = np.array(raw[: len(raw) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        values = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np_dtype)
    elif dtype.enum == 7:
        values = np.empty(len(raw), dtype=object)
        values[:] = [bytes(v) for v in raw]
    elif dtype.field == "int_val":
        # int_val holds int32s; narrower types take their low bits, as a C++ cast does.
        values = np.array(raw, dtype=np.int64).astype(np_dtype)
    else:
        values = np.array(raw, dtype=np_dtype)

    if count == 0:
        return values[:0]
    if len(values) == 0:
        if dtype.enum == 7:
            filled = np.empty(count, dtype=object)
            filled[:] = [b""] * count
            return filled
        return np.zeros(count, dtype=np_dtype)
    if len(values) >= count:
        return values[:count]
    padding = np.repeat(values[-1:], count - len(values))
    return np.concatenate([values, padding])


def fill_proto(array: npt.NDArray[Any], proto: TensorProto, *, as_content: bool) -> None:
    """Encodes ``array`` into an empty ``proto``: ``*_val`` fields, or ``tensor_content``."""
    dtype = _dtype_of(array)
    proto.dtype = dtype.enum
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    flat = array.reshape(-1)
    if dtype.enum == 7:
        strings = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]
        if as_content:
            proto.tensor_content = _encode_string_list(strings)
        else:
            proto.string_val.extend(strings)
    elif as_content:
        proto.tensor_content = flat.tobytes()
    elif dtype.field == "half_val":
        proto.half_val.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif dtype.field in ("scomplex_val", "dcomplex_val"):
        pairs = np.stack([flat.real, flat.imag], axis=-1).reshape(-1)
        getattr(proto, dtype.field).extend(pairs.tolist())
    else:
        getattr(proto, dtype.field).extend(flat.tolist())


# DT_STRING in tensor_content (port::EncodeStringList): the varint32 length of every
# element, then the elements' bytes.


def _encode_string_list(strings: list[bytes]) -> bytes:
    return b"".join(map(wire.varint, map(len, strings))) + b"".join(strings)


def _decode_string_list(data: bytes, count: int) -> npt.NDArray[Any]:
    lengths = []
    pos = 0
    for _ in range(count):
        n = shift = 0
        while True:
            if pos >= len(data) or shift > 28:
                raise TensorError("malformed string tensor_content")
            byte = data[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        lengths.append(n)
    if pos + sum(lengths) != len(data):
        raise TensorError("malformed string tensor_content")
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        out[i] = data[pos : pos + n]
        pos += n
    return out
