"""TF Serving's REST JSON for predict: the facts of json_tensor_test.cc, round trips, bad input."""

from __future__ import annotations

import json
import math

import grpc
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfgate import dtypes
from tfgate.errors import BadBackendAnswer, InvalidArgument
from tfgate.fronts.http.tfserving_json import (
    TFS_HTTP_STATUS,
    error_body,
    model_metadata_body,
    model_status_body,
    parse_predict,
    predict_body,
)
from tfgate.tfs.tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow.core.protobuf import meta_graph_pb2
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

D = dtypes.BY_NAME


def _lenient(body: bytes) -> object:
    return json.loads(body)  # reads NaN and Infinity tokens


def _bad(body: bytes, fragment: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_predict(body)
    assert fragment in info.value.message
    return info.value.message


# --- parse_predict: TF Serving's own cases -------------------------------------------------------


def test_single_unnamed_tensor_is_batched() -> None:
    got = parse_predict(b'{"instances": [[1,2],[3,4],[5,6]]}')
    assert got.row_format and got.signature == ""
    assert list(got.inputs) == [""]
    assert got.inputs[""].dtype == np.int64
    np.testing.assert_array_equal(got.inputs[""], [[1, 2], [3, 4], [5, 6]])


def test_mixed_ints_and_floats_are_floats() -> None:
    got = parse_predict(b'{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}').inputs[""]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [1, 2, 3, 4, 5.003, 0.007, 0])


def test_signature_name_is_read() -> None:
    got = parse_predict(b'{"signature_name": "predict_images", "instances": [[1,2]]}')
    assert got.signature == "predict_images"
    assert got.inputs[""].shape == (1, 2)


def test_base64_scalars_and_lists() -> None:
    got = parse_predict(b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}').inputs[""]
    assert got.dtype == object and got.tolist() == [b"hello", b"world"]
    lists = parse_predict(b'{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}')
    assert lists.inputs[""].shape == (2, 1)


def test_named_base64_tensor_in_a_row() -> None:
    body = b'{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}'
    got = parse_predict(body).inputs["default"]
    assert got.shape == (1, 2, 1)
    assert got.reshape(-1).tolist() == [b"hello", b"world"]


