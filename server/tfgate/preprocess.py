"""Preprocessing and postprocessing steps: pure functions from arrays to arrays.

A pipeline is a list of steps. Each step takes a value of one kind and gives one of a kind::

    text ─lowercase─▶ text ─tokenize─▶ tokens ─lookup─▶ ids ─pad─▶ int [rows, length]
                                       tokens ─pad─▶ text [rows, length]
    number|int|float ─scale, normalize─▶ float ─round─▶ int ─cast─▶ int|float
    any array ─clip, reshape, expand─▶ the same kind
    a score output ─labels─▶ top-k labels (string) and their scores (float32)

Text is an object array of ``str``; tokens and ids are ``Ragged``: the items of every row in one
flat array, and each row's length, so that padding is a single numpy scatter. Numeric steps are
numpy expressions over whole arrays. Only tokenising and the vocabulary lookup touch each
string, with ``map`` over a compiled pattern and a dict.

A step is built from checked parameters (``ValueError`` otherwise). Before any request arrives,
``kind``, ``forward``, ``backward`` and ``dtype`` tell what a step accepts and gives, so that a
pipeline can be checked against a signature. At run time a value a step cannot handle raises
InvalidArgument naming the tensor and the step (``what``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, ClassVar, Final, Literal

import numpy as np

from tfgate import tensors
from tfgate.dtypes import DType
from tfgate.errors import FailedPrecondition, InvalidArgument

Array = np.ndarray[Any, Any]
Kind = Literal["text", "tokens", "ids", "number", "int", "float"]
# A shape as far as it is known before a request: -1 for any size, None for an unknown rank.
Template = tuple[int, ...] | None

NUMERIC: Final[frozenset[Kind]] = frozenset({"number", "int", "float"})
ARRAYS: Final[frozenset[Kind]] = NUMERIC | {"text"}
_F64: Final = np.dtype(np.float64)


@dataclass(frozen=True, eq=False)
class Ragged:
    """Rows of different lengths: ``values`` holds every row's items, in order."""

    values: Array
    lengths: Array  # int64, one per row


Value = Array | Ragged


def describe(shape: Template) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


class Step:
    """One step of a pipeline; the subclasses below are the steps a config can name."""

    op: ClassVar[str]
    accepts: ClassVar[frozenset[Kind]]

    def kind(self, kind: Kind) -> Kind:
        """The kind of value this step gives for ``kind`` (one of ``accepts``)."""
        return kind

    def forward(self, shape: Template) -> Template:
        """The shape this step gives for ``shape``; ValueError when it cannot take it."""
        return shape

    def backward(self, shape: Template) -> Template:
        """The shape this step must be given to give ``shape``, as far as it is known."""
        return shape

    def dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """The numpy dtype of this step's result for a numeric value of ``dtype``."""
        return dtype

    def apply(self, what: str, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.op


# -- text ------------------------------------------------------------------------------------

_lower = np.frompyfunc(str.lower, 1, 1)


@dataclass(frozen=True, eq=False)
class Lowercase(Step):
    op = "lowercase"
    accepts = frozenset({"text"})

    def apply(self, what: str, value: Array) -> Array:
        return np.asarray(_lower(value), dtype=object) if value.size else value


@dataclass(frozen=True, eq=False)
class Tokenize(Step):
    """Splits each text on whitespace, or into the matches of ``pattern``."""

    pattern: str | None = None
    _split: Callable[[str], list[str]] = field(init=False, repr=False)

    op = "tokenize"
    accepts = frozenset({"text"})

    def __post_init__(self) -> None:
        split: Callable[[str], list[str]] = str.split
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}"
                ) from None
            if compiled.groups:
                raise ValueError(
                    f"pattern {self.pattern!r} has a capturing group; use (?:...) instead"
                )
            if compiled.fullmatch(""):
                raise ValueError(f"pattern {self.pattern!r} matches the empty string")
            split = compiled.findall
        object.__setattr__(self, "_split", split)

    def kind(self, kind: Kind) -> Kind:
        return "tokens"

    def forward(self, shape: Template) -> Template:
        if shape is not None and len(shape) != 1:
            raise ValueError(f"needs a 1-D batch of texts, gets {describe(shape)}")
        return (shape[0] if shape else -1, -1)

    def apply(self, what: str, value: Array) -> Ragged:
        if value.ndim != 1:
            raise InvalidArgument(
                f"{what}: needs a 1-D batch of texts, got {describe(value.shape)}"
            )
        rows = list(map(self._split, value.tolist()))
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.empty(int(lengths.sum()), dtype=object)
        flat[:] = list(chain.from_iterable(rows))
        return Ragged(flat, lengths)

    def describe(self) -> str:
        return "tokenize(whitespace)" if self.pattern is None else f"tokenize({self.pattern!r})"


