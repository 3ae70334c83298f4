"""tfgate.v1's JSON codec against json_format, the reference for proto3 JSON in Python."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfgate import dtypes, tensors
from tfgate.errors import Code, InvalidArgument, Unsupported
from tfgate.fronts.http import v1_json
from tfgate.v1 import inference_pb2

PredictRequest = inference_pb2.PredictRequest
MODEL = "m"
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Literal:
    """A JSON number written exactly as given, where json.dumps would write its own form."""

    def __init__(self, text: str) -> None:
        self.text = text


def dump(tree: Any, ascii_only: bool = True) -> bytes:
    """``tree`` as JSON text; Literals as written, NaN and infinities as bare tokens."""

    def text(value: Any) -> str:
        if isinstance(value, Literal):
            return value.text
        if isinstance(value, dict):
            items = (
                f"{json.dumps(k, ensure_ascii=ascii_only)}:{text(v)}" for k, v in value.items()
            )
            return "{" + ",".join(items) + "}"
        if isinstance(value, list):
            return "[" + ",".join(map(text, value)) + "]"
        return json.dumps(value, ensure_ascii=ascii_only)

    try:
        return text(tree).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its \u escape is JSON
        return text(tree).encode("ascii") if ascii_only else dump(tree)


def reference(body: bytes, model: str = MODEL) -> PredictRequest | None:
    """What json_format makes of ``body`` with the URL's ``model``; None where it refuses."""
    try:
        want = json_format.Parse(body, PredictRequest())
    except json_format.ParseError:
        return None
    if want.model and want.model != model:
        return None
    want.model = model
    return want


def ours(body: bytes, model: str = MODEL) -> PredictRequest | InvalidArgument:
    try:
        return PredictRequest.FromString(v1_json.predict_request(body, model))
    except InvalidArgument as exc:
        return exc


def assert_agrees(body: bytes) -> None:
    want, got = reference(body), ours(body)
    if want is None:
        assert isinstance(got, InvalidArgument), (body, got)
    else:
        assert got == want, (body, got)


# -- JSON trees: right and wrong values for every field ---------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
).map(Literal)
ODD_NUMBER_STRINGS = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "NAN", "infinity", "1e39", "-1e39",
     "3.4028235e38", "1.5", " 2", "2 ", "\t3", "1_0", "0x10", "1e3", "+5", "", "x", "\u0661\u0662",
     "9223372036854775808", "-9223372036854775809", "1e-3", "1.0"]
)  # fmt: skip
WRONG = st.one_of(
    st.none(), st.just({"a": 1}), st.just([1]), st.just(float("nan")), st.just(float("inf"))
)
INT_ELEMENT = st.one_of(
    INT64,
    INT64.map(str),
    st.integers(),
    st.floats(allow_nan=False),
    NUMBER_TEXT,
    ODD_NUMBER_STRINGS,
    st.booleans(),
    WRONG,
)
FLOAT_ELEMENT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(3.40282e38, 3.40283e38).map(lambda f: f * (-1) ** int(f * 1e-32 % 2)),
    st.integers(),
    st.integers(10**38, 10**40),
    NUMBER_TEXT,
    st.floats().map(repr),
    ODD_NUMBER_STRINGS,
    st.booleans(),
    WRONG,
)
GOOD_STRING = st.one_of(st.text(max_size=8), st.sampled_from(["\ud83d\ude00", "é", "\x00", ""]))
STRING = st.one_of(GOOD_STRING, st.sampled_from(["\ud800", "a\udc00"]))
STRING_ELEMENT = st.one_of(STRING, st.integers(), st.booleans(), WRONG)
BASE64 = st.binary(max_size=12).flatmap(
    lambda data: st.sampled_from(
        [
            base64.b64encode(data).decode(),
            base64.urlsafe_b64encode(data).decode(),
            base64.b64encode(data).decode().rstrip("="),
            base64.urlsafe_b64encode(data).decode().rstrip("="),
        ]
    )
)
BYTES_ELEMENT = st.one_of(
    BASE64, st.sampled_from(["a", "ab c", "é", "==", "YQ==YQ", "Y!Q", "\ud800"]), STRING_ELEMENT
)
# Odd spellings json_format takes.
GOOD_INTS = st.sampled_from(["+5", "\t3", "1_0", "1e3", "1.0", "\u0661\u0662", "-0", "7\n"])
GOOD_FLOATS = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "inf", "-inf", "NAN", "1e39", "1.5", " 2", "1_0", "-0"]
)
BOOL_ELEMENT = st.one_of(st.booleans(), st.sampled_from([0, 1, "true", 1.0]), WRONG)


