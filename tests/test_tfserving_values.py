"""Reading TF Serving bodies: the lenient parser, the census, messages' JSON excerpts."""

from __future__ import annotations

import pytest

from tfgate.errors import InvalidArgument
from tfgate.fronts.http.tfserving_values import (
    Census,
    b64_bytes,
    debug_json,
    json_type,
    load_object,
)


def test_orjson_and_the_fallback_agree_on_plain_json() -> None:
    body = b'{"a": [1, 2.5, "x", true, null, {"b": []}], "c": 18446744073709551615}'
    assert load_object(body) == load_object(body + b" trailing")


def test_fallback_reads_integers_as_rapidjson_does() -> None:
    got = load_object(b'{"a": [NaN, 18446744073709551616, -9223372036854775809, 7]}')["a"]
    assert got[1:] == [2.0**64, -(2.0**63), 7]
    assert isinstance(got[1], float) and isinstance(got[3], int)
    with pytest.raises(InvalidArgument, match="Number too big"):
        load_object(b'{"a": [NaN, 1' + b"0" * 400 + b"]}")


def test_census_counts_real_string_delimiters() -> None:
    census = Census(b'{"a\\"b": "c\\\\", "d": [true, false, "true"]}')
    assert census.body_strings == 4
    assert census.body_bools == 3  # "true" inside a string counts too: the slow path decides
    census.count({"a": ["x", True, {"y": False}]})
    assert (census.strings, census.bools) == (3, 2)  # keys "a", "y" and "x"


def test_debug_json_is_short_and_valid_at_its_start() -> None:
    text = debug_json({"k": ["x" * 1000, 1.5, None, True]})
    assert len(text) == 256 and text.startswith('{"k":["xxx')
    assert debug_json([1, {"a": None}]) == '[1,{"a":null}]'


def test_json_type_names_are_rapidjsons() -> None:
    values: list[object] = [None, True, False, {}, [], "s", 1, 1.5]
    names = [json_type(v) for v in values]
    assert names == ["Null", "True", "False", "Object", "Array", "String", "Number", "Number"]


def test_b64_without_padding_is_read() -> None:
    assert b64_bytes({"b64": "d29ybGQ"}) == b"world"
    with pytest.raises(InvalidArgument, match="Unable to base64 decode"):
        b64_bytes({"b64": "é"})
