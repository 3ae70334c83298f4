"""Pure conversion: tfgate.v1.Tensor ⇄ numpy ⇄ TensorProto, without a server."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from tfgate import dtypes, tensors
from tfgate.errors import BadBackendAnswer, InvalidArgument, Unsupported
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.v1 import inference_pb2

T = inference_pb2.Tensor
D = dtypes.BY_NAME


def from_domain_chunks(*args) -> list:
    """The TensorProto chunks tfgate sends for a tfgate.v1.Tensor input (the direct path)."""
    return tensors.encode_input(*args)[1]


def to_proto(tensor: inference_pb2.Tensor, dtype: str, spec: tuple[int, ...] | None = (-1,)):
    array = tensors.from_domain("input 'x'", tensor, D[dtype], spec)
    return tensors.to_proto(array, D[dtype])


def content(proto: tensor_pb2.TensorProto, np_dtype: Any) -> list[Any]:
    return np.frombuffer(proto.tensor_content, dtype=np_dtype).tolist()


# -- requests: casting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "dtype", "np_dtype", "expected"),
    [
        (T(floats=[1.5, -2.0]), "float32", "<f4", [1.5, -2.0]),
        (T(floats=[1.5, -2.0]), "float64", "<f8", [1.5, -2.0]),
        (T(doubles=[0.25]), "float32", "<f4", [0.25]),
        (T(ints=[1, -2]), "float32", "<f4", [1.0, -2.0]),
        (T(ints=[1, -2]), "float64", "<f8", [1.0, -2.0]),
        (T(ints=[1, 2]), "float16", "<f2", [1.0, 2.0]),
        (T(ints=[-128, 127]), "int8", "i1", [-128, 127]),
        (T(ints=[0, 255]), "uint8", "u1", [0, 255]),
        (T(ints=[-(2**31), 2**31 - 1]), "int32", "<i4", [-(2**31), 2**31 - 1]),
        (T(ints=[2**40]), "int64", "<i8", [2**40]),
        (T(ints=[65535]), "uint16", "<u2", [65535]),
        (T(ints=[2**32 - 1]), "uint32", "<u4", [2**32 - 1]),
        (T(ints=[2**63 - 1]), "uint64", "<u8", [2**63 - 1]),
        (T(floats=[3.0, -4.0]), "int32", "<i4", [3, -4]),
        (T(doubles=[2.0**40]), "int64", "<i8", [2**40]),
        (T(bools=[True, False]), "bool", "?", [True, False]),
    ],
)
def test_numeric_casts_go_to_tensor_content(tensor, dtype, np_dtype, expected) -> None:
    proto = to_proto(tensor, dtype)
    assert proto.dtype == D[dtype].enum
    assert content(proto, np_dtype) == expected
    assert not proto.float_val and not proto.int_val and not proto.int64_val
    assert [d.size for d in proto.tensor_shape.dim] == [len(expected)]


def test_bfloat16_rounds_to_nearest_even() -> None:
    proto = to_proto(T(floats=[1.0, -2.5, 1.00390625]), "bfloat16")
    bits = content(proto, "<u2")
    assert bits == [0x3F80, 0xC020, 0x3F80]  # 1 + 2^-8 is a tie: rounds to even (1.0)
    back = tensors.bfloat16_to_float32(np.array(bits, dtype=np.uint16))
    assert back.tolist() == [1.0, -2.5, 1.0]


def test_strings_and_bytes_become_string_val() -> None:
    assert list(to_proto(T(strings=["héllo", ""]), "string").string_val) == [
        "héllo".encode(),
        b"",
    ]
    assert list(to_proto(T(bytes_values=[b"\xff\x00"]), "string").string_val) == [b"\xff\x00"]


@pytest.mark.parametrize(
    ("tensor", "dtype", "needle"),
    [
        (T(strings=["a"]), "float32", "expects float32"),
        (T(bools=[True]), "int64", "expects int64"),
        (T(floats=[1.0]), "string", "expects string"),
        (T(ints=[1]), "bool", "expects bool"),
        (T(floats=[1.5]), "int32", "whole numbers"),
        (T(doubles=[float("nan")]), "int64", "whole numbers"),
        (T(ints=[128]), "int8", "out of range for int8"),
        (T(ints=[-1]), "uint8", "out of range for uint8"),
        (T(ints=[2**31]), "int32", "out of range for int32"),
        (T(ints=[-1]), "uint64", "out of range for uint64"),
        (T(floats=[300.0]), "uint8", "out of range for uint8"),
        (T(doubles=[2.0**63]), "int64", "out of range for int64"),  # float64(2**63 - 1) == 2**63
        (T(doubles=[2.0**64]), "uint64", "out of range for uint64"),
        (T(doubles=[2.0**31]), "int32", "out of range for int32"),
        (T(floats=[1e6]), "float16", "out of range for float16"),
        (T(doubles=[1e300]), "float32", "out of range for float32"),
        (T(floats=[1.0], ints=[1]), "float32", "exactly one value list"),
        (T(floats=[1.0, 2.0], shape=[3]), "float32", "holds 3 values, but 2"),
        (T(floats=[1.0], shape=[-1]), "float32", "negative dimension"),
    ],
)
def test_bad_values_are_invalid_argument_naming_the_input(tensor, dtype, needle) -> None:
    with pytest.raises(InvalidArgument) as info:
        to_proto(tensor, dtype)
    assert "input 'x'" in info.value.message
    assert needle in info.value.message


def test_unsupported_signature_dtype() -> None:
    with pytest.raises(Unsupported, match="complex64"):
        to_proto(T(floats=[1.0]), "complex64")


# -- requests: shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "spec", "shape"),
    [
        (T(floats=[1, 2, 3]), None, [3]),
        (T(floats=[1, 2, 3]), (-1,), [3]),
        (T(floats=[1, 2, 3, 4], shape=[2, 2]), (-1, 2), [2, 2]),
        (T(floats=[1, 2, 3, 4], shape=[1, 2, 2]), (1, 2, 2), [1, 2, 2]),
        (T(floats=[7]), (), []),
        (T(shape=[0, 3]), (-1, 3), [0, 3]),
        # Without a shape, the values take the signature's, its one unknown dimension worked out.
        (T(floats=[1, 2, 3]), (-1, 1), [3, 1]),
        (T(floats=[1, 2, 3, 4, 5, 6]), (2, -1), [2, 3]),
        (T(floats=[1, 2, 3, 4]), (2, 2), [2, 2]),
        (T(floats=[7]), (1,), [1]),
        # An unknown rank takes any shape.
        (T(floats=[1, 2, 3, 4], shape=[2, 1, 2]), None, [2, 1, 2]),
        (T(floats=[7], shape=[1, 1]), None, [1, 1]),
        # Without one, an unknown rank gets a scalar for one value, 1-D for more.
        (T(floats=[7]), None, []),
        (T(floats=[7, 8]), None, [2]),
    ],
)
def test_shapes_that_fit(tensor, spec, shape) -> None:
    assert [d.size for d in to_proto(tensor, "float32", spec).tensor_shape.dim] == shape
    direct = tensor_pb2.TensorProto.FromString(
        b"".join(from_domain_chunks("input 'x'", tensor, D["float32"], spec))
    )
    assert [d.size for d in direct.tensor_shape.dim] == shape


@pytest.mark.parametrize(
    ("tensor", "spec"),
    [
        (T(floats=[1, 2, 3, 4], shape=[2, 2]), (-1, 3)),
        (T(floats=[1, 2, 3, 4], shape=[4]), (2, 2)),
        (T(floats=[1, 2, 3], shape=[3]), (-1, 1)),  # an explicit shape is never refitted
    ],
)
def test_shapes_that_do_not_fit(tensor, spec) -> None:
    with pytest.raises(InvalidArgument, match=r"input 'x': shape .* does not match the signature"):
        to_proto(tensor, "float32", spec)


@pytest.mark.parametrize(
    ("tensor", "spec", "needle"),
    [
        (T(floats=[1, 2, 3]), (-1, 2), "no shape of the signature's [-1, 2] holds 3 values"),
        (T(floats=[1, 2]), (), "no shape of the signature's [] holds 2 values"),
        (T(floats=[1]), (2,), "no shape of the signature's [2] holds 1 value"),
        (
            T(floats=[1, 2, 3, 4]),
            (-1, -1),
            "the signature's [-1, -1] holds 4 values in more than one shape",
        ),
        (T(floats=[1]), (-1, 0), "no shape of the signature's [-1, 0] holds 1 value"),
    ],
)
def test_values_without_a_shape_that_fit_no_signature_shape(tensor, spec, needle) -> None:
    for write in (from_domain_chunks, tensors.from_domain):
        with pytest.raises(InvalidArgument, match=re.escape(f"input 'x': {needle}")):
            write("input 'x'", tensor, D["float32"], spec)


def test_an_empty_tensor_needs_a_shape_with_a_zero() -> None:
    proto = to_proto(T(shape=[2, 0]), "int32", None)
    assert [d.size for d in proto.tensor_shape.dim] == [2, 0]
    assert proto.tensor_content == b""
    for tensor in (T(), T(shape=[1]), T(dtype="float32")):
        for write in (from_domain_chunks, tensors.from_domain):
            with pytest.raises(InvalidArgument, match=r"input 'x': no value list; set exactly one"):
                write("input 'x'", tensor, D["float32"], (-1,))


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        (T(floats=[1.0], shape=[2]), "holds 2 values, but 1 was given"),
        (T(floats=[1.0, 2.0], shape=[1]), "holds 1 value, but 2 were given"),
    ],
)
def test_counts_in_messages_agree_in_number(tensor, needle) -> None:
    for write in (from_domain_chunks, tensors.from_domain):
        with pytest.raises(InvalidArgument, match=re.escape(needle)):
            write("input 'x'", tensor, D["float32"], None)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ({"floats": [1.0]}, "float32"),
        ({"floats": [1.0]}, "float64"),
        ({"doubles": [1.0]}, "float64"),
        ({"doubles": [1.0]}, "float32"),
        ({"ints": [1]}, "int64"),
        ({"ints": [1]}, "float32"),
        ({"strings": ["a"]}, "string"),
        ({"bytes_values": [b"a"]}, "string"),
        ({"bools": [True]}, "bool"),
    ],
)
def test_more_dimensions_than_numpy_holds_are_invalid_argument(values, dtype) -> None:
    at_most = T(shape=[1] * tensors.MAX_RANK, **values)
    assert len(from_domain_chunks("input 'x'", at_most, D[dtype], None)) >= 1
    tensor = T(shape=[1] * (tensors.MAX_RANK + 1), **values)
    for write in (from_domain_chunks, tensors.from_domain):
        with pytest.raises(InvalidArgument, match=r"input 'x': shape has 65 dimensions, more than"):
            write("input 'x'", tensor, D[dtype], None)


@pytest.mark.parametrize(
    "tensor", [T(floats=[1.0, 2.0]), T(doubles=[1.0]), T(ints=[1]), T(shape=[0])]
)
def test_a_sparse_input_is_refused_whatever_the_list(tensor) -> None:
    # A sparse (COO) float32 input: its TensorInfo's dtype is DT_FLOAT, its encoding not a name.
    sparse = dtypes.DType(1, "sparse", "unsupported", None, None)
    with pytest.raises(Unsupported, match=r"input 'x': the signature's dtype sparse cannot be fed"):
        from_domain_chunks("input 'x'", tensor, sparse, None)


# -- responses -------------------------------------------------------------------------------


def proto_of(dtype: Any, dims: list[int], **fields: Any) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **fields)


def domain(proto: tensor_pb2.TensorProto) -> inference_pb2.Tensor:
    dtype, array = tensors.from_proto("output 'y'", proto)
    return tensors.to_domain("output 'y'", array, dtype)


@pytest.mark.parametrize(
    ("proto", "field", "values", "dtype"),
    [
        (proto_of(types_pb2.DT_FLOAT, [2], float_val=[1.5, 2.5]), "floats", [1.5, 2.5], "float32"),
        (
            proto_of(
                types_pb2.DT_FLOAT,
                [2],
                tensor_content=np.array([1.5, 2.5], "<f4").tobytes(),
            ),
            "floats",
            [1.5, 2.5],
            "float32",
        ),
        (proto_of(types_pb2.DT_DOUBLE, [1], double_val=[0.1]), "doubles", [0.1], "float64"),
        (proto_of(types_pb2.DT_INT32, [2], int_val=[-7, 9]), "ints", [-7, 9], "int32"),
        (proto_of(types_pb2.DT_INT8, [2], int_val=[-128, 5]), "ints", [-128, 5], "int8"),
        (proto_of(types_pb2.DT_UINT8, [1], int_val=[255]), "ints", [255], "uint8"),
        (proto_of(types_pb2.DT_INT64, [1], int64_val=[2**50]), "ints", [2**50], "int64"),
        (proto_of(types_pb2.DT_UINT32, [1], uint32_val=[2**32 - 1]), "ints", [2**32 - 1], "uint32"),
        (proto_of(types_pb2.DT_UINT64, [1], uint64_val=[2**40]), "ints", [2**40], "uint64"),
        (proto_of(types_pb2.DT_BOOL, [2], bool_val=[True, False]), "bools", [True, False], "bool"),
        # half_val carries float16 bit patterns: 0x3C00 = 1.0, 0xC000 = -2.0
        (
            proto_of(types_pb2.DT_HALF, [2], half_val=[0x3C00, 0xC000]),
            "floats",
            [1.0, -2.0],
            "float16",
        ),
        # and bfloat16 ones: 0x3FC0 = 1.5
        (proto_of(types_pb2.DT_BFLOAT16, [1], half_val=[0x3FC0]), "floats", [1.5], "bfloat16"),
        (
            proto_of(types_pb2.DT_STRING, [2], string_val=[b"ok", "é".encode()]),
            "strings",
            ["ok", "é"],
            "string",
        ),
        (
            proto_of(types_pb2.DT_STRING, [2], string_val=[b"ok", b"\xff"]),
            "bytes_values",
            [b"ok", b"\xff"],
            "string",
        ),
    ],
)
def test_outputs_in_both_encodings(proto, field, values, dtype) -> None:
    tensor = domain(proto)
    assert list(getattr(tensor, field)) == pytest.approx(values)
    assert tensor.dtype == dtype
    assert list(tensor.shape) == [d.size for d in proto.tensor_shape.dim]
    others = [f for f in tensors.VALUE_LISTS if f != field]
    assert not any(len(getattr(tensor, f)) for f in others)


def _both_ways(proto: tensor_pb2.TensorProto) -> tuple[bytes, bytes]:
    """The direct encoding (proto_to_domain_chunks) and the one through a numpy array."""
    direct = b"".join(tensors.proto_to_domain_chunks("output 'y'", proto))
    dtype, array = tensors.from_proto("output 'y'", proto)
    return direct, tensors.to_domain_bytes("output 'y'", array, dtype)


@pytest.mark.parametrize(
    "proto",
    [
        proto_of(types_pb2.DT_FLOAT, [2], float_val=[1.5, 2.5]),
        proto_of(types_pb2.DT_FLOAT, [2, 2], tensor_content=np.arange(4, dtype="<f4").tobytes()),
        proto_of(types_pb2.DT_DOUBLE, [1, 3], double_val=[0.1, -2.0, 1e300]),
        proto_of(types_pb2.DT_DOUBLE, [300], tensor_content=np.ones(300, "<f8").tobytes()),
        proto_of(types_pb2.DT_FLOAT, [], float_val=[2.5]),  # a scalar
        proto_of(types_pb2.DT_FLOAT, [0, 4]),  # no values at all
        proto_of(types_pb2.DT_FLOAT, [2, 3], float_val=[4.0]),  # broadcast: the array path
        proto_of(types_pb2.DT_FLOAT, [40], float_val=list(range(40))),
        proto_of(types_pb2.DT_INT32, [2], int_val=[-7, 9]),
        proto_of(types_pb2.DT_STRING, [1], string_val=[b"ok"]),
    ],
)
def test_direct_output_encoding_equals_the_array_path(proto) -> None:
    direct, through_numpy = _both_ways(proto)
    assert direct == through_numpy


@pytest.mark.parametrize(
    "proto",
    [
        proto_of(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 4),
        proto_of(types_pb2.DT_DOUBLE, [1], double_val=[1.0, 2.0]),
        proto_of(types_pb2.DT_FLOAT, [-1], float_val=[1.0]),
    ],
)
def test_direct_output_encoding_refuses_what_the_array_path_refuses(proto) -> None:
    with pytest.raises(BadBackendAnswer):
        tensors.proto_to_domain_chunks("output 'y'", proto)


def test_single_value_broadcasts_to_the_shape() -> None:
    tensor = domain(proto_of(types_pb2.DT_FLOAT, [2, 3], float_val=[4.0]))
    assert list(tensor.floats) == [4.0] * 6
    assert list(tensor.shape) == [2, 3]
    shorter = domain(proto_of(types_pb2.DT_INT32, [4], int_val=[1, 2]))
    assert list(shorter.ints) == [1, 2, 2, 2]
    empty = domain(proto_of(types_pb2.DT_INT64, [3]))
    assert list(empty.ints) == [0, 0, 0]


def test_scalar_output() -> None:
    tensor = domain(proto_of(types_pb2.DT_FLOAT, [], float_val=[2.5]))
    assert list(tensor.shape) == [] and list(tensor.floats) == [2.5]


@pytest.mark.parametrize(
    ("proto", "needle"),
    [
        (proto_of(types_pb2.DT_FLOAT, [1], float_val=[1.0, 2.0]), "2 values for shape [1]"),
        (
            proto_of(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 4),
            "tensor_content has 4 bytes",
        ),
    ],
)
def test_malformed_outputs(proto, needle) -> None:
    with pytest.raises(BadBackendAnswer, match=re.escape(needle)):
        domain(proto)


def test_unsupported_output_dtype() -> None:
    with pytest.raises(Unsupported, match="complex64"):
        domain(proto_of(types_pb2.DT_COMPLEX64, [1], scomplex_val=[1.0, 2.0]))


def test_large_float_tensor_round_trips_exactly() -> None:
    values = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    proto = to_proto(T(floats=values.tolist(), shape=[100, 1000]), "float32", (-1, 1000))
    assert np.array_equal(np.frombuffer(proto.tensor_content, "<f4"), values)
    back = domain(proto)
    assert np.array_equal(np.array(back.floats, dtype=np.float32), values)
    assert list(back.shape) == [100, 1000]


@pytest.mark.parametrize(
    ("dtype", "array"),
    [
        ("float32", np.arange(6, dtype="<f4").reshape(2, 3)),
        ("int64", np.array([[-1], [2**40]], dtype="<i8")),
        ("bool", np.array([True, False])),
        ("float16", np.zeros((0, 4), dtype="<f2")),
        ("int8", np.array(5, dtype="i1")),
        ("string", np.array([b"a", b""], dtype=object)),
    ],
)
def test_chunked_encoding_equals_the_message(dtype: str, array) -> None:
    written = b"".join(tensors.to_proto_chunks(array, D[dtype]))
    assert tensor_pb2.TensorProto.FromString(written) == tensors.to_proto(array, D[dtype])
    parsed = tensor_pb2.TensorProto.FromString(written)
    assert [d.size for d in parsed.tensor_shape.dim] == list(array.shape)  # zero dims kept


def test_floats_read_in_place_only_when_the_payload_agrees() -> None:
    values = np.arange(6, dtype=np.float32)
    tensor = T(floats=values.tolist(), shape=[2, 3])
    payload = memoryview(values.tobytes())
    in_place = tensors.from_domain("input 'x'", tensor, D["float32"], (-1, 3), (2, payload))
    assert in_place.tolist() == values.reshape(2, 3).tolist()
    assert not in_place.flags.owndata  # a view of the payload, not a copy
    # The wrong field, or a size that disagrees with the message: the message is read instead.
    for packed in ((3, payload), (2, payload[:8])):
        copied = tensors.from_domain("input 'x'", tensor, D["float64"], (-1, 3), packed)
        assert copied.dtype == np.float64 and copied.tolist() == values.reshape(2, 3).tolist()


def _written_both_ways(
    tensor: inference_pb2.Tensor,
    dtype: str,
    spec: tuple[int, ...] | None,
    packed: tuple[int, memoryview] | None = None,
) -> tuple[bytes, bytes]:
    """The request tensor written directly (from_domain_chunks) and through a numpy array."""
    direct = b"".join(from_domain_chunks("input 'x'", tensor, D[dtype], spec, packed))
    array = tensors.from_domain("input 'x'", tensor, D[dtype], spec, packed)
    return direct, b"".join(tensors.to_proto_chunks(array, D[dtype]))


@pytest.mark.parametrize(
    ("tensor", "dtype", "spec"),
    [
        (T(floats=[1.5, -2.0, float("inf")]), "float32", (-1,)),
        (T(floats=[float("nan")] * 40, shape=[8, 5]), "float32", (-1, 5)),
        (T(doubles=[0.1, 1e300]), "float64", None),
        (T(floats=[2.5]), "float32", ()),  # one value for a scalar
        (T(shape=[0, 3]), "float32", (-1, 3)),  # no values
        (T(floats=[1.5, 2.5]), "float64", (2,)),  # a cast: the array path
        (T(doubles=[0.25]), "float32", (1,)),
        (T(ints=[1, 2]), "float32", (-1,)),
        (T(ints=[3]), "int64", (1,)),
    ],
)
def test_direct_input_encoding_equals_the_array_path(tensor, dtype, spec) -> None:
    direct, through_numpy = _written_both_ways(tensor, dtype, spec)
    assert direct == through_numpy
    assert tensor_pb2.TensorProto.FromString(direct).dtype == D[dtype].enum


def test_direct_input_encoding_reads_a_packed_payload_in_place() -> None:
    values = np.arange(6, dtype="<f4")
    tensor = T(floats=values.tolist(), shape=[2, 3])
    payload = memoryview(values.tobytes())
    chunks = from_domain_chunks("input 'x'", tensor, D["float32"], (-1, 3), (2, payload))
    assert any(c is payload for c in chunks)  # not copied until the request is joined
    direct, through_numpy = _written_both_ways(tensor, "float32", (-1, 3), (2, payload))
    assert direct == through_numpy


@pytest.mark.parametrize(
    ("tensor", "spec", "needle"),
    [
        (T(floats=[1.0, 2.0], shape=[3]), (-1,), "shape [3] holds 3 values, but 2 were given"),
        (T(floats=[1.0, 2.0], shape=[2]), (-1, 2), "does not match the signature's [-1, 2]"),
        (T(floats=[1.0], doubles=[2.0]), None, "set exactly one value list, got floats, doubles"),
    ],
)
def test_direct_input_encoding_refuses_what_the_array_path_refuses(tensor, spec, needle) -> None:
    for write in (from_domain_chunks, tensors.from_domain):
        with pytest.raises(InvalidArgument, match=re.escape(needle)):
            write("input 'x'", tensor, D["float32"], spec)