def request_trees(noisy: bool) -> st.SearchStrategy[Any]:
    """PredictRequest JSON trees in any key order, both spellings of field names. Clean ones
    hold values json_format takes (odd spellings included); noisy ones also wrong values."""

    def repeated(valid: Any, other: Any) -> Any:
        lists = st.one_of(st.lists(valid, max_size=8), st.lists(valid, min_size=33, max_size=80))
        if not noisy:  # long lists take numpy's paths
            return st.one_of(lists, lists, lists, st.none())
        mixed = st.lists(st.one_of(valid, other), max_size=6)
        return st.one_of(lists, mixed, st.none(), st.sampled_from([1, "1", {"a": 1}]))

    def scalar(valid: Any, other: Any) -> Any:
        return st.one_of(valid, valid, other) if noisy else st.one_of(valid, st.none())

    def shuffled(fields: dict[str, Any], unknown: str) -> Any:
        if noisy:
            fields = fields | {unknown: st.just(1)}
        base = st.fixed_dictionaries({}, optional=fields)
        return base.flatmap(lambda d: st.permutations(list(d.items()))).map(dict)

    string = STRING if noisy else GOOD_STRING
    ints = st.one_of(INT64, INT64.map(str), st.integers(-(2**53), 2**53).map(float), GOOD_INTS)
    fine = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())
    floats = st.one_of(
        st.floats(width=32, allow_nan=False, allow_infinity=False), fine, GOOD_FLOATS
    )
    doubles = st.one_of(fine, GOOD_FLOATS, st.integers(2**64, 10**30))
    tensor = shuffled(
        {
            "shape": repeated(st.integers(0, 9), INT_ELEMENT),
            "floats": repeated(floats, FLOAT_ELEMENT),
            "doubles": repeated(doubles, FLOAT_ELEMENT),
            "ints": repeated(ints, INT_ELEMENT),
            "strings": repeated(string, STRING_ELEMENT),
            "bytesValues": repeated(BASE64, BYTES_ELEMENT),
            "bytes_values": repeated(BASE64, BYTES_ELEMENT),
            "bools": repeated(st.booleans(), BOOL_ELEMENT),
            "dtype": scalar(st.sampled_from(["float32", "int64", ""]), STRING_ELEMENT),
        },
        "dtypes",
    )
    # Never [] or "" where a message belongs: json_format's quirk, refused here (tested below).
    tensors_ = st.one_of(tensor, tensor, NOT_A_MESSAGE) if noisy else tensor
    inputs: Any = st.dictionaries(string, tensors_, min_size=1, max_size=3)
    if noisy:
        inputs = st.one_of(inputs, st.none(), st.just([{}]))
    return shuffled(
        {
            "model": scalar(st.sampled_from([MODEL, "", "other"]), STRING_ELEMENT),
            "version": scalar(ints, INT_ELEMENT),
            "versionLabel": scalar(string, STRING_ELEMENT),
            "version_label": scalar(string, STRING_ELEMENT),
            "signature": scalar(string, STRING_ELEMENT),
            "inputs": inputs,
            "outputFilter": repeated(string, STRING_ELEMENT),
            "output_filter": repeated(string, STRING_ELEMENT),
        },
        "Model",
    )


NOT_A_MESSAGE = st.one_of(
    st.none(), st.integers(), st.text(min_size=1, max_size=3), st.lists(st.integers(), min_size=1)
)
CLEAN = request_trees(noisy=False)
TREES = st.one_of(CLEAN, CLEAN, request_trees(noisy=True), NOT_A_MESSAGE)


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, ascii_only=st.booleans())
def test_reads_any_body_as_json_format_does(tree: Any, ascii_only: bool) -> None:
    assert_agrees(dump(tree, ascii_only))