@dataclass(frozen=True, eq=False)
class Lookup(Step):
    """Each token's id in a vocabulary; ``oov_id`` for the rest."""

    file: str
    vocabulary: Mapping[str, int] = field(repr=False)
    oov_id: int

    op = "lookup"
    accepts = frozenset({"tokens"})

    def __post_init__(self) -> None:
        if self.oov_id < 0:
            raise ValueError(f"oov_id must not be negative, got {self.oov_id}")

    @property
    def max_id(self) -> int:
        return max(self.oov_id, max(self.vocabulary.values(), default=0))

    def kind(self, kind: Kind) -> Kind:
        return "ids"

    def apply(self, what: str, value: Ragged) -> Ragged:
        tokens = value.values.tolist()
        ids = np.fromiter(
            map(self.vocabulary.get, tokens, repeat(self.oov_id)), dtype=np.int64, count=len(tokens)
        )
        return Ragged(ids, value.lengths)

    def describe(self) -> str:
        return f"lookup({self.file}: {len(self.vocabulary)} tokens, oov_id={self.oov_id})"


@dataclass(frozen=True, eq=False)
class Pad(Step):
    """Rows of tokens or ids to a [rows, length] tensor: cut to ``length``, filled with ``value``.

    ``truncate`` says which end of a long row is cut: "end" keeps the first ``length`` items.
    """

    length: int
    value: int | str
    truncate: Literal["end", "start"] = "end"

    op = "pad"
    accepts = frozenset({"tokens", "ids"})

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        if self.truncate not in ("end", "start"):
            raise ValueError(f"truncate must be 'end' or 'start', got {self.truncate!r}")

    def kind(self, kind: Kind) -> Kind:
        if kind == "tokens":
            if not isinstance(self.value, str):
                raise ValueError(f"pads tokens, so value must be a string, got {self.value!r}")
            return "text"
        if not isinstance(self.value, int):
            raise ValueError(f"pads ids, so value must be an integer, got {self.value!r}")
        return "int"

    def forward(self, shape: Template) -> Template:
        return (shape[0] if shape else -1, self.length)

    def apply(self, what: str, value: Ragged) -> Array:
        lengths, items = value.lengths, value.values
        rows = len(lengths)
        out = np.full((rows, self.length), self.value, dtype=items.dtype)
        if items.size:
            row = np.repeat(np.arange(rows), lengths)
            starts = np.cumsum(lengths) - lengths
            position = np.arange(items.size) - np.repeat(starts, lengths)
            if self.truncate == "start":
                position -= np.repeat(np.maximum(lengths - self.length, 0), lengths)
            keep = (position >= 0) & (position < self.length)
            out[row[keep], position[keep]] = items[keep]
        return out

    def describe(self) -> str:
        return f"pad(length={self.length}, value={self.value!r}, truncate={self.truncate})"


# -- numbers ---------------------------------------------------------------------------------


def channel_values(name: str, raw: float | list[float] | Array) -> Array:
    """A parameter given once (a scalar) or per channel along the last axis (a list)."""
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and values.size == 0):
        raise ValueError(f"{name} must be a number or a non-empty list of numbers")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite")
    return values


