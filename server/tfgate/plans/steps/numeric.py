"""Numeric steps: scale, normalize, clip, round and cast, as numpy expressions over whole arrays.

``scale`` and ``normalize`` take a statistic once (a scalar) or per channel along the last axis
(a list), and give floats: float32 stays float32, everything else becomes float64.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, Final, Self

import numpy as np

from tfgate import dtypes, tensors
from tfgate.dtypes import DType
from tfgate.errors import InvalidArgument
from tfgate.plans.steps.base import NUMERIC, Arguments, Array, Kind, Step, Template, describe

_F64: Final = np.dtype(np.float64)


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


def _show(values: Array) -> str:
    return (
        f"{float(values):g}"
        if values.ndim == 0
        else "[" + ", ".join(f"{v:g}" for v in values) + "]"
    )


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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        if not (args.has("factor") or args.has("offset")):
            raise args.error("set 'factor', 'offset' or both")
        return cls(args.channels("factor", 1.0), args.channels("offset", 0.0))

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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        if args.has("file"):
            if args.has("mean") or args.has("std"):
                raise args.error("set either 'file' or 'mean' and 'std'")
            shown, lines = args.lines("file")
            mean, std = _read_statistics(args, shown, lines)
            return cls(mean, std, shown)
        return cls(args.channels("mean"), args.channels("std"))

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


def _read_statistics(args: Arguments, shown: str, lines: list[str]) -> tuple[Array, Array]:
    """The mean and std columns of a CSV file with a header row, one row per channel."""
    reader = csv.DictReader(lines)
    rows = list(reader)
    if not rows or not {"mean", "std"} <= set(reader.fieldnames or ()):
        raise args.error(
            f"file {args.path(shown)}: needs a header row with 'mean' and 'std' columns and a row "
            "per channel"
        )
    try:
        mean = [float(row["mean"]) for row in rows]
        std = [float(row["std"]) for row in rows]
    except (TypeError, ValueError) as exc:
        raise args.error(f"file {args.path(shown)}: {exc}") from None
    return channel_values("mean", mean), channel_values("std", std)


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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        return cls(args.number("min"), args.number("max"))

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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        name = args.string("dtype")
        found = dtypes.BY_NAME.get(name)
        if found is None or found.kind not in ("int", "float") or found.is_bfloat16:
            names = ", ".join(d.name for d in dtypes.ALL if d.kind in ("int", "float"))
            raise args.error(f"dtype {name!r} is not one of {names.replace(', bfloat16', '')}")
        return cls(found)

    def kind(self, kind: Kind) -> Kind:
        return "int" if self.to.kind == "int" else "float"

    def dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(self.to.name)

    def apply(self, what: str, value: Array) -> Array:
        return tensors.cast(what, value, self.to)

    def describe(self) -> str:
        return f"cast({self.to.name})"