def test_multiple_named_tensors_with_non_finite_values() -> None:
    body = b"""{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}"""
    got = parse_predict(body).inputs
    assert got["int_tensor"].shape == (2, 3, 2)
    assert got["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    floats = got["float_tensor"]
    assert floats.shape == (2, 2) and math.isnan(floats[0, 1]) and floats[1, 1] == math.inf
    assert got["dbl_tensor"].shape == (2, 1)


def test_columnar_named_and_unnamed() -> None:
    named = parse_predict(b'{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}')
    assert not named.row_format and named.inputs["int_tensor"].shape == (1, 3, 2)
    unnamed = parse_predict(b'{"inputs": [[[1,2],[3,4],[5,6]]]}')
    np.testing.assert_array_equal(unnamed.inputs[""], named.inputs["int_tensor"])


def test_columnar_multiple_with_a_scalar_b64() -> None:
    body = b"""{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],
                           "bin_tensor": {"b64": "aGVsbG8="}}}"""
    got = parse_predict(body).inputs
    assert got["bin_tensor"].shape == () and got["bin_tensor"][()] == b"hello"
    assert got["str_tensor"].tolist() == [b"foo", b"bar"]


def test_float_extremes_stay_doubles() -> None:
    big = float(np.finfo(np.float64).max)
    got = parse_predict(orjson.dumps({"instances": [big, -big, 1435774380]})).inputs[""]
    assert got.tolist() == [big, -big, 1435774380.0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"  \n", "JSON Parse error: The document is empty"),
        (b"instances = [1, 2]", "JSON Parse error"),
        (b'{"signature_name": 5, "instances": [1]}', "'signature_name' key must be a string"),
        (b'{"instances": [[1,2]], "inputs": [[1,2]]}', "Not formatted correctly expecting only"),
        (b'{"instances": [[1,2],[3,4],[5,6,7]]}', "Expecting tensor size: 2 but got: 3"),
        (b'{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape [2] but got: [1,2]"),
        (b'{"instances": [1, [1]]}', "Expecting shape [] but got: [1]"),
        (b'{"instances": [[1,2],["a","b"]]}', "Expecting values of type: number"),
        (b'{"instances": [[1,"a"]]}', "is not of expected type: number"),
        (b'{"instances": [["a",1]]}', "is not of expected type: string"),
        (b'{"instances": [1, true]}', "Expecting values of type: number but got: bool"),
        (b'{"inputs": [1.5, false]}', "Type: False is not of expected type: number"),
        (b'{"inputs": [[1,2],[3]]}', "Encountered list at unexpected size: 1 at level: 1"),
        (b'{"inputs": [[1,2],3]}', "found at incorrect level: 2"),
        (b'{"inputs": [1,[2]]}', "Encountered list at unexpected level: 1 expected < 1"),
        (b'{"inputs": [1, null]}', "Type: Null"),
        (b'{"inputs": [{"a": 1}]}', "not formatted correctly for base64 data"),
        (b'{"inputs": {"b64": "!!!"}}', "Unable to base64 decode"),
        (b'{"instances": 5}', "Expecting 'instances' to be an list/array"),
        (b'{"instances": []}', "No values in 'instances' array"),
        (b'{"signature_name": "x"}', "Missing 'inputs' or 'instances' key"),
        (b"[1, 2]", "Is not object"),
        (b'"text"', "Is not object"),
        (b'{"inputs": {}}', "'inputs': the object names no inputs"),
        (b'{"inputs": {"": [1]}}', "an input name must not be empty"),
        (b'{"instances": [1e400]}', "JSON Parse error"),
        (b'{"instances": [NaNx]}', "JSON Parse error"),
        (b'{"instances": [Infinit]}', "JSON Parse error"),
        (b'{"instances": ["\\ud800"]}', "lone surrogate"),
        (b'{"instances": [' + b"[" * 40 + b"1" + b"]" * 40 + b"]}", "nested deeper than 32"),
        (b'{"instances": [' + b"[" * 5000 + b"]" * 5000 + b"]}", "JSON Parse error"),
    ],
)
def test_bad_bodies(body: bytes, fragment: str) -> None:
    _bad(body, fragment)


def test_row_errors_name_the_element_and_key() -> None:
    message = _bad(
        b'{"instances": [{"a": [1, 2], "s": ["x"]}, {"a": [[1, 2]], "s": ["y"]}]}',
        "Expecting shape [2] but got: [1,2]",
    )
    assert message.startswith("Failed to process element: 1 key: a of 'instances' list.")


def test_rows_must_be_all_objects_or_none() -> None:
    _bad(b'{"instances": [{"a": [1]}, [1, 20, 30]]}', "Expecting object but got list at item 1")
    _bad(b'{"instances": [["baz"], {"a": ["bat"]}]}', "Expecting value/list but got object")
    _bad(b'{"instances": [{"a": 1, "b": 2}, {"a": 1}]}', "keys must be equal to: a,b")


def test_message_quotes_at_most_256_characters_of_json() -> None:
    message = _bad(b'{"instances": [], "pad": "' + b"x" * 5000 + b'"}', "No values")
    assert len(message) < 400


# --- parse_predict: what tfgate reads as TF Serving's rapidjson reads it ------------------------


def test_rapidjson_non_finite_tokens() -> None:
    got = parse_predict(b'{"inputs": [NaN, -NaN, Inf, -Inf, Infinity, -Infinity]}').inputs[""]
    assert np.isnan(got[:2]).all()
    assert got[2:].tolist() == [math.inf, -math.inf, math.inf, -math.inf]


def test_tokens_inside_strings_are_left_alone() -> None:
    got = parse_predict(b'{"inputs": ["NaN", "-Inf"], "x": NaN}').inputs[""]
    assert got.tolist() == [b"NaN", b"-Inf"]


def test_what_follows_the_document_is_ignored() -> None:
    assert parse_predict(b'{"instances": [[1,2]]}X').inputs[""].shape == (1, 2)


