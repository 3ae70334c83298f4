"""tfgate.v1 over HTTP: the proto3 JSON mapping of its messages, read and written without
``google.protobuf.json_format`` on the tensor values.

Pure functions, no I/O. The routes (google.api.http style)::

    POST /tfgate/v1/models/{model}:predict     body: PredictRequest    → PredictResponse
    GET  /tfgate/v1/models/{model}?version=&version_label=              → Model

Reading (``predict_request``) means what ``json_format.Parse(body, PredictRequest())`` means,
value for value, so that a body that works with ``grpcurl -d`` works here: lowerCamelCase and
proto field names; int64 as numbers or strings ("1e3" and "+5" too, as Python's ``int`` and
``float`` read them); floats and doubles as numbers, as strings or as "NaN", "Infinity",
"-Infinity" (a bare NaN token is not JSON); bytes as base64 in either alphabet, padded or not;
``null`` for the default; unknown fields, duplicate keys, wrong types, out-of-range ints and
float literals beyond float32's range all refused with ``InvalidArgument`` naming the field,
e.g. ``inputs.x.floats[3]: ...``. One deliberate difference: json_format takes ``[]`` or ``""``
where a message belongs as an empty message; tfgate refuses them, as grpcurl does. One inherited
oddity: float32's largest value prints as 3.4028235e+38, a decimal just beyond it, which
json_format (and so tfgate) refuses to read back; Go's protojson takes it.

The body is parsed by orjson and numeric lists become packed fields through numpy. Where
orjson's reading could differ from Python's ``json`` (which json_format uses), the body is
read again with ``json``: when orjson refuses it (then ``json`` either refuses it too or the
field-by-field rules do, with a better message), and when a float32 list holds a value beyond
float32's range (orjson reads an integer too long for 64 bits as a float, so it cannot say
whether the body wrote ``1e39``, refused by json_format, or ``1000...0``, taken as infinity).

The URL names the model; with body ``*``, google.api.http puts in the body every field *not*
bound by the path, and says nothing of a body that sets one anyway. Implementations disagree
(grpc-gateway keeps the path's value, Envoy's transcoder the body's), so tfgate refuses a body
whose ``model`` differs from the URL's and accepts one that repeats it.

Writing (``predict_response_json``, ``message_json``) gives what ``json_format.MessageToDict``
gives: json names, int64 as strings, float32 values in the shortest form that reads back as the
same float32, NaN and infinities as strings, defaults left out. Errors are the JSON of
google.rpc.Status, as grpc-gateway answers, with the code's name added::

    {"code": 3, "status": "INVALID_ARGUMENT", "message": "...", "details": []}
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

from tfgate import wire
from tfgate.dtypes import DType
from tfgate.errors import Code, InvalidArgument, Unsupported
from tfgate.tensors import Array, bfloat16_to_float32
from tfgate.v1 import inference_pb2

_FLOAT32_MAX: Final = float.fromhex("0x1.fffffep+127")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_NUMPY: Final = orjson.OPT_SERIALIZE_NUMPY
# json_format's test for strings that are not Unicode (a surrogate without its pair).
_UNPAIRED: Final = re.compile(
    "[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)
# Every JSON string, and whether a colon follows it (then it is a key).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\n\r]*(:?)')


def _names(message: Any) -> dict[str, str]:
    """JSON key → field name, as json_format looks keys up: json name first, then the name."""
    fields = message.DESCRIPTOR.fields
    return {f.name: f.name for f in fields} | {f.json_name: f.name for f in fields}


_REQUEST_FIELDS: Final = _names(inference_pb2.PredictRequest)
_TENSOR_FIELDS: Final = _names(inference_pb2.Tensor)


class _Ambiguous(Exception):
    """orjson's reading of the body cannot settle a value; Python's json can."""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


# -- reading ----------------------------------------------------------------------------------


def predict_request(body: bytes, model: str) -> bytes:
    """The serialized tfgate.v1.PredictRequest for ``POST /tfgate/v1/models/{model}:predict``.

    ``body`` is the proto3 JSON of a PredictRequest; ``model`` comes from the URL and sets the
    model field (the body may repeat it, not contradict it). Raises InvalidArgument.
    """
    try:
        tree = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _Reader(exact=True).request(_loads(body), model)
    reader = _Reader(exact=False)
    try:
        data = reader.request(tree, model)
    except _Ambiguous:
        return _Reader(exact=True).request(_loads(body), model)
    except InvalidArgument:
        _loads(body)  # a key given twice, which orjson hid, is the first thing to say
        raise
    # orjson keeps the last of two equal keys; json_format refuses them. Each key is followed
    # by a colon, so as many colons as keys read means no key came twice.
    if body.count(b":") != reader.keys and sum(map(len, _STRING.findall(body))) != reader.keys:
        _loads(body)  # names the key
        raise InvalidArgument("body: a key appears twice in one object")
    return data


def _loads(body: bytes) -> Any:
    """``body`` read as json_format reads it: Python's json, refusing duplicate keys."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"body: not JSON ({exc})") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidArgument(f"body: key {key!r} appears twice in one object")
            seen.add(key)
    return out


