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
from typing import Any

import numpy as np
import numpy.typing as npt

from tfgate import dtypes, wire
from tfgate.dtypes import DType

TensorProto = Any  # a generated tensorflow.TensorProto; it ships without type stubs


class TensorError(ValueError):
    """The proto does not describe a valid tensor (TF: "tensor parsing error")."""


# tfgate.dtypes holds TensorFlow's DataType table; its names are numpy's, which differ from
# TensorFlow's own DataTypeString() for these three.
_TF_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
# Every DataType with a *_val field. Quantized, resource and variant types have none, and no
# SavedModel signature the gateway serves uses them.
_SUPPORTED = [d for d in dtypes.ALL if d.val_field is not None]
_BY_ENUM = {d.enum: d for d in _SUPPORTED}
_BY_NAME = {d.name: d for d in _SUPPORTED}


def dtype_name(enum: int) -> str:
    """TensorFlow's name for a DataType enum value, as in its error messages."""
    known = dtypes.BY_ENUM.get(enum)
    return _TF_NAMES.get(known.name, known.name) if known else f"unknown dtype enum ({enum})"


def dtype_enum(array: npt.NDArray[Any]) -> int:
    """The DataType enum value of a numpy array (bytes and str arrays are DT_STRING)."""
    return _dtype_of(array).enum


def _numpy_dtype(dtype: DType) -> np.dtype[Any]:
    # TensorFlow runs real bfloat16s and complex numbers, so their numpy dtypes are not
    # tfgate.dtypes' wire layouts (bfloat16 bit patterns as uint16, complex not carried).
    if dtype.kind == "string":
        return np.dtype(object)
    if dtype.is_bfloat16:
        import ml_dtypes  # comes with TensorFlow; only bfloat16 tensors need it

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype.name)


def _val_field(dtype: DType) -> str:
    assert dtype.val_field is not None  # every dtype in _SUPPORTED has one
    return dtype.val_field


def _dtype_of(array: npt.NDArray[Any]) -> DType:
    name = "string" if array.dtype.kind in "OSU" else array.dtype.name
    known = _BY_NAME.get(name)
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
        if dtype.kind == "string":
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
    dtype: DType, np_dtype: np.dtype[Any], proto: TensorProto, count: int
) -> npt.NDArray[Any]:
    field = _val_field(dtype)
    raw = list(getattr(proto, field))
    if field == "half_val":
        values: npt.NDArray[Any] = np.array(raw, dtype=np.uint16).view(np_dtype)
    elif field in ("scomplex_val", "dcomplex_val"):
        pairs = np.array(raw[: len(raw) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        values = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np_dtype)
    elif dtype.kind == "string":
        values = np.empty(len(raw), dtype=object)
        values[:] = [bytes(v) for v in raw]
    elif field == "int_val":
        # int_val holds int32s; narrower types take their low bits, as a C++ cast does.
        values = np.array(raw, dtype=np.int64).astype(np_dtype)
    else:
        values = np.array(raw, dtype=np_dtype)

    if count == 0:
        return values[:0]
    if len(values) == 0:
        if dtype.kind == "string":
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
    field = _val_field(dtype)
    proto.dtype = dtype.enum
    # Always present, as TensorShape::AsProto writes it: a scalar's is an empty tensor_shape {}.
    proto.tensor_shape.SetInParent()
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    flat = array.reshape(-1)
    if dtype.kind == "string":
        strings = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]
        if as_content:
            proto.tensor_content = _encode_string_list(strings)
        else:
            proto.string_val.extend(strings)
    elif as_content:
        proto.tensor_content = flat.tobytes()
    elif field == "half_val":
        proto.half_val.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif field in ("scomplex_val", "dcomplex_val"):
        pairs = np.stack([flat.real, flat.imag], axis=-1).reshape(-1)
        getattr(proto, field).extend(pairs.tolist())
    else:
        getattr(proto, field).extend(flat.tolist())


# DT_STRING in tensor_content (port::EncodeStringList): the varint32 length of every
# element, then the elements' bytes.


def _encode_string_list(strings: list[bytes]) -> bytes:
    return b"".join(map(wire.varint, map(len, strings))) + b"".join(strings)


def _decode_string_list(data: bytes, count: int) -> npt.NDArray[Any]:
    lengths = []
    pos = 0
    for _ in range(count):
        n, pos = _read_length(data, pos)
        lengths.append(n)
    if pos + sum(lengths) != len(data):
        raise TensorError("malformed string tensor_content")
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        out[i] = data[pos : pos + n]
        pos += n
    return out


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """One element's length and the position after it.

    TensorFlow reads the lengths as varint32s (GetVarint32): at most 5 bytes, below 2**32.
    tfgate.wire reads 64-bit varints, so a longer or larger length is refused here.
    """
    try:
        n, end = wire.read_varint(data, pos)
    except ValueError:
        raise TensorError("malformed string tensor_content") from None
    if end - pos > 5 or n >= 1 << 32:
        raise TensorError("malformed string tensor_content")
    return n, end