def test_string_bytes_need_not_be_utf8() -> None:
    got = parse_predict(b'{"instances": ["\xff\xfeok", "\xc3\xa9"]}').inputs[""]
    assert got.tolist() == [b"\xff\xfeok", "é".encode()]


def test_other_top_level_keys_are_ignored() -> None:
    got = parse_predict(b'{"instances": [1], "model": "ignored", "flag": true}')
    assert got.inputs[""].tolist() == [1]


def test_integer_kinds() -> None:
    assert parse_predict(b'{"inputs": [1, -2]}').inputs[""].dtype == np.int64
    top = parse_predict(b'{"inputs": [18446744073709551615, 1]}').inputs[""]
    assert top.dtype == np.uint64 and top[0] == 2**64 - 1
    # rapidjson (and orjson) read an integer beyond uint64 as a double
    beyond = parse_predict(b'{"inputs": [18446744073709551616]}').inputs[""]
    assert beyond.dtype == np.float64 and beyond[0] == 2.0**64
    mixed = parse_predict(b'{"inputs": [-1, 9223372036854775808]}').inputs[""]
    assert mixed.dtype == np.float64  # no integer type holds both
    rows = parse_predict(b'{"instances": [[9223372036854775808], [1]]}').inputs[""]
    assert rows.dtype == np.uint64 and rows.tolist() == [[2**63], [1]]


def test_booleans_and_empty_lists() -> None:
    assert parse_predict(b'{"instances": [true, false]}').inputs[""].dtype == np.bool_
    empty = parse_predict(b'{"instances": [[], []]}').inputs[""]
    assert empty.shape == (2, 0) and empty.dtype == np.float64


def test_a_key_that_says_true_does_not_change_numbers() -> None:
    got = parse_predict(b'{"instances": [{"is_true": [1.5, 2]}]}').inputs["is_true"]
    assert got.dtype == np.float64 and got.tolist() == [[1.5, 2.0]]


def test_escaped_quotes_in_strings_are_counted_right() -> None:
    body = b'{"instances": [{"a\\"b": [1, 2], "s\\\\": ["x\\"y"]}]}'
    got = parse_predict(body).inputs
    assert got['a"b'].dtype == np.int64 and got["s\\"].tolist() == [[b'x"y']]


def test_a_long_string_among_numbers_is_refused_without_a_text_array() -> None:
    body = orjson.dumps({"instances": [*range(100_000), "x" * 100_000]})
    _bad(body, "Expecting values of type: number but got: string")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    value=json_values,
    key=st.sampled_from(["instances", "inputs", "other"]),
    tail=st.sampled_from([b"", b"x", b" NaN"]),
)
def test_random_json_raises_only_invalid_argument(value: object, key: str, tail: bytes) -> None:
    body = json.dumps({key: value}).encode() + tail
    try:
        got = parse_predict(body)
    except InvalidArgument as exc:
        assert exc.message
        return
    assert all(isinstance(array, np.ndarray) for array in got.inputs.values())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_raise_only_invalid_argument(body: bytes) -> None:
    try:
        got = parse_predict(b'{"inputs": ' + body)
    except InvalidArgument as exc:
        assert exc.message
        return
    assert not got.row_format


# --- predict_body --------------------------------------------------------------------------------


def test_single_tensor_in_both_formats() -> None:
    ints = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], dtype=np.int32)
    rows = orjson.loads(predict_body([("int_tensor", D["int32"], ints)], row_format=True))
    assert rows == {"predictions": ints.tolist()}
    cols = orjson.loads(predict_body([("int_tensor", D["int32"], ints)], row_format=False))
    assert cols == {"outputs": ints.tolist()}