def messages() -> st.SearchStrategy[PredictRequest]:
    # Not ±FLT_MAX: json_format prints it as 3.4028235e+38, which its reader refuses (the
    # decimal is beyond FLT_MAX as a double); tfgate reads as json_format does.
    floats32 = st.floats(width=32).filter(lambda f: abs(f) != FLOAT32_MAX)
    tensor = st.builds(
        inference_pb2.Tensor,
        shape=st.lists(st.integers(0, 2**40), max_size=4),
        floats=st.one_of(st.lists(floats32, max_size=80), st.lists(floats32, max_size=3)),
        doubles=st.lists(st.floats(), max_size=40),
        ints=st.lists(INT64, max_size=40),
        strings=st.lists(st.text(max_size=5), max_size=4),
        bytes_values=st.lists(st.binary(max_size=6), max_size=4),
        bools=st.lists(st.booleans(), max_size=40),
        dtype=st.text(max_size=6),
    )
    return st.builds(
        PredictRequest,
        model=st.just(MODEL),
        version=INT64,
        version_label=st.text(max_size=5),
        signature=st.text(max_size=5),
        inputs=st.dictionaries(st.text(max_size=4), tensor, max_size=3),
        output_filter=st.lists(st.text(max_size=4), max_size=3),
    )


@settings(max_examples=1500, deadline=None)
@given(message=messages(), proto_names=st.booleans(), model_in_body=st.booleans())
def test_reads_what_json_format_writes(
    message: PredictRequest, proto_names: bool, model_in_body: bool
) -> None:
    # The bodies grpcurl prints and takes: both spellings of field names, int64 as strings.
    printed = json_format.MessageToDict(message, preserving_proto_field_name=proto_names)
    if not model_in_body:
        del printed["model"]
    body = orjson.dumps(printed)
    # Compared with json_format's reading of the same body: JSON keeps no NaN payloads.
    want = reference(body)
    assert want is not None and ours(body) == want


# -- hand-written bad bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"", "body"),
        (b"{", "body"),
        (b"\xff{}", "body"),
        (b"\xef\xbb\xbf{}", "body"),
        (b"5", "body"),
        (b'"abc"', "body"),
        (b'{"modle": "m"}', "'modle'"),
        (b'{"Model": "m"}', "'Model'"),
        (b'{"model": "m", "model": "m"}', "'model'"),
        (b'{"inputs": {"x": {}, "x": {}}}', "'x'"),
        (b'{"inputs": {"x": {"floats": [1], "floats": [2]}}}', "'floats'"),
        (b'{"model": 5}', "model"),
        (b'{"version": 1.5}', "version"),
        (b'{"version": "1 "}', "version"),
        (b'{"version": true}', "version"),
        (b'{"version": "0x10"}', "version"),
        (b'{"version": 9223372036854775808}', "version"),
        (b'{"version": "-9223372036854775809"}', "version"),
        (b'{"version": 1e19}', "version"),
        (b'{"versionLabel": ["a"]}', "versionLabel"),
        (b'{"signature": "\\ud800"}', "signature"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": {"x": null}}', "inputs.x"),
        (b'{"inputs": {"x": 5}}', "inputs.x"),
        (b'{"inputs": {"\\udc00": {}}}', "inputs"),
        (b'{"inputs": {"x": {"dtypes": "float32"}}}', "'dtypes'"),
        (b'{"inputs": {"x": {"floats": 1.5}}}', "inputs.x.floats"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, NaN]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, Infinity]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, -Infinity]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, "nan"]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, "one"]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, null]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, [4]]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, 3.4028235e38]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"floats": [1, 2, 3, -1e39]}}}', "inputs.x.floats[3]"),
        (b'{"inputs": {"x": {"doubles": [1, 2, 3, 1e400]}}}', "inputs.x.doubles[3]"),
        (b'{"inputs": {"x": {"doubles": [1, 2, 3, ' + b"9" * 400 + b"]}}}", "inputs.x.doubles[3]"),
        (b'{"inputs": {"x": {"ints": [1, 2, 3, 1.5]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"ints": [1, 2, 3, 9223372036854775808]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"ints": [1, 2, 3, 100000000000000000000000]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"ints": ["1", "2", "3", "4.5"]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"ints": [1, 2, 3, false]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"ints": [1, 2, 3, "Infinity"]}}}', "inputs.x.ints[3]"),
        (b'{"inputs": {"x": {"shape": [-1, "x"]}}}', "inputs.x.shape[1]"),
        (b'{"inputs": {"x": {"bools": [true, 1]}}}', "inputs.x.bools[1]"),
        (b'{"inputs": {"x": {"bools": [true, "false"]}}}', "inputs.x.bools[1]"),
        (b'{"inputs": {"x": {"strings": ["a", 1]}}}', "inputs.x.strings[1]"),
        (b'{"inputs": {"x": {"strings": ["a", "\\ud800"]}}}', "inputs.x.strings[1]"),
        (b'{"inputs": {"x": {"bytesValues": ["YQ==", "a"]}}}', "inputs.x.bytesValues[1]"),
        (b'{"inputs": {"x": {"bytes_values": ["YQ==", 5]}}}', "inputs.x.bytes_values[1]"),
        (b'{"inputs": {"x": {"dtype": ["float32"]}}}', "inputs.x.dtype"),
        (b'{"outputFilter": ["a", null]}', "outputFilter[1]"),
        (b'{"output_filter": "a"}', "output_filter"),
    ],
)
def test_refuses_what_json_format_refuses_and_names_the_field(body: bytes, named: str) -> None:
    with pytest.raises(json_format.ParseError if body[:1] != b"\xff" else UnicodeDecodeError):
        json_format.Parse(body, PredictRequest())
    with pytest.raises(InvalidArgument) as caught:
        v1_json.predict_request(body, MODEL)
    assert named in caught.value.message


