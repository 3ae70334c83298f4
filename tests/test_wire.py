"""The hand-written wire encoding parses back with protobuf to the same values."""

from __future__ import annotations

import numpy as np
import pytest

from tfgate import wire
from tfgate.v1 import inference_pb2


@pytest.mark.parametrize(
    "values",
    [
        [0],
        [1, 127, 128, 255, 300, 16383, 16384],
        [-1, -2, -(2**63), 2**63 - 1, 2**31, -(2**31)],
        list(range(-1000, 1000, 7)),
    ],
)
def test_packed_varints_parse_as_int64(values: list[int]) -> None:
    data = wire.packed_varints(4, np.array(values, dtype=np.int64))
    assert list(inference_pb2.Tensor.FromString(data).ints) == values


def test_packed_varints_match_protobuf_bytes() -> None:
    values = np.random.default_rng(1).integers(-(2**40), 2**40, size=500)
    ours = wire.packed_varints(1, values)
    theirs = inference_pb2.Tensor(shape=values.tolist()).SerializeToString()
    assert ours == theirs


def test_varint_table_and_arithmetic_agree_with_protobuf() -> None:
    # Below 2**11 varints come from a table, above they are computed: both sides of the edge.
    for value in (0, 1, 127, 128, 2047, 2048, 16383, 16384, 2**21, 2**35, 2**64 - 1):
        expected = inference_pb2.PredictRequest(version=value - 2**64 * (value >= 2**63))
        assert wire.int64_field(2, value) == expected.SerializeToString()


def test_header_of_a_field_number_above_the_table() -> None:
    # Field 300's tag (300 << 3 | 2 = 2402) is past the varint table: still a valid header.
    data = wire.header(300, 1) + b"x"
    (number, payload), *_ = wire.fields(data)
    assert number == 300 and payload is not None and bytes(payload) == b"x"


def test_header_counts_bytes_of_multibyte_views() -> None:
    floats = np.arange(300, dtype="<f4")
    chunks = wire.nested(2, [wire.view(floats)])
    assert wire.size_of(chunks) == 1 + 2 + floats.nbytes
    assert list(inference_pb2.Tensor.FromString(b"".join(chunks)).floats) == floats.tolist()


def test_empty_fields_write_nothing() -> None:
    assert wire.packed_varints(4, np.array([], dtype=np.int64)) == b""
    assert wire.length_delimited(2, b"") == b""
    assert wire.int64_field(2, 0) == b""


def test_int64_field_negative_and_large() -> None:
    for value in (1, 300, -5, 2**62):
        data = wire.int64_field(2, value)
        assert inference_pb2.PredictResponse.FromString(data).version == value


def test_find_field_reads_one_field_of_a_real_message() -> None:
    request = inference_pb2.PredictRequest(
        model="m", version=7, version_label="", inputs={"x": inference_pb2.Tensor(floats=[1, 2])}
    )
    request.output_filter.append("y")
    data = request.SerializeToString()
    assert wire.find_field(data, 1) == b"m"
    assert wire.find_field(data, 6) == b"y"
    assert wire.find_field(data, 3) is None  # empty: not written
    assert wire.find_field(b"\xff\xff\xff", 1) is None
    assert wire.find_field(data[:-1], 6) is None  # truncated


def test_packed_inputs_finds_each_float_payload_in_place() -> None:
    floats = np.arange(5, dtype=np.float32)
    doubles = np.array([0.5, -1.0])
    request = inference_pb2.PredictRequest(
        model="m",
        inputs={
            "f": inference_pb2.Tensor(floats=floats.tolist(), shape=[5]),
            "d": inference_pb2.Tensor(doubles=doubles.tolist()),
            "i": inference_pb2.Tensor(ints=[1, 2]),
        },
    )
    found = wire.packed_inputs(request.SerializeToString())
    assert set(found) == {"f", "d"}
    assert found["f"][0] == 2 and np.frombuffer(found["f"][1], "<f4").tolist() == floats.tolist()
    assert found["d"][0] == 3 and np.frombuffer(found["d"][1], "<f8").tolist() == doubles.tolist()


def test_packed_inputs_leaves_out_what_is_unusual() -> None:
    one = inference_pb2.Tensor(floats=[1.0]).SerializeToString()
    # The floats split over two packed fields: valid protobuf, but not one payload to read.
    split = one + one
    entry = wire.length_delimited(1, b"x") + wire.length_delimited(2, split)
    data = wire.length_delimited(5, entry)
    assert inference_pb2.PredictRequest.FromString(data).inputs["x"].floats == [1.0, 1.0]
    assert wire.packed_inputs(data) == {}
    assert wire.packed_inputs(b"\xff\xff") == {}
    # A later entry for the same name replaces the earlier one, as protobuf's parser does.
    later = wire.length_delimited(1, b"x") + wire.length_delimited(
        2, inference_pb2.Tensor(ints=[3]).SerializeToString()
    )
    assert wire.packed_inputs(data + wire.length_delimited(5, later)) == {}