def test_bytes_outputs_are_base64() -> None:
    strings = np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)
    got = orjson.loads(predict_body([("str_tensor_bytes", D["string"], strings)], True))
    assert got == {
        "predictions": [
            [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
        ]
    }


def test_multiple_named_tensors_in_both_formats() -> None:
    outputs = [
        ("double_scalar_tensor", D["float64"], np.array([8.0, 9.0])),
        ("float_tensor", D["float32"], np.array([[1.0], [2.0]], dtype=np.float32)),
        ("int_tensor", D["int32"], np.array([[[1, 2]], [[7, 8]]], dtype=np.int32)),
        ("str_tensor", D["string"], np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object)),
        ("flag", D["bool"], np.array([True, False])),
    ]
    rows = orjson.loads(predict_body(outputs, row_format=True))["predictions"]
    assert rows == [
        {
            "double_scalar_tensor": 8.0,
            "float_tensor": [1.0],
            "int_tensor": [[1, 2]],
            "str_tensor": ["foo", "bar"],
            "flag": True,
        },
        {
            "double_scalar_tensor": 9.0,
            "float_tensor": [2.0],
            "int_tensor": [[7, 8]],
            "str_tensor": ["baz", "bat"],
            "flag": False,
        },
    ]
    cols = orjson.loads(predict_body(outputs, row_format=False))["outputs"]
    assert cols["double_scalar_tensor"] == [8.0, 9.0] and cols["flag"] == [True, False]


