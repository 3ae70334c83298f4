"""JSON values to numpy arrays, by TF Serving's rules (``tensorflow_serving/util/json_tensor.cc``).

A tensor in a TF Serving body is a scalar or nested lists of one kind of value: numbers, booleans,
strings, or ``{"b64": "..."}`` objects. Its shape is read off the first element at each level
(as TF Serving does); every list must then match it. tfgate reads a body before it knows the
signature, so values come out in their natural type: JSON integers as int64 (uint64 when above
int64; mixed with negatives, float64), numbers with a fraction or an exponent as float64,
booleans as bool, strings and b64 objects as object arrays of ``bytes``; a tensor with no values
at all as float64. The caller casts to the signature's dtypes.

Numeric tensors take one ``numpy.array`` call, with no Python loop over their elements. numpy
would quietly turn a stray string into a fixed-width text array (as wide as the longest string,
for every element) or a stray boolean into 1, so the fast path is taken only when the body holds
no string and no boolean that the census has not seen elsewhere; otherwise each tensor is walked
element by element, which also yields TF Serving's messages for ragged or mixed lists.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from tfgate.errors import InvalidArgument

Array = np.ndarray[Any, Any]

# numpy's own limit is 64 dimensions; a batch adds one.
MAX_RANK: Final = 32
_DEBUG_CHARS: Final = 256  # TF Serving cuts the JSON it quotes in messages at 256 bytes too
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_END: Final = 2**64
_ESCAPED_QUOTE: Final = re.compile(rb'(\\+)"')


# A JSON string (left alone) or one of rapidjson's non-finite number tokens (made Python's).
_SPECIAL: Final = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:NaN|Infinity|Inf)', re.DOTALL)
_CANONICAL: Final = {"NaN": "NaN", "-NaN": "NaN", "Inf": "Infinity", "-Inf": "-Infinity"}


def _canonical(match: re.Match[str]) -> str:
    token = match.group(0)
    return _CANONICAL.get(token, token)


def _lenient_int(text: str) -> int | float:
    if len(text) <= 20:
        value = int(text)
        if _INT64_MIN <= value < _UINT64_END:
            return value
    return _lenient_float(text)  # rapidjson keeps such integers as doubles


def _lenient_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Number too big to be stored in double: {text[:40]}")
    return value


def load_object(body: bytes) -> dict[str, Any]:
    """The body's top-level JSON object, read as TF Serving reads it."""
    if not body.strip(b" \t\r\n"):
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _lenient_loads(body)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {debug_json(doc)} Is not object")
    return doc


def _lenient_loads(body: bytes) -> Any:
    # Bytes that are not UTF-8 survive as lone surrogates and go back to bytes the same way.
    text = _SPECIAL.sub(_canonical, body.decode("utf-8", "surrogateescape"))
    decoder = json.JSONDecoder(parse_int=_lenient_int, parse_float=_lenient_float)
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        value, _ = decoder.raw_decode(text, start)  # what follows the value is ignored
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply") from None
    except ValueError as exc:
        raise InvalidArgument(f"JSON Parse error: {exc}") from None
    return value


def json_type(value: Any) -> str:
    """rapidjson's name for a value's JSON type, as TF Serving's messages use it."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


class _Full(Exception):
    pass


def debug_json(value: Any) -> str:
    """``value`` as compact JSON, cut after 256 characters (for messages only)."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size >= _DEBUG_CHARS:
            raise _Full

    def walk(item: Any) -> None:
        if isinstance(item, list):
            put("[")
            for i, element in enumerate(item):
                put("," if i else "")
                walk(element)
            put("]")
        elif isinstance(item, dict):
            put("{")
            for i, (key, element) in enumerate(item.items()):
                put(("," if i else "") + json.dumps(key[:_DEBUG_CHARS], ensure_ascii=False) + ":")
                walk(element)
            put("}")
        elif isinstance(item, str):
            put(json.dumps(item[:_DEBUG_CHARS], ensure_ascii=False))
        else:
            put(json.dumps(item))

    with contextlib.suppress(_Full):
        walk(value)
    return "".join(parts)[:_DEBUG_CHARS]


