"""TF Serving's REST JSON for classify and regress: tf.Example bodies to requests, results back.

A body is ``{"signature_name": ..., "context": {...}, "examples": [{...}, ...]}``; each example
(and the optional context) is an object of features, each feature a value or a list of values
of one kind (``tensorflow_serving/util/json_tensor.cc``, ``g3doc/api_rest.md``): integers and
booleans → ``int64_list``, numbers with a fraction or an exponent → ``float_list`` (as float32),
strings and ``{"b64": ...}`` → ``bytes_list``. Answers are ``{"results": ...}``: per example a
list of ``[label, score]`` pairs for classify, one value for regress. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import numpy as np
import orjson
from google.protobuf.message import DecodeError, Message

from tfgate import dtypes
from tfgate.errors import BadBackendAnswer, InvalidArgument
from tfgate.fronts.http import tfserving_floats
from tfgate.fronts.http.tfserving_values import (
    b64_bytes,
    debug_json,
    is_b64,
    json_type,
    load_object,
    signature_of,
    utf8_bytes,
)
from tfgate.tfs.tensorflow.core.example import example_pb2, feature_pb2
from tfgate.tfs.tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

_INT64_MAX: Final = 2**63 - 1
_FLOAT32: Final = dtypes.BY_NAME["float32"]
_Answer = TypeVar("_Answer", bound=Message)


def classification_request(body: bytes, model_spec: bytes) -> bytes:
    """A serialized ClassificationRequest for ``body``, addressed to ``model_spec``."""
    request = classification_pb2.ClassificationRequest()
    _fill(body, model_spec, request.model_spec, request.input)
    return request.SerializeToString()


def regression_request(body: bytes, model_spec: bytes) -> bytes:
    """A serialized RegressionRequest for ``body``, addressed to ``model_spec``."""
    request = regression_pb2.RegressionRequest()
    _fill(body, model_spec, request.model_spec, request.input)
    return request.SerializeToString()


def classify_body(answer: bytes) -> bytes:
    """TF Serving's JSON for a serialized ClassificationResponse."""
    result = _parse(classification_pb2.ClassificationResponse, answer).result
    if not result.classifications:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    labels = [[c.label for c in item.classes] for item in result.classifications]
    scores = _floats([c.score for item in result.classifications for c in item.classes])
    results: list[list[list[Any]]] = []
    at = 0
    for names in labels:
        results.append([[name, scores[at + i]] for i, name in enumerate(names)])
        at += len(names)
    return orjson.dumps({"results": results})


def regress_body(answer: bytes) -> bytes:
    """TF Serving's JSON for a serialized RegressionResponse."""
    result = _parse(regression_pb2.RegressionResponse, answer).result
    if not result.regressions:
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    return orjson.dumps({"results": _floats([r.value for r in result.regressions])})


def _floats(values: list[float]) -> list[Any]:
    written = tfserving_floats.json_floats(_FLOAT32, np.array(values, dtype=np.float32))
    return written if isinstance(written, list) else list(written.tolist())


def _parse(kind: type[_Answer], answer: bytes) -> _Answer:
    try:
        return kind.FromString(answer)
    except DecodeError:
        raise BadBackendAnswer(f"not a valid {kind.DESCRIPTOR.full_name}") from None


def _fill(body: bytes, model_spec: bytes, spec: Message, into: input_pb2.Input) -> None:
    doc = load_object(body)
    spec.MergeFromString(model_spec)
    if "signature_name" in doc:
        spec.signature_name = signature_of(doc)  # type: ignore[attr-defined]
    context = "context" in doc
    if context:
        _example(doc["context"], into.example_list_with_context.context)
    if "examples" not in doc:
        raise InvalidArgument(
            f"JSON Value: {debug_json(doc)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument(
            f"JSON Value: {debug_json(doc)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise InvalidArgument(f"JSON Value: {debug_json(doc)} 'examples' value is an empty array")
    listed = into.example_list_with_context.examples if context else into.example_list.examples
    for i, value in enumerate(examples):
        try:
            _example(value, listed.add())
        except InvalidArgument as exc:
            raise InvalidArgument(f"'examples'[{i}]: {exc.message}") from None


def _example(value: Any, example: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        _feature(name, content if isinstance(content, list) else [content], example)


def _feature(name: str, values: list[Any], example: example_pb2.Example) -> None:
    utf8_bytes(name)
    kind = ""  # the kind the feature's first value set: "int64", "float" or "bytes"
    items: list[Any] = []
    for value in values:
        item: int | float | bytes
        if isinstance(value, bool):
            now, item = "int64", int(value)
        elif isinstance(value, int):
            if value > _INT64_MAX:
                raise InvalidArgument(
                    f"Feature: {name} has uint64_t element. Only int64_t is supported."
                )
            now, item = "int64", value
        elif isinstance(value, float):
            now, item = "float", value
        elif isinstance(value, str):
            now, item = "bytes", utf8_bytes(value)
        elif is_b64(value):
            now, item = "bytes", b64_bytes(value)
        else:
            raise InvalidArgument(
                f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
            )
        if kind and now != kind:
            raise InvalidArgument(
                f"Unexpected element type in feature: {name} expecting type: {kind}"
            )
        kind = now
        items.append(item)
    feature: feature_pb2.Feature = example.features.feature[name]  # present even when empty
    if kind == "int64":
        feature.int64_list.value.extend(items)
    elif kind == "float":
        with np.errstate(over="ignore"):  # a double beyond float32 becomes ±inf, as in C++
            feature.float_list.value.extend(np.array(items, dtype=np.float32).tolist())
    elif kind == "bytes":
        feature.bytes_list.value.extend(items)