@pytest.mark.parametrize("body", [b"[]", b'""', b'{"inputs": {"x": []}}', b'{"inputs": {"x": ""}}'])
def test_refuses_a_list_or_empty_string_where_a_message_belongs(body: bytes) -> None:
    # json_format reads these as empty messages; grpcurl (Go's protojson) refuses them.
    with pytest.raises(InvalidArgument, match="expects a JSON object"):
        v1_json.predict_request(body, MODEL)


@pytest.mark.parametrize(
    ("body", "values"),
    [
        # An integer too long for 64 bits is no float literal: json_format takes it as infinity.
        (b'{"inputs": {"x": {"floats": [1, ' + b"1" + b"0" * 39 + b"]}}}", [1.0, math.inf]),
        (b'{"inputs": {"x": {"floats": ["1e39", "-Infinity", "NaN"]}}}', [math.inf, -math.inf]),
        (b'{"inputs": {"x": {"floats": [true, "inf", " 2", "1_0"]}}}', [1.0, math.inf, 2.0, 10.0]),
    ],
)
def test_takes_the_values_json_format_takes(body: bytes, values: list[float]) -> None:
    assert_agrees(body)
    got = ours(body)
    assert isinstance(got, PredictRequest)
    assert [v for v in got.inputs["x"].floats if not math.isnan(v)] == values


def test_the_url_names_the_model() -> None:
    assert ours(b"{}", "a") == PredictRequest(model="a")
    assert ours(b'{"model": "a"}', "a") == PredictRequest(model="a")
    assert ours(b'{"model": ""}', "a") == PredictRequest(model="a")
    with pytest.raises(InvalidArgument, match="model: the body names 'b', the URL 'a'"):
        v1_json.predict_request(b'{"model": "b"}', "a")


def test_a_later_spelling_of_a_field_replaces_the_earlier() -> None:
    body = (
        b'{"versionLabel": "a", "version_label": "b", "outputFilter": ["x"], "output_filter": null}'
    )
    assert ours(body) == PredictRequest(model=MODEL, version_label="b")
    assert_agrees(body)


