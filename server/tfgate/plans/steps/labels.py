"""The labels step: an output's scores made into its ``k`` best labels and their scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import numpy as np

from tfgate.errors import FailedPrecondition
from tfgate.plans.steps.base import NUMERIC, Arguments, Array, Kind, Step, Template, describe


@dataclass(frozen=True, eq=False)
class Labels(Step):
    """The ``k`` best classes of a score tensor [..., classes], as labels and scores.

    Label ``i`` is line ``i`` of ``file``. Ties keep the lower class first. An output's last
    step: it gives two tensors, the labels under the output's name and the scores under
    ``scores_as``.
    """

    file: str
    labels: tuple[str, ...] = field(repr=False)
    k: int = 1
    scores_as: str = "scores"
    _encoded: Array = field(init=False, repr=False)

    op = "labels"
    accepts = NUMERIC
    places = frozenset({"output"})

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("no labels")
        if not 1 <= self.k <= len(self.labels):
            raise ValueError(f"k must be from 1 to the {len(self.labels)} labels, got {self.k}")
        encoded = np.empty(len(self.labels), dtype=object)
        encoded[:] = [label.encode() for label in self.labels]
        object.__setattr__(self, "_encoded", encoded)

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        shown, labels = args.lines("file")
        return cls(shown, tuple(labels), args.integer("k", 1), args.string("scores_as", "scores"))

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
