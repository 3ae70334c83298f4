"""TF Serving's REST JSON for predict, and its errors: request bodies to arrays, arrays to answers.

Pure: bytes in, numpy arrays out and back, no I/O. The rules are TF Serving's
(``tensorflow_serving/util/json_tensor.cc``, ``model_servers/http_rest_api_handler.cc`` and
``g3doc/api_rest.md``); tfserving_values says how values become arrays without the signature,
tfserving_floats how floats are written.

Where TF Serving's JSON reader (rapidjson) accepts more than orjson, tfgate follows TF Serving:
the tokens ``NaN``, ``Infinity``, ``-Infinity``, ``Inf`` and ``-Inf`` are numbers, what follows
the top-level value is ignored, string bytes need not be UTF-8, and integers beyond uint64 are
read as doubles. Such bodies go through a slower fallback parser. Keys other than
``signature_name``, ``instances`` and ``inputs`` are ignored, as TF Serving ignores them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from tfgate.dtypes import DType
from tfgate.errors import BadBackendAnswer, InvalidArgument
from tfgate.fronts.http import tfserving_floats
from tfgate.fronts.http.tfserving_values import (
    Census,
    Pending,
    convert,
    debug_json,
    is_b64,
    load_object,
    signature_of,
    utf8_bytes,
)
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

Array = np.ndarray[Any, Any]

# The HTTP status TF Serving's REST server answers each status code with (ToHTTPStatusCode in
# tensorflow_serving/model_servers/http_server.cc).
TFS_HTTP_STATUS: Final[dict[str, int]] = {
    "OK": 200,
    "CANCELLED": 499,  # nginx's "client closed request"
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

_BYTES_SUFFIX: Final = "_bytes"
_KNOWN_KEYS: Final = frozenset({"signature_name", "instances", "inputs"})


@dataclass(frozen=True)
class JsonPredict:
    """A predict body: ``inputs`` keyed by name, ``""`` meaning "the signature's only input"."""

    signature: str  # "" when the body names none
    inputs: dict[str, Array]
    row_format: bool  # "instances" (answered with "predictions") rather than "inputs"

    @property
    def unnamed(self) -> bool:
        """Whether the body gave one input without a name (tfgate.domain.Predict.unnamed)."""
        return list(self.inputs) == [""]


def error_body(message: str) -> bytes:
    """``{"error": message}``, laid out as TF Serving's writer lays it out."""
    text = message.encode("utf-8", "replace").decode("utf-8")
    return b'{\n    "error": ' + orjson.dumps(text) + b"\n}"


# --- requests -----------------------------------------------------------------------------------


def parse_predict(body: bytes) -> JsonPredict:
    """Reads a predict body: ``{"instances": [...]}`` (row format) or ``{"inputs": ...}``."""
    doc = load_object(body)
    signature = signature_of(doc)
    census = Census(body)
    census.strings += len(doc) + ("signature_name" in doc)
    for key, value in doc.items():
        if key not in _KNOWN_KEYS:
            census.count(value)
    if "instances" in doc and "inputs" in doc:
        raise InvalidArgument(
            f"JSON Value: {debug_json(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist"
        )
    if "instances" in doc:
        return JsonPredict(signature, _instances(doc, census), row_format=True)
    if "inputs" in doc:
        return JsonPredict(signature, _inputs(doc["inputs"], census), row_format=False)
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


