"""The model server's TensorProto <-> numpy codec, on tfgate's copy of TensorProto (no TF)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tfgate import dtypes
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate_model_server.tensors import (
    TensorError,
    dtype_enum,
    dtype_name,
    fill_proto,
    to_ndarray,
)


def encode(array: Any, *, as_content: bool) -> Any:
    proto = tensor_pb2.TensorProto()
    fill_proto(np.asarray(array), proto, as_content=as_content)
    return proto


def strings(*values: bytes) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


ARRAYS = [
    np.array([[1.5, -2.0], [3.25, 0.0]], dtype=np.float32),
    np.array([1.0, 2.5], dtype=np.float64),
    np.array([1, -2, 3], dtype=np.int32),
    np.array([0, 255], dtype=np.uint8),
    np.array([-7, 7], dtype=np.int16),
    np.array([-128, 127], dtype=np.int8),
    np.array([2**40, -1], dtype=np.int64),
    np.array([True, False], dtype=np.bool_),
    np.array([1.5, -0.25], dtype=np.float16),
    np.array([65535], dtype=np.uint16),
    np.array([2**32 - 1], dtype=np.uint32),
    np.array([2**64 - 1], dtype=np.uint64),
    np.array([1 + 2j, -3j], dtype=np.complex64),
    np.array([1 + 2j], dtype=np.complex128),
    strings(b"a", b"", "é".encode()),
    np.array(7.0, dtype=np.float32),
    np.zeros((0, 3), dtype=np.float32),
]


@pytest.mark.parametrize("as_content", [False, True], ids=["val", "content"])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip(array: np.ndarray, as_content: bool) -> None:
    proto = encode(array, as_content=as_content)
    assert (proto.tensor_content != b"") == (as_content and array.size > 0)
    decoded = to_ndarray(proto)
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()


def test_val_fields_match_tensorflow() -> None:
    assert list(encode(np.array([1, 2], np.int32), as_content=False).int_val) == [1, 2]
    assert list(encode(np.array([1, 2], np.int64), as_content=False).int64_val) == [1, 2]
    # DT_HALF travels as the float16 bit patterns in int32s.
    assert list(encode(np.array([1.0], np.float16), as_content=False).half_val) == [0x3C00]
    assert list(encode(np.array([1 + 2j], np.complex64), as_content=False).scomplex_val) == [
        1.0,
        2.0,
    ]
    proto = encode(np.array([[1.0, 2.0]], np.float32), as_content=False)
    assert proto.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in proto.tensor_shape.dim] == [1, 2]


@pytest.mark.parametrize("as_content", [False, True])
def test_a_scalar_carries_an_empty_shape(as_content: bool) -> None:
    """TensorShape::AsProto always writes tensor_shape; TF Serving's answers hold
    ``tensor_shape {}`` for a scalar (predict_impl_test.cc PredictionSuccess)."""
    proto = encode(np.float32(3.0), as_content=as_content)
    assert proto.HasField("tensor_shape")
    assert list(proto.tensor_shape.dim) == []
    assert not proto.tensor_shape.unknown_rank
    assert proto.SerializeToString().count(b"\x12\x00") == 1  # field 2, zero length


def test_string_tensor_content_is_length_prefixed() -> None:
    proto = encode(strings(b"ab", b"c"), as_content=True)
    assert proto.tensor_content == b"\x02\x01abc"
    # A length of 300 takes two varint bytes: 300 = 0b10_0101100.
    long = encode(strings(b"x" * 300, b""), as_content=True)
    assert long.tensor_content == b"\xac\x02\x00" + b"x" * 300


def test_bfloat16_round_trip() -> None:
    import ml_dtypes  # TensorFlow's bfloat16; comes with it

    array = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    for as_content in (False, True):
        proto = encode(array, as_content=as_content)
        assert proto.dtype == types_pb2.DT_BFLOAT16
        decoded = to_ndarray(proto)
        assert decoded.dtype == array.dtype
        assert decoded.astype(np.float32).tolist() == [1.5, -2.0]
    # In half_val, the 16-bit patterns: 1.5 is 0x3FC0 in bfloat16.
    assert encode(array, as_content=False).half_val[0] == 0x3FC0


@pytest.mark.parametrize("enum", [d.enum for d in dtypes.ALL])
def test_dtype_names_are_tensorflows(enum: int) -> None:
    # DataTypeString() is the enum's name, lower case, without DT_ (DT_FLOAT: "float").
    expected = types_pb2.DataType.Name(enum).removeprefix("DT_").lower()  # type: ignore[arg-type]
    assert dtype_name(enum) == expected


def test_dtype_name_of_an_unknown_enum() -> None:
    assert dtype_name(99) == "unknown dtype enum (99)"


def proto_of(dtype: types_pb2.DataType.ValueType, shape: list[int], **fields: Any) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0], [1.0, 2.0, 2.0, 2.0]),  # fewer values: the last one repeats
        ([], [0.0, 0.0, 0.0, 0.0]),  # none: zeros
        ([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0]),  # more: the rest is ignored
    ],
)
def test_val_fields_fill_like_tensorflow(values: list[float], expected: list[float]) -> None:
    proto = proto_of(types_pb2.DT_FLOAT, [4], float_val=values)
    assert to_ndarray(proto).tolist() == expected


def test_int_val_narrows_like_a_cast() -> None:
    proto = proto_of(types_pb2.DT_UINT8, [2], int_val=[256 + 7, -1])
    assert to_ndarray(proto).tolist() == [7, 255]


@pytest.mark.parametrize(
    "proto",
    [
        proto_of(types_pb2.DT_FLOAT, [3], tensor_content=b"abc"),
        proto_of(types_pb2.DT_FLOAT, [-1], float_val=[1.0]),
        proto_of(types_pb2.DT_RESOURCE, [1]),
        proto_of(types_pb2.DT_STRING, [2], tensor_content=b"\x05ab"),
        proto_of(
            types_pb2.DT_FLOAT,
            [],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True),
        ),
    ],
    ids=["short-content", "negative-dim", "resource", "bad-strings", "unknown-rank"],
)
def test_invalid_tensors(proto: Any) -> None:
    with pytest.raises(TensorError):
        to_ndarray(proto)


@pytest.mark.parametrize(
    "content",
    [
        b"\x80",  # the length's varint ends with the bytes
        b"\x81\x80\x80\x80\x80\x00x",  # 1, but in 6 bytes: a varint32 takes at most 5
        b"\x80\x80\x80\x80\x10",  # 2**32: past 32 bits
        b"\x02a",  # one byte short of the length
        b"\x01ab",  # one byte too many
    ],
    ids=["truncated", "six-bytes", "2**32", "short", "long"],
)
def test_string_lengths_are_varint32s(content: bytes) -> None:
    with pytest.raises(TensorError, match="malformed string tensor_content"):
        to_ndarray(proto_of(types_pb2.DT_STRING, [1], tensor_content=content))


def test_string_lengths_in_five_bytes() -> None:
    # 1 in five bytes is still a varint32, as GetVarint32 reads it.
    proto = proto_of(types_pb2.DT_STRING, [1], tensor_content=b"\x81\x80\x80\x80\x00x")
    assert to_ndarray(proto).tolist() == [b"x"]


def test_dtype_enum() -> None:
    assert dtype_enum(np.zeros(1, np.float32)) == types_pb2.DT_FLOAT
    assert dtype_enum(strings(b"x")) == types_pb2.DT_STRING
    assert dtype_enum(np.array(["x"])) == types_pb2.DT_STRING