def is_b64(value: Any) -> bool:
    """TF Serving's binary value: an object whose only key is "b64", holding a string."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def b64_bytes(value: dict[str, str]) -> bytes:
    text = value["b64"]
    try:
        # absl's decoder, which TF Serving uses, also takes base64 without its padding.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"JSON Value: {debug_json(value)} Unable to base64 decode") from None


def utf8_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"JSON Value: {debug_json(text)} is not a valid string (a lone surrogate escape)"
        ) from None


def signature_of(doc: dict[str, Any]) -> str:
    """The body's optional "signature_name"."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidArgument(
            f"JSON Value: {debug_json(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    utf8_bytes(name)
    return name


# --- tensors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """One tensor of a body, not yet converted: ``value`` is a list of rows when ``batch``."""

    value: Any
    name: str  # the input's name, "" for the signature's only input
    batch: bool  # row format: one element of "instances" per row


class Census:
    """Counts the body's string and boolean tokens against those the conversion has met."""

    def __init__(self, body: bytes) -> None:
        quotes = body.count(b'"')
        if b"\\" in body:
            quotes -= sum(len(run) % 2 for run in _ESCAPED_QUOTE.findall(body))
        self.body_strings = quotes // 2
        self.body_bools = body.count(b"true") + body.count(b"false")
        self.strings = 0
        self.bools = 0

    def count(self, value: Any) -> None:
        """Counts the strings (keys included) and booleans in ``value``, walking all of it."""
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                self.strings += len(item)
                stack.extend(item.values())
            elif isinstance(item, str):
                self.strings += 1
            elif isinstance(item, bool):
                self.bools += 1


def convert(pending: dict[str, Pending], census: Census) -> dict[str, Array]:
    """Each pending tensor as an array: walked when it holds strings, else by numpy if it may."""
    out: dict[str, Array] = {}
    numeric: list[str] = []
    for name, item in pending.items():
        if _first_leaf(item.value, item.batch) is _Kind.OTHER:
            out[name] = _Walker(item, census).array()
        else:
            numeric.append(name)
    fast = census.strings == census.body_strings
    unsure: list[str] = []
    for name in numeric:
        array = _by_numpy(pending[name]) if fast else None
        if array is None:
            out[name] = _Walker(pending[name], census).array()
        elif array.dtype.kind == "b":
            census.bools += array.size
            out[name] = array
        else:
            unsure.append(name)
            out[name] = array
    if unsure and census.bools != census.body_bools:
        for name in unsure:  # a boolean may hide among numbers: walk to find it
            out[name] = _Walker(pending[name], census).array()
    return {name: out[name] for name in pending}


class _Kind:
    NUMERIC = "numeric"  # first leaf a number or a boolean, or no leaf at all
    OTHER = "other"


def _first_leaf(value: Any, batch: bool) -> str:
    if batch:
        value = value[0]
    while isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, list | int | float):  # bool is an int
        return _Kind.NUMERIC
    return _Kind.OTHER


def _shape(value: Any, where: str, batch: bool) -> tuple[int, ...]:
    dims: list[int] = []
    while isinstance(value, list):
        if len(dims) + batch >= MAX_RANK:
            raise InvalidArgument(f"{where}: lists nested deeper than {MAX_RANK} levels")
        dims.append(len(value))
        value = value[0] if value else None
    return tuple(dims)


def _by_numpy(item: Pending) -> Array | None:
    head = item.value[0] if item.batch else item.value
    shape = ((len(item.value),) if item.batch else ()) + _shape(head, _where(item), item.batch)
    try:
        array = np.array(item.value)
    except (ValueError, TypeError, OverflowError):
        return None  # ragged or mixed: the walker says where
    if array.shape != shape or array.dtype.kind not in "biuf":
        return None
    if array.dtype.kind == "f" and (np.abs(array) >= 2.0**63).any():
        return None  # numpy makes doubles of int64 and uint64 integers together
    return array


def _where(item: Pending) -> str:
    if item.batch:
        return "'instances'" if not item.name else f"'instances' key {item.name!r}"
    return "'inputs'" if not item.name else f"'inputs' key {item.name!r}"


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