def test_numbers_are_read_by_orjson_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    body = orjson.dumps(
        {"inputs": {"x": {"shape": ["100", 100], "floats": values, "ints": list(range(500))}}},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Python's json read the body")

    monkeypatch.setattr(json, "loads", refuse)
    got = PredictRequest.FromString(v1_json.predict_request(body, MODEL))
    assert np.array_equal(np.array(got.inputs["x"].floats, dtype=np.float32), values)
    assert list(got.inputs["x"].ints) == list(range(500))
    # An integer too long for orjson to keep as one needs Python's reading.
    with pytest.raises(AssertionError, match="Python's json"):
        v1_json.predict_request(b'{"inputs": {"x": {"floats": [1' + b"0" * 40 + b"]}}}", MODEL)


def test_every_field_is_read() -> None:
    # The reader's tables come from the descriptors: a new field needs code to read it.
    request_fields = {f.name for f in PredictRequest.DESCRIPTOR.fields}
    tensor_fields = {f.name for f in inference_pb2.Tensor.DESCRIPTOR.fields}
    assert set(v1_json._REQUEST_FIELDS.values()) == request_fields
    assert set(v1_json._TENSOR_FIELDS.values()) == tensor_fields
    every = {
        "model": MODEL,
        "version": 3,
        "versionLabel": "l",
        "signature": "s",
        "outputFilter": ["o"],
        "inputs": {
            "x": {"shape": [1], "floats": [1], "doubles": [1], "ints": [1], "strings": ["a"]},
            "y": {"bytesValues": ["YQ"], "bools": [True], "dtype": "bool"},
        },
    }
    got = ours(orjson.dumps(every))
    assert isinstance(got, PredictRequest)
    assert {f.name for f, _ in got.ListFields()} == request_fields
    listed = {f.name for t in got.inputs.values() for f, _ in t.ListFields()}
    assert listed == tensor_fields


# -- GetModel ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "label", "expected"),
    [
        (None, None, inference_pb2.GetModelRequest(model=MODEL)),
        ("7", None, inference_pb2.GetModelRequest(model=MODEL, version=7)),
        ("+7", None, inference_pb2.GetModelRequest(model=MODEL, version=7)),
        ("-1", "", inference_pb2.GetModelRequest(model=MODEL, version=-1)),
        (str(2**63 - 1), None, inference_pb2.GetModelRequest(model=MODEL, version=2**63 - 1)),
        (None, "stable", inference_pb2.GetModelRequest(model=MODEL, version_label="stable")),
    ],
)
def test_get_model_request(
    version: str | None, label: str | None, expected: inference_pb2.GetModelRequest
) -> None:
    data = v1_json.get_model_request(MODEL, version, label)
    assert inference_pb2.GetModelRequest.FromString(data) == expected


