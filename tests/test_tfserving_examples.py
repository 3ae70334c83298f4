"""classify/regress bodies as TF Serving's REST API reads and answers them (json_tensor_test.cc)."""

from __future__ import annotations

import json
import math

import pytest

from tfgate.errors import BadBackendAnswer, InvalidArgument
from tfgate.fronts.http.tfserving_examples import (
    classification_request,
    classify_body,
    regress_body,
    regression_request,
)
from tfgate.tfs.tensorflow.core.example import example_pb2
from tfgate.tfs.tensorflow_serving.apis import classification_pb2, model_pb2, regression_pb2

SPEC = model_pb2.ModelSpec(name="m", version_label="stable").SerializeToString()
BUILDERS = [
    (classification_request, classification_pb2.ClassificationRequest),
    (regression_request, regression_pb2.RegressionRequest),
]


def _features(example: example_pb2.Example) -> dict[str, tuple[str | None, list[object]]]:
    out: dict[str, tuple[str | None, list[object]]] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return out


@pytest.mark.parametrize(("build", "kind"), BUILDERS)
def test_request_without_context(build, kind) -> None:
    body = b"""{"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},
                             {"names": ["baz"], "ratings": 6.0}]}"""
    request = kind.FromString(build(body, SPEC))
    assert request.model_spec.name == "m" and request.model_spec.version_label == "stable"
    assert request.model_spec.signature_name == ""
    examples = request.input.example_list.examples
    assert [_features(e) for e in examples] == [
        {
            "names": ("bytes_list", [b"foo", b"bar"]),
            "ratings": ("float_list", [8.0, 9.0]),
            "age": ("int64_list", [20]),
        },
        {"names": ("bytes_list", [b"baz"]), "ratings": ("float_list", [6.0])},
    ]


@pytest.mark.parametrize(("build", "kind"), BUILDERS)
def test_request_with_context_and_signature(build, kind) -> None:
    body = b"""{"signature_name": "custom_signture",
      "context": {"query": "pizza", "location": ["sfo"]},
      "examples": [
        {"names": ["foo", "bar"], "ratings": [8.0, 9.0, NaN, Infinity], "age": 20},
        {"names": ["baz", {"b64": "aGVsbG8="}], "ratings": 6.0, "intboolmix": [1, true, false]},
        {"names": "bar", "ratings": -Infinity, "none": []}]}"""
    request = kind.FromString(build(body, SPEC))
    assert request.model_spec.signature_name == "custom_signture"
    listed = request.input.example_list_with_context
    assert _features(listed.context) == {
        "query": ("bytes_list", [b"pizza"]),
        "location": ("bytes_list", [b"sfo"]),
    }
    first, second, third = (_features(e) for e in listed.examples)
    ratings = [float(v) for v in first["ratings"][1]]  # type: ignore[arg-type]
    assert ratings[:2] == [8.0, 9.0] and math.isnan(ratings[2]) and ratings[3] == math.inf
    assert second["names"] == ("bytes_list", [b"baz", b"hello"])
    assert second["intboolmix"] == ("int64_list", [1, 1, 0])
    assert third == {
        "names": ("bytes_list", [b"bar"]),
        "ratings": ("float_list", [-math.inf]),
        "none": (None, []),
    }


def test_floats_are_float32_and_overflow_to_infinity() -> None:
    body = b'{"examples": [{"x": [0.1, 1e300]}]}'
    request = regression_pb2.RegressionRequest.FromString(regression_request(body, SPEC))
    values = request.input.example_list.examples[0].features.feature["x"].float_list.value
    assert values[0] != 0.1 and abs(values[0] - 0.1) < 1e-8 and values[1] == math.inf


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"signature_name": ["hello"], "examples": [{"names": ["foo"]}]}',
            "'signature_name' key must be a string",
        ),
        (b'{"context": [{"names": ["foo", "bar"]}]}', "Example must be JSON object"),
        (b'{"examples": {"names": ["foo", "bar"]}}', "list/array"),
        (b'{"examples": [[{"names": ["foo", "bar"]}]]}', "Example must be JSON object"),
        (b'{"examples": [{"names": [10, null]}]}', "names has element with unexpected JSON type"),
        (b'{"examples": [{"names": [10, 10.0]}]}', "feature: names expecting type: int64"),
        (b'{"examples": [{"names": [1, null]}]}', "unexpected JSON type: Null"),
        (b'{"examples": [{"names": ["a", 1]}]}', "feature: names expecting type: bytes"),
        (
            b'{"examples": [{"names": [10, {"test": 10}]}]}',
            "names has element with unexpected JSON type: Object",
        ),
        (b'{"examples": [{"names": [[10], 20]}]}', "unexpected JSON type: Array"),
        (b'{"examples": [{"names": [20, 18446744073709551603]}]}', "Only int64_t is supported"),
        (b'{"examples": [{"x": {"b64": "%%"}}]}', "Unable to base64 decode"),
        (b'{"signature_name": "s"}', "key 'examples' is expected and was not found"),
        (b'{"examples": []}', "'examples' value is an empty array"),
        (b"", "The document is empty"),
        (b"[1]", "Is not object"),
    ],
)
@pytest.mark.parametrize("build", [classification_request, regression_request])
def test_bad_bodies(build, body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        build(body, SPEC)
    assert fragment in info.value.message


def test_errors_in_examples_name_the_example() -> None:
    with pytest.raises(InvalidArgument, match=r"'examples'\[1\]: Feature: x has element"):
        classification_request(b'{"examples": [{"x": 1}, {"x": null}]}', SPEC)


def test_classification_results() -> None:
    response = classification_pb2.ClassificationResponse()
    for scores in ((0.2, 0.7, 0.1), (0.7, 0.1, 0.2)):
        item = response.result.classifications.add()
        for label, score in zip(("car", "bike", "bus"), scores, strict=True):
            item.classes.add(label=label, score=score)
    assert json.loads(classify_body(response.SerializeToString())) == {
        "results": [
            [["car", 0.2], ["bike", 0.7], ["bus", 0.1]],
            [["car", 0.7], ["bike", 0.1], ["bus", 0.2]],
        ]
    }


def test_regression_results_with_non_finite_values() -> None:
    response = regression_pb2.RegressionResponse()
    for value in (0.2, math.inf, 1.0, -math.inf, math.nan):
        response.result.regressions.add(value=value)
    body = regress_body(response.SerializeToString())
    assert body == b'{"results":[0.2,Infinity,1.0,-Infinity,NaN]}'


def test_empty_results_and_bad_answers() -> None:
    with pytest.raises(InvalidArgument, match="empty ClassificationResults"):
        classify_body(classification_pb2.ClassificationResponse().SerializeToString())
    with pytest.raises(InvalidArgument, match="empty RegressionResults"):
        regress_body(regression_pb2.RegressionResponse().SerializeToString())
    with pytest.raises(BadBackendAnswer, match="not a valid"):
        regress_body(b"\xff\xff")
