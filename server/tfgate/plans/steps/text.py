"""Text steps: texts to lower case, to rows of tokens, to ids, and to a padded tensor.

Text is an object array of ``str``; tokens and ids are ``Ragged``, so that padding is a single
numpy scatter. Only tokenising and the vocabulary lookup touch each string, with ``map`` over a
compiled pattern and a dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Literal, Self

import numpy as np

from tfgate.errors import InvalidArgument
from tfgate.plans.steps.base import Arguments, Array, Kind, Ragged, Step, Template, describe

_lower = np.frompyfunc(str.lower, 1, 1)


@dataclass(frozen=True, eq=False)
class Lowercase(Step):
    op = "lowercase"
    accepts = frozenset({"text"})
    places = frozenset({"input"})
    reads_text = True

    def apply(self, what: str, value: Array) -> Array:
        return np.asarray(_lower(value), dtype=object) if value.size else value


@dataclass(frozen=True, eq=False)
class Tokenize(Step):
    """Splits each text on whitespace, or into the matches of ``pattern``."""

    pattern: str | None = None
    _split: Callable[[str], list[str]] = field(init=False, repr=False)

    op = "tokenize"
    accepts = frozenset({"text"})
    places = frozenset({"input"})
    reads_text = True

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

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        return cls(args.string("pattern", None))

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
    places = frozenset({"input"})

    def __post_init__(self) -> None:
        if self.oov_id < 0:
            raise ValueError(f"oov_id must not be negative, got {self.oov_id}")

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        """A vocabulary file, one token a line (id = line index), and the id of the rest."""
        shown, tokens = args.lines("file")
        vocabulary: dict[str, int] = {}
        for index, token in enumerate(tokens):
            first = vocabulary.setdefault(token, index)
            if first != index:
                raise args.error(
                    f"file {args.path(shown)}: line {index + 1} repeats the token {token!r} of "
                    f"line {first + 1}"
                )
        if args.has("oov_token") == args.has("oov_id"):
            raise args.error("set one of 'oov_token' (a token of the file) or 'oov_id'")
        oov: int | None
        if args.has("oov_token"):
            token = args.string("oov_token")
            oov = vocabulary.get(token)
            if oov is None:
                raise args.error(f"oov_token {token!r} is not in {args.path(shown)}")
        else:
            oov = args.integer("oov_id")
        return cls(shown, vocabulary, oov)

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
    places = frozenset({"input"})

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        if self.truncate not in ("end", "start"):
            raise ValueError(f"truncate must be 'end' or 'start', got {self.truncate!r}")

    @classmethod
    def from_config(cls, args: Arguments, kind: Kind) -> Self:
        value = args.raw("value", "" if kind == "tokens" else 0)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise args.error(f"'value' must be an integer or a string, got {value!r}")
        return cls(args.integer("length"), value, args.string("truncate", "end"))

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