class _Reader:
    """One reading of a PredictRequest's JSON tree: its fields in order, a later spelling of
    a field (``version_label`` after ``versionLabel``) replacing the earlier, as in json_format.
    """

    def __init__(self, exact: bool) -> None:
        self.exact = exact  # the tree comes from Python's json, not orjson
        self.keys = 0  # object keys read, for the duplicate check

    def fields(
        self, value: Any, where: str, names: dict[str, str]
    ) -> Iterator[tuple[str, str, Any]]:
        """(field name, path, value) for each key of the object ``value``, in order."""
        if type(value) is not dict:
            raise InvalidArgument(f"{where}: expects a JSON object, got {_kind(value)}")
        self.keys += len(value)
        prefix = "" if where == "body" else where + "."
        for key in value:
            name = names.get(key)
            if name is None:
                known = ", ".join(sorted(set(names.values())))
                raise InvalidArgument(f"{where}: unknown field {key!r} (fields: {known})")
            yield name, prefix + key, value[key]

    def request(self, tree: Any, model: str) -> bytes:
        # Each value is checked as it comes, even one that a later spelling replaces.
        read: dict[str, Callable[[str, Any], Any]] = {
            "model": _string,
            "version": _int64,
            "version_label": _string,
            "signature": _string,
            "output_filter": _strings,
            "inputs": self.inputs,
        }
        found = {
            name: read[name](path, value)
            for name, path, value in self.fields(tree, "body", _REQUEST_FIELDS)
        }
        body_model = found.get("model", "")
        if body_model and body_model != model:
            raise InvalidArgument(
                f"model: the body names {body_model!r}, the URL {model!r}; leave it out of the body"
            )
        head = inference_pb2.PredictRequest(
            model=_string("model", model),
            version=found.get("version", 0),
            version_label=found.get("version_label", ""),
            signature=found.get("signature", ""),
            output_filter=found.get("output_filter", []),
        )
        return b"".join([head.SerializeToString(), *found.get("inputs", [])])

    def inputs(self, path: str, value: Any) -> list[wire.Chunk]:
        """PredictRequest.inputs, written: one map entry per tensor."""
        if value is None:
            return []
        if type(value) is not dict:
            raise InvalidArgument(f"{path}: expects a JSON object, got {_kind(value)}")
        self.keys += len(value)
        chunks: list[wire.Chunk] = []
        for key, item in value.items():
            if _UNPAIRED.search(key):
                raise InvalidArgument(f"{path}: the name {key!r} is not valid Unicode")
            tensor = self.tensor(item, f"{path}.{key}")
            chunks.append(wire.map_entry_head(5, key, wire.size_of(tensor)))
            chunks += tensor
        return chunks

    def tensor(self, value: Any, where: str) -> list[wire.Chunk]:
        """A tfgate.v1.Tensor's JSON as its serialized fields."""
        read: dict[str, Callable[[str, Any], Any]] = {
            "shape": lambda path, v: [wire.packed_varints(1, _int64s(path, v))],
            "floats": lambda path, v: _packed(2, self.floats(path, v, float32=True), "<f4"),
            "doubles": lambda path, v: _packed(3, self.floats(path, v, float32=False), "<f8"),
            "ints": lambda path, v: [wire.packed_varints(4, _int64s(path, v))],
            "bools": lambda path, v: _packed(7, _bools(path, v), "u1"),
            "strings": _strings,
            "bytes_values": _bytes_list,
            "dtype": _string,
        }
        found = {
            name: read[name](path, item)
            for name, path, item in self.fields(value, where, _TENSOR_FIELDS)
        }
        rest = inference_pb2.Tensor(
            strings=found.pop("strings", []),
            bytes_values=found.pop("bytes_values", []),
            dtype=found.pop("dtype", ""),
        )
        return [*itertools.chain.from_iterable(found.values()), rest.SerializeToString()]

    def floats(self, path: str, value: Any, float32: bool) -> Array:
        """A float or double list as float64 values, checked as json_format checks them."""
        values = _list(path, value)
        if set(map(type, values)) <= {float, int, bool}:
            try:
                out = np.array(values, dtype=np.float64)
            except OverflowError:  # an integer beyond any double (Python's json only)
                pass
            else:
                peak = float(np.abs(out).max()) if out.size else 0.0
                if math.isfinite(peak) and (peak <= _FLOAT32_MAX or not float32):
                    return out
                if math.isfinite(peak) and not self.exact:
                    raise _Ambiguous
        return np.array(
            [_float(f"{path}[{i}]", v, float32) for i, v in enumerate(values)], dtype=np.float64
        )