def _named(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _check_names(where: str, names: Sequence[str]) -> None:
    for name in names:
        if not name:
            raise InvalidArgument(f"{where}: an input name must not be empty")
        utf8_bytes(name)


def _instances(doc: dict[str, Any], census: Census) -> dict[str, Array]:
    rows = doc["instances"]
    if not isinstance(rows, list):
        raise InvalidArgument(
            f"JSON Value: {debug_json(doc)} Expecting 'instances' to be an list/array"
        )
    if not rows:
        raise InvalidArgument(f"JSON Value: {debug_json(doc)} No values in 'instances' array")
    if not _named(rows[0]):
        for i, row in enumerate(rows):
            if _named(row):
                raise InvalidArgument(
                    f"'instances': Expecting value/list but got object at item {i} of input list"
                )
        return convert({"": Pending(rows, "", batch=True)}, census)
    names = list(rows[0])
    _check_names("'instances'", names)
    for i, row in enumerate(rows):
        if not _named(row):
            raise InvalidArgument(
                f"'instances': Expecting object but got list at item {i} of input list"
            )
        if row.keys() != rows[0].keys():
            raise InvalidArgument(
                f"Failed to process element: {i} of 'instances' list. JSON object: "
                f"{debug_json(row)} keys must be equal to: {','.join(sorted(names))}"
            )
        census.strings += len(row)
    columns = {name: Pending([row[name] for row in rows], name, batch=True) for name in names}
    return convert(columns, census)


def _inputs(value: Any, census: Census) -> dict[str, Array]:
    if not _named(value):
        return convert({"": Pending(value, "", batch=False)}, census)
    if not value:
        raise InvalidArgument("'inputs': the object names no inputs")
    _check_names("'inputs'", list(value))
    census.strings += len(value)
    return convert({name: Pending(v, name, batch=False) for name, v in value.items()}, census)


# --- answers ------------------------------------------------------------------------------------


def predict_body(outputs: Sequence[tuple[str, DType, Array]], row_format: bool) -> bytes:
    """TF Serving's answer for ``outputs``: ``{"predictions": ...}`` or ``{"outputs": ...}``.

    One output is written without its name, several as an object keyed by name (per row, in row
    format). Arrays are in tfgate's wire layout. Floats read back as the values TF Serving
    writes (see tfserving_floats); float16 and bfloat16, which TF Serving cannot write, are
    written as float32. String outputs whose name ends in ``_bytes`` are written as
    ``{"b64": ...}``, others as JSON strings, with bytes that are not UTF-8 replaced by U+FFFD
    (TF Serving writes them raw, which is not valid JSON).
    """
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    values = [(name, _json_values(name, dtype, array)) for name, dtype, array in outputs]
    if not row_format:
        columnar = values[0][1] if len(values) == 1 else dict(values)
        return orjson.dumps({"outputs": columnar}, option=orjson.OPT_SERIALIZE_NUMPY)
    batch = -1
    for name, _, array in outputs:
        if array.ndim == 0:
            raise InvalidArgument(f"Tensor name: {name} has no shape information")
        if batch >= 0 and array.shape[0] != batch:
            raise InvalidArgument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
        batch = array.shape[0]
    if len(values) == 1:
        predictions: Any = values[0][1]
    else:
        predictions = [{name: value[i] for name, value in values} for i in range(batch)]
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def _json_values(name: str, dtype: DType, array: Array) -> Any:
    """One output as orjson should write it: a numpy array where it can, lists otherwise."""
    if dtype.kind == "float":
        return tfserving_floats.json_floats(dtype, array)
    if dtype.kind in ("int", "bool"):
        numbers = np.asarray(array, dtype=np.bool_ if dtype.kind == "bool" else None)
        return numbers[()] if numbers.ndim == 0 else np.ascontiguousarray(numbers)
    if dtype.kind == "string":
        as_b64 = name.endswith(_BYTES_SUFFIX)
        written = np.empty(array.shape, dtype=object)
        flat = written.reshape(-1)
        for i, item in enumerate(np.asarray(array, dtype=object).reshape(-1).tolist()):
            flat[i] = _string(item, as_b64)
        return written.tolist()
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {dtype.name}")


def _string(item: bytes, as_b64: bool) -> Any:
    if as_b64:
        return {"b64": base64.b64encode(item).decode("ascii")}
    return item.decode("utf-8", "replace")


# --- model status and metadata ------------------------------------------------------------------


def model_status_body(answer: bytes) -> bytes:
    """TF Serving's JSON for a serialized GetModelStatusResponse (``GET /v1/models/{m}``).

    Printed as TF Serving prints it: the protos' JSON names (``model_version_status``,
    ``error_code``, ``error_message``), enum names, int64 as strings, unset scalars included.
    """
    response = _answer(get_model_status_pb2.GetModelStatusResponse, answer)
    return orjson.dumps(_printed(response, proto_names=False))


def model_metadata_body(answer: bytes) -> bytes:
    """TF Serving's JSON for a serialized GetModelMetadataResponse (``GET .../metadata``).

    ``{"model_spec": ..., "metadata": {"signature_def": <SignatureDefMap>}}`` with the
    ``signature_def`` Any unpacked and proto field names kept, as TF Serving's handler does.
    """
    response = _answer(get_model_metadata_pb2.GetModelMetadataResponse, answer)
    # TF Serving's REST handler's words, for what TF Serving's own answer lacks.
    if "signature_def" not in response.metadata:
        raise BadBackendAnswer(
            "TF Serving's answer: Failed to find 'signature_def' key in the "
            "GetModelMetadataResponse metadata map."
        )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    try:
        unpacked = response.metadata["signature_def"].Unpack(signatures)
    except DecodeError:
        unpacked = False
    if not unpacked:
        raise BadBackendAnswer(
            "TF Serving's answer: Failed to unpack 'Any' object to 'SignatureDefMap'."
        )
    printed = {
        "model_spec": _printed(response.model_spec, proto_names=True),
        "metadata": {"signature_def": _printed(signatures, proto_names=True)},
    }
    return orjson.dumps(printed)


_Answer = TypeVar("_Answer", bound=Message)


def _answer(kind: type[_Answer], answer: bytes) -> _Answer:
    try:
        return kind.FromString(answer)
    except DecodeError:
        raise BadBackendAnswer(
            f"TF Serving's answer is not a valid {kind.DESCRIPTOR.full_name}"
        ) from None


def _printed(message: Message, proto_names: bool) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=proto_names,
    )