class _Walker:
    """Converts one tensor element by element, with TF Serving's checks and messages."""

    def __init__(self, item: Pending, census: Census) -> None:
        self.item = item
        self.census = census

    def array(self) -> Array:
        item = self.item
        if not item.batch:
            try:
                return self._tensor(item.value)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{_where(item)}: {exc.message}") from None
        key = f" key: {item.name}" if item.name else ""
        rows: list[Array] = []
        for i, value in enumerate(item.value):
            try:
                row = self._tensor(value)
                if rows:
                    _same_as(rows[0], row)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"Failed to process element: {i}{key} of 'instances' list. Error: {exc.message}"
                ) from None
            rows.append(row)
        kinds = {row.dtype for row in rows if row.size}
        if kinds == {np.dtype(np.int64), np.dtype(np.uint64)} and all(
            row.min() >= 0 for row in rows if row.size
        ):
            return np.stack([row.astype(np.uint64) for row in rows])
        return np.stack(rows)

    def _tensor(self, value: Any) -> Array:
        shape = _shape(value, "value", self.item.batch)
        leaves: list[Any] = []
        kinds: set[str] = set()
        self._fill(value, 0, shape, leaves, kinds)
        if not leaves:
            return np.zeros(shape, dtype=np.float64)
        if "string" in kinds:
            strings = np.empty(len(leaves), dtype=object)
            strings[:] = leaves
            return strings.reshape(shape)
        if "bool" in kinds:
            return np.array(leaves, dtype=np.bool_).reshape(shape)
        if not any(isinstance(leaf, float) for leaf in leaves) and max(leaves) > _INT64_MAX:
            # Integers above int64 are uint64 when none is negative; else only doubles hold all.
            kind = np.uint64 if min(leaves) >= 0 else np.float64
            return np.array(leaves, dtype=kind).reshape(shape)
        return np.array(leaves).reshape(shape)

    def _fill(
        self, value: Any, level: int, shape: tuple[int, ...], leaves: list[Any], kinds: set[str]
    ) -> None:
        rank = len(shape)
        if isinstance(value, list):
            if level >= rank:
                raise InvalidArgument(
                    f"Encountered list at unexpected level: {level} expected < {rank}"
                )
            if len(value) != shape[level]:
                raise InvalidArgument(
                    f"Encountered list at unexpected size: {len(value)} at level: {level} "
                    f"expected size: {shape[level]}"
                )
            for element in value:
                self._fill(element, level + 1, shape, leaves, kinds)
            return
        if level != rank:
            raise InvalidArgument(
                f"JSON Value: {debug_json(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        kind, leaf = self._leaf(value)
        if kinds and kind not in kinds:
            raise InvalidArgument(
                f"JSON Value: {debug_json(value)} Type: {json_type(value)} is not of expected "
                f"type: {next(iter(kinds))} (the type of the values before it)"
            )
        kinds.add(kind)
        leaves.append(leaf)

    def _leaf(self, value: Any) -> tuple[str, Any]:
        if isinstance(value, bool):
            self.census.bools += 1
            return "bool", value
        if isinstance(value, int | float):
            return "number", value
        if isinstance(value, str):
            self.census.strings += 1
            return "string", utf8_bytes(value)
        if is_b64(value):
            self.census.strings += 2
            return "string", b64_bytes(value)
        if isinstance(value, dict):
            raise InvalidArgument(
                f"JSON Value: {debug_json(value)} not formatted correctly for base64 data"
            )
        raise InvalidArgument(
            f"JSON Value: {debug_json(value)} Type: {json_type(value)} is not of expected "
            "type: a number, a boolean, a string or a b64 object"
        )


def _same_as(first: Array, row: Array) -> None:
    if row.size != first.size:
        raise InvalidArgument(f"Expecting tensor size: {first.size} but got: {row.size}")
    if row.shape != first.shape:
        raise InvalidArgument(f"Expecting shape {_dims(first.shape)} but got: {_dims(row.shape)}")
    kinds = {_kind_of(first), _kind_of(row)} - {"empty"}
    if len(kinds) > 1:
        raise InvalidArgument(
            f"Expecting values of type: {_kind_of(first)} but got: {_kind_of(row)}"
        )


def _kind_of(array: Array) -> str:
    if array.size == 0:
        return "empty"
    return {"b": "bool", "O": "string"}.get(array.dtype.kind, "number")