def _packed(field: int, values: Array, element: str) -> list[wire.Chunk]:
    """A packed repeated field of ``values`` as ``element`` (little-endian numpy dtype)."""
    with np.errstate(over="ignore"):  # a double beyond float32's range becomes infinity
        out = values.astype(element)
    return [wire.header(field, out.nbytes), wire.view(out)] if out.size else []


def _list(path: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise InvalidArgument(f"{path}: expects a list, got {_kind(value)}")
    return value


def _string(path: str, value: Any) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise InvalidArgument(f"{path}: expects a string, got {_kind(value)}")
    if _UNPAIRED.search(value):
        raise InvalidArgument(f"{path}: not valid Unicode (an unpaired surrogate)")
    return value


def _strings(path: str, value: Any) -> list[str]:
    values = _list(path, value)
    if set(map(type, values)) <= {str} and not _UNPAIRED.search("\n".join(values)):
        return values
    return [_string(f"{path}[{i}]", _element(f"{path}[{i}]", v)) for i, v in enumerate(values)]


def _element(path: str, value: Any) -> Any:
    if value is None:
        raise InvalidArgument(f"{path}: null is not allowed in a list")
    return value


def _int64(path: str, value: Any) -> int:
    """One int64, read as json_format reads it."""
    if value is None:
        return 0
    if type(value) is float and not value.is_integer():
        raise InvalidArgument(f"{path}: {value!r} is not an integer")
    if type(value) is str and " " in value:
        raise InvalidArgument(f"{path}: {value!r} is not an integer (it has a space)")
    if type(value) is bool or type(value) not in (int, float, str):
        raise InvalidArgument(f"{path}: expects an integer, got {_kind(value)}")
    try:
        number = int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            raise InvalidArgument(f"{path}: {value!r} is not an integer") from None
        if not as_float.is_integer():
            raise InvalidArgument(f"{path}: {value!r} is not an integer") from None
        number = int(as_float)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidArgument(f"{path}: {value!r} is out of int64's range")
    return number


def _int64s(path: str, value: Any) -> Array:
    values = _list(path, value)
    kinds = set(map(type, values))
    if kinds <= {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    elif kinds == {str} and " " not in "".join(values):
        try:
            return np.array(list(map(int, values)), dtype=np.int64)
        except (ValueError, OverflowError):
            pass
    return np.array(
        [_int64(f"{path}[{i}]", _element(f"{path}[{i}]", v)) for i, v in enumerate(values)],
        dtype=np.int64,
    )


def _float(path: str, value: Any, float32: bool) -> float:
    """One float or double, read as json_format reads it."""
    _element(path, value)
    if type(value) is float:
        if math.isnan(value) or math.isinf(value):
            raise InvalidArgument(
                f'{path}: write NaN and infinities as "NaN", "Infinity", "-Infinity"'
            )
        if float32 and abs(value) > _FLOAT32_MAX:
            raise InvalidArgument(f"{path}: {value!r} is out of float32's range")
        return value
    if value == "nan":
        raise InvalidArgument(f'{path}: write NaN as "NaN"')
    if type(value) not in (int, bool, str):
        raise InvalidArgument(f"{path}: expects a number, got {_kind(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgument(f"{path}: {value!r} is out of range") from None
    except ValueError:
        raise InvalidArgument(f"{path}: {value!r} is not a number") from None


def _bools(path: str, value: Any) -> Array:
    values = _list(path, value)
    if not set(map(type, values)) <= {bool}:
        i, v = next((i, v) for i, v in enumerate(values) if type(v) is not bool)
        raise InvalidArgument(f"{path}[{i}]: expects true or false, got {_kind(v)}")
    return np.array(values, dtype=np.bool_)


def _bytes_list(path: str, value: Any) -> list[bytes]:
    return [_bytes(f"{path}[{i}]", v) for i, v in enumerate(_list(path, value))]


def _bytes(path: str, value: Any) -> bytes:
    """base64, standard or URL-safe, padded or not, characters outside the alphabet skipped:
    what json_format accepts."""
    if type(value) is not str:
        raise InvalidArgument(f"{path}: expects a base64 string, got {_kind(value)}")
    try:
        encoded = value.encode("utf-8")
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidArgument(f"{path}: not base64 ({exc})") from None


def get_model_request(model: str, version: str | None, version_label: str | None) -> bytes:
    """The serialized tfgate.v1.GetModelRequest for ``GET /tfgate/v1/models/{model}``, from the
    query parameters ``version`` (int64 text, as Go's strconv.ParseInt reads it: an optional
    sign and decimal digits) and ``version_label``."""
    number = 0
    if version is not None:
        if not re.fullmatch(r"[+-]?[0-9]+", version, flags=re.ASCII):
            raise InvalidArgument(f"version: {version!r} is not an integer")
        number = int(version)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise InvalidArgument(f"version: {version} is out of int64's range")
    return inference_pb2.GetModelRequest(
        model=_string("model", model),
        version=number,
        version_label=_string("version_label", version_label),
    ).SerializeToString()


_QUERY_NAMES: Final = {"version": "version", "version_label": "version_label"} | {
    "versionLabel": "version_label"
}


def get_model_query(model: str, query: Iterable[tuple[str, str]]) -> bytes:
    """``get_model_request`` from a URL's query pairs: ``version`` and ``version_label`` (or
    ``versionLabel``), each at most once; any other parameter is refused, so that a misspelt
    one is not silently ignored."""
    given: dict[str, str] = {}
    for key, value in query:
        name = _QUERY_NAMES.get(key)
        if name is None:
            raise InvalidArgument(f"unknown query parameter {key!r} (version, version_label)")
        if name in given:
            raise InvalidArgument(f"query parameter {name} is given twice")
        given[name] = value
    return get_model_request(model, given.get("version"), given.get("version_label"))


# -- writing ----------------------------------------------------------------------------------


def tensor_json(dtype: DType, array: Array, what: str = "tensor") -> bytes:
    """The proto3 JSON of the tfgate.v1.Tensor that ``tfgate.tensors.to_domain`` makes of
    ``array`` (in ``dtype``'s wire layout): the value list chosen by the dtype."""
    flat = array.reshape(-1)
    parts: list[bytes] = []
    if array.ndim:
        parts.append(b'"shape":' + _quoted(np.asarray(array.shape, dtype=np.int64)))
    if dtype.kind == "float":
        if dtype.name == "float64":
            name, values = b'"doubles":', flat.astype(np.float64)
        else:
            as_f32 = bfloat16_to_float32(flat) if dtype.is_bfloat16 else flat
            name, values = b'"floats":', as_f32.astype(np.float32)
        if values.size:
            parts.append(name + _floats(values))
    elif dtype.kind == "int":
        if dtype.name == "uint64" and flat.size and flat.max() > _INT64_MAX:
            raise Unsupported(f"{what}: a uint64 value does not fit tfgate.v1.Tensor.ints")
        if flat.size:
            parts.append(b'"ints":' + _quoted(flat.astype(np.int64)))
    elif dtype.kind == "bool":
        if flat.size:
            parts.append(b'"bools":' + orjson.dumps(flat.astype(np.bool_), option=_NUMPY))
    elif dtype.kind == "string":
        items = flat.tolist()
        if items:
            try:
                parts.append(b'"strings":' + orjson.dumps(list(map(bytes.decode, items))))
            except UnicodeDecodeError:
                encoded = [base64.b64encode(item).decode("ascii") for item in items]
                parts.append(b'"bytesValues":' + orjson.dumps(encoded))
    else:
        raise Unsupported(f"{what}: dtype {dtype.name} cannot be carried by tfgate.v1.Tensor")
    parts.append(b'"dtype":' + orjson.dumps(dtype.name))
    return b"{" + b",".join(parts) + b"}"


def _quoted(values: Array) -> bytes:
    """int64 values as a JSON list of strings, proto3 JSON's form of int64."""
    text = orjson.dumps(np.ascontiguousarray(values, dtype=np.int64), option=_NUMPY)
    return b'["' + text[1:-1].replace(b",", b'","') + b'"]' if values.size else b"[]"


_SPECIAL: Final = (
    (np.isnan, b'"NaN"'),
    (np.isposinf, b'"Infinity"'),
    (np.isneginf, b'"-Infinity"'),
)


def _floats(values: Array) -> bytes:
    """A float32 or float64 array as a JSON list: orjson writes float32 in its shortest form.
    NaN and infinities (orjson writes null) become proto3 JSON's strings."""
    values = np.ascontiguousarray(values)
    finite = np.isfinite(values)
    if finite.all():
        return orjson.dumps(values, option=_NUMPY)
    tokens = np.array(
        orjson.dumps(np.where(finite, values, 0), option=_NUMPY)[1:-1].split(b","), dtype=object
    )
    for test, token in _SPECIAL:
        tokens[test(values)] = token
    return b"[" + b",".join(tokens.tolist()) + b"]"


def predict_response_json(
    model: str, version: int, signature: str, outputs: Sequence[tuple[str, DType, Array]]
) -> bytes:
    """The proto3 JSON of the tfgate.v1.PredictResponse for these outputs (name, dtype, array
    in the dtype's wire layout): what ``json_format.MessageToDict`` makes of the message the
    gRPC API would send."""
    doc: dict[str, Any] = {}
    if model:
        doc["model"] = model
    if version:
        doc["version"] = str(version)
    if signature:
        doc["signature"] = signature
    if outputs:
        doc["outputs"] = {
            name: orjson.Fragment(tensor_json(dtype, array, f"output '{name}'"))
            for name, dtype, array in outputs
        }
    return orjson.dumps(doc)


def message_json(message: Message) -> bytes:
    """Any small message (a Model, say) as proto3 JSON, through json_format."""
    return orjson.dumps(json_format.MessageToDict(message))


def error_json(code: Code, message: str) -> bytes:
    """The body of an error answer: google.rpc.Status's JSON plus the code's name."""
    return orjson.dumps(
        {"code": code.value, "status": code.name, "message": message, "details": []}
    )