def _channels(*params: Array) -> int:
    sizes = {p.size for p in params if p.ndim == 1}
    if len(sizes) > 1:
        raise ValueError(f"per-channel lists have different lengths: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def _check_channels_template(shape: Template, channels: int) -> None:
    if not channels or shape is None:
        return
    if not shape:
        raise ValueError(f"has {channels} channels, but the value is a scalar")
    if shape[-1] >= 0 and shape[-1] != channels:
        raise ValueError(
            f"has {channels} channels, but the value's last dimension is {shape[-1]} "
            f"(shape {describe(shape)})"
        )


def _check_channels(what: str, value: Array, channels: int) -> None:
    if channels and (value.ndim == 0 or value.shape[-1] != channels):
        raise InvalidArgument(
            f"{what}: has {channels} channels along the last axis, got shape "
            f"{describe(value.shape)}"
        )


def _floating(value: Array) -> Array:
    return value if value.dtype.kind == "f" else value.astype(np.float64)


def _float_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.kind == "f" else _F64


class _PerChannel(Step):
    accepts = NUMERIC

    @property
    def channels(self) -> int:
        raise NotImplementedError

    def forward(self, shape: Template) -> Template:
        _check_channels_template(shape, self.channels)
        return shape


class _FloatPerChannel(_PerChannel):
    """A per-channel step with two statistics (one number, or one per channel) and float output."""

    def _statistics(self) -> tuple[Array, Array]:
        raise NotImplementedError

    def __post_init__(self) -> None:
        _channels(*self._statistics())

    @property
    def channels(self) -> int:
        return _channels(*self._statistics())

    def kind(self, kind: Kind) -> Kind:
        return "float"

    def dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return _float_dtype(dtype)


@dataclass(frozen=True, eq=False)
class Scale(_FloatPerChannel):
    """``value * factor + offset``."""

    factor: Array
    offset: Array

    op = "scale"

    def _statistics(self) -> tuple[Array, Array]:
        return self.factor, self.offset

    def apply(self, what: str, value: Array) -> Array:
        _check_channels(what, value, self.channels)
        x = _floating(value)
        out: Array = x * self.factor.astype(x.dtype) + self.offset.astype(x.dtype)
        return out

    def describe(self) -> str:
        return f"scale(factor={_show(self.factor)}, offset={_show(self.offset)})"


@dataclass(frozen=True, eq=False)
class Normalize(_FloatPerChannel):
    """``(value - mean) / std``, with statistics given inline or read from ``file``."""

    mean: Array
    std: Array
    file: str | None = None

    op = "normalize"

    def _statistics(self) -> tuple[Array, Array]:
        return self.mean, self.std

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.std <= 0).any():
            raise ValueError("std must be positive")

    def apply(self, what: str, value: Array) -> Array:
        _check_channels(what, value, self.channels)
        x = _floating(value)
        out: Array = (x - self.mean.astype(x.dtype)) / self.std.astype(x.dtype)
        return out

    def describe(self) -> str:
        if self.file is not None:
            return f"normalize({self.file}: {self.channels} channels)"
        return f"normalize(mean={_show(self.mean)}, std={_show(self.std)})"


@dataclass(frozen=True, eq=False)
class Clip(_PerChannel):
    """Values below ``low`` become ``low``, above ``high`` become ``high`` (None: no bound)."""

    low: float | None
    high: float | None

    op = "clip"

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ValueError("set min, max or both")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"min ({self.low}) is above max ({self.high})")

    @property
    def channels(self) -> int:
        return 0

    @property
    def _whole(self) -> bool:
        return all(b is None or float(b).is_integer() for b in (self.low, self.high))

    def kind(self, kind: Kind) -> Kind:
        return kind if self._whole else "float"

    def dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return dtype if self._whole else _float_dtype(dtype)

    def apply(self, what: str, value: Array) -> Array:
        x = value if self._whole else _floating(value)
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            low, high = max(low, info.min), min(high, info.max)
            return np.clip(x, int(low), int(high))
        return np.clip(x, low, high)

    def describe(self) -> str:
        return f"clip(min={self.low}, max={self.high})"


@dataclass(frozen=True, eq=False)
class Round(Step):
    """To the nearest whole number (halves to even), so that an integer input takes it."""

    op = "round"
    accepts = NUMERIC

    def kind(self, kind: Kind) -> Kind:
        return "int"

    def apply(self, what: str, value: Array) -> Array:
        return np.rint(value) if value.dtype.kind == "f" else value


@dataclass(frozen=True, eq=False)
class Cast(Step):
    """To ``dtype``, refusing values it cannot hold exactly (a fraction for an integer type)."""

    to: DType

    op = "cast"
    accepts = NUMERIC

    def __post_init__(self) -> None:
        if self.to.kind not in ("int", "float") or self.to.is_bfloat16:
            raise ValueError(
                f"dtype must be a numeric dtype other than bfloat16, got {self.to.name!r}"
            )

    def kind(self, kind: Kind) -> Kind:
        return "int" if self.to.kind == "int" else "float"

    def dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(self.to.name)

    def apply(self, what: str, value: Array) -> Array:
        return tensors.cast(what, value, self.to)

    def describe(self) -> str:
        return f"cast({self.to.name})"