def test_six_digit_floats_read_back_as_tf_serving_writes_them() -> None:
    values = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], dtype=np.float32)
    got = orjson.loads(predict_body([("float_tensor", D["float32"], values)], True))
    # TF Serving writes [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]
    assert got["predictions"] == [[9e06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]


def test_non_finite_floats_are_tokens() -> None:
    values = np.array([[np.nan, np.inf], [3, -np.inf]], dtype=np.float32)
    body = predict_body([("float_tensor", D["float32"], values)], True)
    assert body == b'{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'


def test_zero_batches() -> None:
    outputs = [
        ("str_tensor", D["string"], np.empty((0, 1, 2), dtype=object)),
        ("float_tensor", D["float32"], np.zeros((0, 3, 4), dtype=np.float32)),
    ]
    assert orjson.loads(predict_body(outputs, True)) == {"predictions": []}
    assert orjson.loads(predict_body(outputs[1:], False)) == {"outputs": []}


def test_answer_errors() -> None:
    with pytest.raises(InvalidArgument, match="empty tensor map"):
        predict_body([], True)
    with pytest.raises(InvalidArgument, match="has no shape information"):
        predict_body([("tensor", D["int32"], np.array(1, dtype=np.int32))], True)
    with pytest.raises(InvalidArgument, match="tensor type: complex64"):
        predict_body([("tensor", D["complex64"], np.zeros(2))], True)
    uneven = [
        ("int_tensor", D["int32"], np.zeros((2, 3), dtype=np.int32)),
        ("str_tensor", D["string"], np.array([[b"foo", b"bar", b"baz"]], dtype=object)),
    ]
    with pytest.raises(InvalidArgument, match="has inconsistent batch size: 1 expecting: 2"):
        predict_body(uneven, True)


def test_scalars_in_columnar_format() -> None:
    outputs = [
        ("f", D["float32"], np.array(0.1, dtype=np.float32)),
        ("i", D["int64"], np.array(2**62)),
        ("b", D["bool"], np.array(True)),
        ("s", D["string"], np.array(b"x", dtype=object)),
    ]
    assert orjson.loads(predict_body(outputs, False)) == {
        "outputs": {"f": 0.1, "i": 2**62, "b": True, "s": "x"}
    }


def test_int64_uint64_are_exact() -> None:
    outputs = [
        ("a", D["int64"], np.array([-(2**63), 2**63 - 1])),
        ("b", D["uint64"], np.array([2**64 - 1, 0], dtype=np.uint64)),
    ]
    got = orjson.loads(predict_body(outputs, True))["predictions"]
    assert got == [{"a": -(2**63), "b": 2**64 - 1}, {"a": 2**63 - 1, "b": 0}]


def test_half_and_bfloat16_outputs_are_written_as_float32() -> None:
    half = np.array([0.1, 65504], dtype=np.float16)
    bf16 = np.array([0x3F80, 0x7F80, 0x3E4D], dtype=np.uint16)  # 1.0, inf, ~0.2
    cols = _lenient(predict_body([("h", D["float16"], half), ("b", D["bfloat16"], bf16)], False))
    assert cols == {"outputs": {"h": [0.0999755859, 65504.0], "b": [1.0, math.inf, 0.200195312]}}


def test_non_utf8_strings_are_replaced() -> None:
    got = orjson.loads(predict_body([("s", D["string"], np.array([b"a\xff"], dtype=object))], True))
    assert got == {"predictions": ["a\ufffd"]}


def test_round_trip_predict_body_to_parse_predict() -> None:
    rng = np.random.default_rng(7)
    floats = rng.standard_normal((3, 4, 5)).astype(np.float32)
    ints = rng.integers(-(2**40), 2**40, size=(3, 2))
    strings = np.array([b"a", b"\x00\xff", b"c"], dtype=object)
    body = predict_body(
        [("f", D["float32"], floats), ("i", D["int64"], ints), ("s_bytes", D["string"], strings)],
        row_format=False,
    )
    back = parse_predict(body.replace(b'"outputs"', b'"inputs"')).inputs
    np.testing.assert_array_equal(back["f"].astype(np.float32), floats)
    np.testing.assert_array_equal(back["i"], ints)
    assert back["s_bytes"].tolist() == strings.tolist()


# --- errors and statuses -------------------------------------------------------------------------


def test_every_status_code_has_an_http_status() -> None:
    assert set(TFS_HTTP_STATUS) == {code.name for code in grpc.StatusCode}
    assert TFS_HTTP_STATUS["OK"] == 200
    assert TFS_HTTP_STATUS["INVALID_ARGUMENT"] == TFS_HTTP_STATUS["FAILED_PRECONDITION"] == 400
    assert TFS_HTTP_STATUS["NOT_FOUND"] == 404
    assert TFS_HTTP_STATUS["CANCELLED"] == 499
    assert TFS_HTTP_STATUS["DEADLINE_EXCEEDED"] == 504
    assert TFS_HTTP_STATUS["RESOURCE_EXHAUSTED"] == 429


def test_error_body() -> None:
    assert orjson.loads(error_body('Bad key: "key"')) == {"error": 'Bad key: "key"'}
    assert orjson.loads(error_body("Bad key: 'key'")) == {"error": "Bad key: 'key'"}
    assert error_body("x") == b'{\n    "error": "x"\n}'
    assert orjson.loads(error_body("lone \udcff")) == {"error": "lone ?"}


# --- model status and metadata -------------------------------------------------------------------


def test_model_status_as_tf_serving_prints_it() -> None:
    response = get_model_status_pb2.GetModelStatusResponse()
    version = response.model_version_status.add(version=123, state=30)
    version.status.SetInParent()
    assert orjson.loads(model_status_body(response.SerializeToString())) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def _metadata() -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "half_plus_two"
    response.model_spec.version.value = 123
    signatures = get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    x = signature.inputs["x"]
    x.name, x.dtype = "x:0", types_pb2.DT_FLOAT
    x.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1)] * 2)
    )
    signature.outputs["y"].CopyFrom(meta_graph_pb2.TensorInfo(name="y:0", dtype=types_pb2.DT_FLOAT))
    response.metadata["signature_def"].Pack(signatures)
    return response


def test_model_metadata_as_tf_serving_prints_it() -> None:
    got = orjson.loads(model_metadata_body(_metadata().SerializeToString()))
    assert got["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    serving = got["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert serving["inputs"]["x"] == {
        "name": "x:0",
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "-1", "name": ""}],
            "unknown_rank": False,
        },
    }
    assert serving["outputs"]["y"]["dtype"] == "DT_FLOAT"


def test_bad_backend_answers() -> None:
    response = _metadata()
    del response.metadata["signature_def"]
    with pytest.raises(BadBackendAnswer, match="Failed to find 'signature_def' key"):
        model_metadata_body(response.SerializeToString())
    response.metadata["signature_def"].Pack(meta_graph_pb2.TensorInfo())
    with pytest.raises(BadBackendAnswer, match="Failed to unpack"):
        model_metadata_body(response.SerializeToString())
    with pytest.raises(BadBackendAnswer, match="not a valid"):
        model_status_body(b"\xff\xff\xff")