@pytest.mark.parametrize("version", ["", " 7", "7 ", "1.5", "1e3", "0x10", "\u0661", str(2**63)])
def test_get_model_request_refuses_a_version_that_is_no_int64(version: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^version: "):
        v1_json.get_model_request(MODEL, version, None)


def test_get_model_query() -> None:
    data = v1_json.get_model_query(MODEL, [("versionLabel", "stable")])
    assert inference_pb2.GetModelRequest.FromString(data).version_label == "stable"
    data = v1_json.get_model_query(MODEL, [("version", "3"), ("version_label", "")])
    assert inference_pb2.GetModelRequest.FromString(data).version == 3
    with pytest.raises(InvalidArgument, match="'verison'"):
        v1_json.get_model_query(MODEL, [("verison", "3")])
    with pytest.raises(InvalidArgument, match="version_label is given twice"):
        v1_json.get_model_query(MODEL, [("version_label", "a"), ("versionLabel", "a")])


# -- responses --------------------------------------------------------------------------------

SUPPORTED = [d for d in dtypes.ALL if d.kind != "unsupported"]


@st.composite
def arrays(draw: st.DrawFn, dtype: dtypes.DType) -> tensors.Array:
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    size = math.prod(shape)
    if dtype.kind == "string":
        item = st.one_of(st.binary(max_size=4), st.text(max_size=4).map(str.encode))
        out = np.empty(size, dtype=object)
        out[:] = draw(st.lists(item, min_size=size, max_size=size))
        return out.reshape(shape)
    assert dtype.wire is not None
    element: st.SearchStrategy[Any]
    if dtype.is_bfloat16:
        element = st.integers(0, 2**16 - 1)
    elif dtype.kind == "float":
        element = st.floats(
            width=16 if dtype.name == "float16" else 32 if dtype.name == "float32" else 64
        )
    elif dtype.kind == "bool":
        element = st.booleans()
    else:
        low, high = dtypes.int_range(dtype)
        element = st.integers(low, min(high, 2**63 - 1))
    values = draw(st.lists(element, min_size=size, max_size=size))
    return np.array(values, dtype=dtype.wire).reshape(shape)


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """float32 values as their bits: each side prints them its own way, both must read back as
    the very float32 sent."""
    for tensor in doc.get("outputs", {}).values():
        if "floats" in tensor:
            tensor["floats"] = [
                v if isinstance(v, str) else struct.pack("<f", v) for v in tensor["floats"]
            ]
    return doc


OUTPUT = st.sampled_from(SUPPORTED).flatmap(lambda d: st.tuples(st.just(d), arrays(d)))


@settings(max_examples=1500, deadline=None)
@given(
    model=st.text(max_size=4),
    version=INT64,
    signature=st.text(max_size=4),
    outputs=st.dictionaries(st.text(max_size=4), OUTPUT, max_size=3),
)
def test_writes_what_json_format_writes(
    model: str, version: int, signature: str, outputs: dict[str, Any]
) -> None:
    listed = [(name, dtype, array) for name, (dtype, array) in outputs.items()]
    message = inference_pb2.PredictResponse(model=model, version=version, signature=signature)
    for name, dtype, array in listed:
        message.outputs[name].CopyFrom(tensors.to_domain(f"output '{name}'", array, dtype))
    got = orjson.loads(v1_json.predict_response_json(model, version, signature, listed))
    assert comparable(got) == comparable(json_format.MessageToDict(message))


def test_large_outputs_of_every_numeric_dtype() -> None:
    rng = np.random.default_rng(2)
    for dtype in SUPPORTED:
        if dtype.kind in ("float", "int"):
            assert dtype.wire is not None
            raw = rng.integers(0, 256, size=3000 * dtype.wire.itemsize, dtype=np.uint8)
            array = raw.view(dtype.wire).reshape(3, 1000)
            if dtype.name == "uint64":
                array = array & np.uint64(2**63 - 1)
        elif dtype.kind == "bool":
            array = rng.integers(0, 2, size=(3, 1000)).astype(bool)
        else:
            continue
        want = json_format.MessageToDict(tensors.to_domain("t", array, dtype))
        got = orjson.loads(v1_json.tensor_json(dtype, array))
        assert comparable({"outputs": {"t": got}}) == comparable({"outputs": {"t": want}})


def test_float32_prints_shortest() -> None:
    array = np.array([0.1, 1 / 3, float("nan"), -math.inf, 16777216.0], dtype=np.float32)
    text = v1_json.tensor_json(dtypes.BY_NAME["float32"], array)
    assert text == (
        b'{"shape":["5"],"floats":[0.1,0.33333334,"NaN","-Infinity",16777216.0],"dtype":"float32"}'
    )


def test_an_output_tfgate_v1_cannot_carry() -> None:
    too_big = np.array([2**63], dtype=np.uint64)
    with pytest.raises(Unsupported, match="output 'y'"):
        v1_json.predict_response_json(MODEL, 1, "s", [("y", dtypes.BY_NAME["uint64"], too_big)])
    with pytest.raises(Unsupported, match="complex64"):
        v1_json.tensor_json(dtypes.BY_NAME["complex64"], np.zeros(1, dtype=np.complex64))


def test_message_json() -> None:
    model = inference_pb2.Model(name=MODEL, version=2**40)
    model.versions.add(version=2**40, state="AVAILABLE")
    model.signatures["serving_default"].inputs["x"].CopyFrom(
        inference_pb2.TensorSpec(dtype="float32", shape=[-1, 3])
    )
    assert orjson.loads(v1_json.message_json(model)) == json_format.MessageToDict(model)
    assert orjson.loads(v1_json.message_json(model))["version"] == str(2**40)


def test_error_json_is_a_status_with_the_code_name() -> None:
    for status in grpc.StatusCode:
        number = status.value[0]
        doc = orjson.loads(v1_json.error_json(Code[status.name], "why"))
        assert doc == {"code": number, "status": status.name, "message": "why", "details": []}