# -- shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Reshape(Step):
    """numpy's reshape: at most one -1, which takes whatever size makes the values fit."""

    shape: tuple[int, ...]

    op = "reshape"
    accepts = ARRAYS

    def __post_init__(self) -> None:
        if any(d < -1 for d in self.shape) or list(self.shape).count(-1) > 1:
            raise ValueError(
                f"shape {describe(self.shape)}: sizes must be at least 0, with at most one -1"
            )

    def forward(self, shape: Template) -> Template:
        if (
            shape is not None
            and -1 not in shape
            and -1 not in self.shape
            and int(np.prod(shape)) != int(np.prod(self.shape))
        ):
            raise ValueError(f"cannot reshape {describe(shape)} to {describe(self.shape)}")
        return self.shape

    def backward(self, shape: Template) -> Template:
        return None

    def apply(self, what: str, value: Array) -> Array:
        try:
            return value.reshape(self.shape)
        except ValueError:
            raise InvalidArgument(
                f"{what}: cannot reshape {value.size} values of shape {describe(value.shape)} "
                f"to {describe(self.shape)}"
            ) from None

    def describe(self) -> str:
        return f"reshape({describe(self.shape)})"


@dataclass(frozen=True, eq=False)
class Expand(Step):
    """A new dimension of size 1 at ``axis``: one example [4] becomes a batch of one [1, 4]."""

    axis: int = 0

    op = "expand"
    accepts = ARRAYS

    def _where(self, rank: int) -> int:
        if not -rank - 1 <= self.axis <= rank:
            raise ValueError(f"axis {self.axis} is out of range for rank {rank}")
        return self.axis if self.axis >= 0 else rank + 1 + self.axis

    def forward(self, shape: Template) -> Template:
        if shape is None:
            return None
        at = self._where(len(shape))
        return (*shape[:at], 1, *shape[at:])

    def backward(self, shape: Template) -> Template:
        if shape is None or not shape:
            return None
        at = self._where(len(shape) - 1)
        return (*shape[:at], *shape[at + 1 :])

    def apply(self, what: str, value: Array) -> Array:
        if not -value.ndim - 1 <= self.axis <= value.ndim:
            raise InvalidArgument(
                f"{what}: axis {self.axis} is out of range for shape {describe(value.shape)}"
            )
        return np.expand_dims(value, self.axis)

    def describe(self) -> str:
        return f"expand(axis={self.axis})"


# -- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Labels:
    """The ``k`` best classes of a score tensor [..., classes], as labels and scores.

    Label ``i`` is line ``i`` of ``file``. Ties keep the lower class first.
    """

    file: str
    labels: tuple[str, ...] = field(repr=False)
    k: int = 1
    scores_as: str = "scores"
    _encoded: Array = field(init=False, repr=False)

    op: ClassVar[str] = "labels"
    accepts: ClassVar[frozenset[Kind]] = NUMERIC

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("no labels")
        if not 1 <= self.k <= len(self.labels):
            raise ValueError(f"k must be from 1 to the {len(self.labels)} labels, got {self.k}")
        encoded = np.empty(len(self.labels), dtype=object)
        encoded[:] = [label.encode() for label in self.labels]
        object.__setattr__(self, "_encoded", encoded)

    def forward(self, shape: Template) -> Template:
        if shape is None:
            return None
        if not shape:
            raise ValueError("needs scores along a last axis, gets a scalar")
        if shape[-1] >= 0 and shape[-1] != len(self.labels):
            raise ValueError(
                f"{self.file} has {len(self.labels)} labels, but the output has {shape[-1]} "
                f"classes (shape {describe(shape)})"
            )
        return (*shape[:-1], self.k)

    def apply(self, what: str, value: Array) -> tuple[Array, Array]:
        """(labels as an object array of UTF-8 bytes, scores as float32), both [..., k]."""
        if value.ndim == 0 or value.shape[-1] != len(self.labels):
            raise FailedPrecondition(
                f"{what}: {self.file} has {len(self.labels)} labels, but TF Serving answered "
                f"shape {describe(value.shape)}"
            )
        scores = value.astype(np.float32)
        order = np.argsort(-scores, axis=-1, kind="stable")[..., : self.k]
        return self._encoded[order], np.take_along_axis(scores, order, axis=-1)

    def describe(self) -> str:
        return f"labels({self.file}: {len(self.labels)} labels, k={self.k})"


def run(what: str, steps: tuple[Step, ...], value: Value) -> Value:
    """``value`` through ``steps``; errors name ``what`` and the step."""
    for index, step in enumerate(steps, 1):
        value = step.apply(f"{what}, step {index} '{step.op}'", value)
    return value


def _show(values: Array) -> str:
    return (
        f"{float(values):g}"
        if values.ndim == 0
        else "[" + ", ".join(f"{v:g}" for v in values) + "]"
    )
