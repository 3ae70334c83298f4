"""What every step is: the Step base class, the types steps speak, and the registry of steps.

A step is built from checked parameters (``ValueError`` otherwise). Before any request arrives,
``kind``, ``forward``, ``backward`` and ``dtype`` tell what a step accepts and gives, so that a
pipeline can be checked against a signature. At run time a value a step cannot handle raises
InvalidArgument naming the tensor and the step (``what``).

A config names a step by its ``op``. A subclass that sets ``op`` registers itself in REGISTRY
when it is defined; ``places`` says where a config may use it and ``from_config`` how it reads
its TOML table, so that adding a step is adding one class. Subclasses without an ``op`` are
shared bases and are not registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, Protocol, Self

import numpy as np

from tfgate.tensors import describe_shape

Array = np.ndarray[Any, Any]
Kind = Literal["text", "tokens", "ids", "number", "int", "float"]
# A shape as far as it is known before a request: -1 for any size, None for an unknown rank.
Template = tuple[int, ...] | None
# Where a config may name a step: among an input's steps or an output's.
Place = Literal["input", "output"]

NUMERIC: Final[frozenset[Kind]] = frozenset({"number", "int", "float"})
ARRAYS: Final[frozenset[Kind]] = NUMERIC | {"text"}


@dataclass(frozen=True, eq=False)
class Ragged:
    """Rows of different lengths: ``values`` holds every row's items, in order."""

    values: Array
    lengths: Array  # int64, one per row


Value = Array | Ragged

# A shape in messages, as everywhere in tfgate: "[-1, 4]", or "unknown rank".
describe = describe_shape


class Arguments(Protocol):
    """One step's table of the config file, as ``Step.from_config`` reads it.

    Each read checks the key's type (``default`` when the key is absent; without one the key is
    required), and every problem is an error naming the file, model, tensor, step and key.
    """

    def error(self, problem: str) -> Exception:
        """An error for a problem the step finds itself, named like the others."""
        ...

    def has(self, key: str) -> bool: ...

    def raw(self, key: str, default: object = ...) -> object: ...

    def string(self, key: str, default: object = ...) -> Any: ...

    def integer(self, key: str, default: object = ...) -> Any: ...

    def number(self, key: str) -> float | None: ...

    def channels(self, key: str, default: object = ...) -> Array:
        """A number, or a list of one per channel (see numeric.channel_values)."""
        ...

    def shape(self, key: str) -> tuple[int, ...]: ...

    def path(self, shown: str) -> Path:
        """A file named in the config, relative to the config file's directory."""
        ...

    def lines(self, key: str) -> tuple[str, list[str]]:
        """The file named by ``key`` as shown in the config, and its lines (none empty)."""
        ...


_REGISTRY: dict[str, type[Step]] = {}
REGISTRY: Final[Mapping[str, type[Step]]] = MappingProxyType(_REGISTRY)


class Step:
    """One step of a pipeline; the subclasses that set ``op`` are the steps a config can name."""

    op: ClassVar[str]
    accepts: ClassVar[frozenset[Kind]]
    places: ClassVar[frozenset[Place]] = frozenset({"input", "output"})
    # An input whose steps include one that reads text takes text from callers, else numbers.
    reads_text: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "op" not in cls.__dict__:
            return
        # Registered as defined: a decorator that makes a new class (slots=True) would leave
        # the registry holding the old one.
        other = _REGISTRY.setdefault(cls.op, cls)
        if other is not cls:
            raise TypeError(
                f"step '{cls.op}' is defined twice: {other.__module__}.{other.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}"
            )

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        """The step a config's table declares, for a value of ``kind`` (one of ``accepts``)."""
        return cls()

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


def ops(place: Place) -> frozenset[str]:
    """The step names a config may use in ``place``."""
    return frozenset(op for op, step in REGISTRY.items() if place in step.places)


def run(what: str, steps: tuple[Step, ...], value: Value) -> Value:
    """``value`` through ``steps``; errors name ``what`` and the step."""
    for index, step in enumerate(steps, 1):
        value = step.apply(f"{what}, step {index} '{step.op}'", value)
    return value
