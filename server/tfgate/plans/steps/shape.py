"""Shape steps: reshape and expand, for text and numbers alike; the values pass unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from tfgate.errors import InvalidArgument, counted
from tfgate.plans.steps.base import ARRAYS, Arguments, Array, Kind, Step, Template, describe


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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        return cls(args.shape("shape"))

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
                f"{what}: cannot reshape {counted(value.size, 'value')} of shape "
                f"{describe(value.shape)} "
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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        return cls(args.integer("axis", 0))

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
