"""The ``[models.NAME]`` sections of tfgate's TOML config file: per-model pre/postprocessing.

::

    [models.sentiment]
    signature = "serving_default"      # the signature the sections apply to (the default)

    [models.sentiment.inputs.text]     # a domain input: what callers send ...
    alias = "token_ids"                # ... and the signature input it feeds (default: its name)
    steps = [
      { op = "lowercase" },
      { op = "tokenize", pattern = "[a-z0-9']+" },
      { op = "lookup", file = "vocab.txt", oov_token = "<unk>" },
      { op = "pad", length = 16 },
    ]

    [models.sentiment.outputs.label]   # a domain output: what callers get ...
    alias = "probabilities"            # ... and the signature output it comes from
    steps = [{ op = "labels", file = "labels.txt", k = 3, scores_as = "score" }]

Everything that can be checked without TF Serving is checked here, once, at start-up: the
tables and their keys, the step names and parameters, the kinds of value the steps pass on, and
the files (relative to the config file's directory), which are read here and never again. A
problem raises PipelineConfigError, a ConfigError (``tfgate serve`` exits with status 2) naming
the file, model, tensor, step and problem. tfgate.pipelines checks the rest against the live
signature.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from tfgate import config, dtypes
from tfgate.config import ConfigError
from tfgate.preprocess import (
    Array,
    Cast,
    Clip,
    Expand,
    Kind,
    Labels,
    Lookup,
    Lowercase,
    Normalize,
    Pad,
    Reshape,
    Round,
    Scale,
    Step,
    Tokenize,
    channel_values,
)
from tfgate.signatures import DEFAULT_SIGNATURE


class PipelineConfigError(ConfigError):
    """A ``[models.NAME]`` section cannot work; the message names the file, model and tensor."""


@dataclass(frozen=True, eq=False)
class InputSection:
    """How one domain input becomes a signature input."""

    name: str
    alias: str
    steps: tuple[Step, ...]
    # What the caller sends: "text" or "number"; None when there are no steps (cast as usual).
    source: Kind | None
    # One example's value, fed (through the steps) when the caller leaves the input out.
    default: Array | None


@dataclass(frozen=True, eq=False)
class OutputSection:
    """How one signature output becomes a domain output (two, with a labels step)."""

    name: str
    alias: str
    steps: tuple[Step, ...]
    labels: Labels | None


@dataclass(frozen=True, eq=False)
class ModelSection:
    model: str
    signature: str
    inputs: Mapping[str, InputSection]
    outputs: Mapping[str, OutputSection]
    origin: str  # "config file PATH", for messages


_MISSING: Final = object()
_TEXT_OPS: Final = frozenset({"lowercase", "tokenize"})


class _Params:
    """One step's table: typed reads, and a complaint about keys nobody asked for."""

    def __init__(self, table: Mapping[str, object], where: str, base: Path) -> None:
        self._table = table
        self._asked: list[str] = []
        self.where = where
        self.base = base

    def error(self, problem: str) -> PipelineConfigError:
        return PipelineConfigError(f"{self.where}: {problem}")

    def has(self, key: str) -> bool:
        self._asked.append(key)
        return key in self._table

    def raw(self, key: str, default: object = _MISSING) -> object:
        self._asked.append(key)
        value = self._table.get(key, default)
        if value is _MISSING:
            raise self.error(f"'{key}' is required")
        return value

    def string(self, key: str, default: object = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(f"'{key}' must be a string, got {value!r}")
        return value

    def integer(self, key: str, default: object = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(f"'{key}' must be an integer, got {value!r}")
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise self.error(f"'{key}' must be a number, got {value!r}")
        return None if value is None else float(value)

    def channels(self, key: str, default: object = _MISSING) -> Array:
        value = self.raw(key, default)
        if not _numbers(value):
            raise self.error(f"'{key}' must be a number or a list of numbers, got {value!r}")
        try:
            return channel_values(key, value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def shape(self, key: str) -> tuple[int, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in value
        ):
            raise self.error(f"'{key}' must be a list of integers, got {value!r}")
        return tuple(value)

    def path(self, shown: str) -> Path:
        """A file named in the config, relative to the config file's directory."""
        return Path(os.path.normpath(self.base / shown))

    def lines(self, key: str) -> tuple[str, list[str]]:
        """The file named by ``key`` (relative to the config file), as its non-empty lines."""
        shown = self.string(key)
        path = self.path(shown)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise self.error(f"file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise self.error(f"file {path}: not UTF-8 text ({exc.reason})") from None
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise self.error(f"file {path} is empty")
        for number, line in enumerate(lines, 1):
            if not line:
                raise self.error(f"file {path}: line {number} is empty")
        return shown, lines

    def finish(self) -> None:
        unknown = sorted(set(self._table) - set(self._asked) - {"op"})
        if unknown:
            known = ", ".join(sorted(set(self._asked))) or "none"
            raise self.error(f"unknown parameter '{unknown[0]}' (parameters: {known})")


def _numbers(value: object) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)


# -- the steps -------------------------------------------------------------------------------


def _tokenize(p: _Params, kind: Kind) -> Step:
    return Tokenize(p.string("pattern", None))


def _lookup(p: _Params, kind: Kind) -> Step:
    shown, tokens = p.lines("file")
    vocabulary: dict[str, int] = {}
    for index, token in enumerate(tokens):
        first = vocabulary.setdefault(token, index)
        if first != index:
            raise p.error(
                f"file {p.path(shown)}: line {index + 1} repeats the token {token!r} of "
                f"line {first + 1}"
            )
    if p.has("oov_token") == p.has("oov_id"):
        raise p.error("set one of 'oov_token' (a token of the file) or 'oov_id'")
    oov: int | None
    if p.has("oov_token"):
        token = p.string("oov_token")
        oov = vocabulary.get(token)
        if oov is None:
            raise p.error(f"oov_token {token!r} is not in {p.path(shown)}")
    else:
        oov = p.integer("oov_id")
    return Lookup(shown, vocabulary, oov)


def _pad(p: _Params, kind: Kind) -> Step:
    value = p.raw("value", "" if kind == "tokens" else 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise p.error(f"'value' must be an integer or a string, got {value!r}")
    return Pad(p.integer("length"), value, p.string("truncate", "end"))


def _scale(p: _Params, kind: Kind) -> Step:
    if not (p.has("factor") or p.has("offset")):
        raise p.error("set 'factor', 'offset' or both")
    return Scale(p.channels("factor", 1.0), p.channels("offset", 0.0))


def _normalize(p: _Params, kind: Kind) -> Step:
    if p.has("file"):
        if p.has("mean") or p.has("std"):
            raise p.error("set either 'file' or 'mean' and 'std'")
        shown, lines = p.lines("file")
        mean, std = _statistics(p, shown, lines)
        return Normalize(mean, std, shown)
    return Normalize(p.channels("mean"), p.channels("std"))


def _statistics(p: _Params, shown: str, lines: list[str]) -> tuple[Array, Array]:
    """The mean and std columns of a CSV file with a header row, one row per channel."""
    reader = csv.DictReader(lines)
    rows = list(reader)
    if not rows or not {"mean", "std"} <= set(reader.fieldnames or ()):
        raise p.error(
            f"file {p.path(shown)}: needs a header row with 'mean' and 'std' columns and a row "
            "per channel"
        )
    try:
        mean = [float(row["mean"]) for row in rows]
        std = [float(row["std"]) for row in rows]
    except (TypeError, ValueError) as exc:
        raise p.error(f"file {p.path(shown)}: {exc}") from None
    return channel_values("mean", mean), channel_values("std", std)


def _cast(p: _Params, kind: Kind) -> Step:
    name = p.string("dtype")
    found = dtypes.BY_NAME.get(name)
    if found is None or found.kind not in ("int", "float") or found.is_bfloat16:
        names = ", ".join(d.name for d in dtypes.ALL if d.kind in ("int", "float"))
        raise p.error(f"dtype {name!r} is not one of {names.replace(', bfloat16', '')}")
    return Cast(found)


def _labels(p: _Params, kind: Kind) -> Labels:
    shown, labels = p.lines("file")
    return Labels(shown, tuple(labels), p.integer("k", 1), p.string("scores_as", "scores"))


_Builder = Callable[[_Params, Kind], Any]

STEPS: Final[dict[str, tuple[frozenset[Kind], _Builder]]] = {
    "lowercase": (Lowercase.accepts, lambda p, k: Lowercase()),
    "tokenize": (Tokenize.accepts, _tokenize),
    "lookup": (Lookup.accepts, _lookup),
    "pad": (Pad.accepts, _pad),
    "scale": (Scale.accepts, _scale),
    "normalize": (Normalize.accepts, _normalize),
    "clip": (Clip.accepts, lambda p, k: Clip(p.number("min"), p.number("max"))),
    "round": (Round.accepts, lambda p, k: Round()),
    "cast": (Cast.accepts, _cast),
    "reshape": (Reshape.accepts, lambda p, k: Reshape(p.shape("shape"))),
    "expand": (Expand.accepts, lambda p, k: Expand(p.integer("axis", 0))),
    "labels": (Labels.accepts, _labels),
}
INPUT_STEPS: Final = frozenset(STEPS) - {"labels"}
OUTPUT_STEPS: Final = frozenset(
    {"scale", "normalize", "clip", "round", "cast", "reshape", "expand", "labels"}
)


def _steps(
    raw: object, where: str, base: Path, allowed: frozenset[str], kind: Kind
) -> Iterator[tuple[Kind, Any]]:
    """Each step of ``raw`` built and checked, with the kind of value it gives."""
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise PipelineConfigError(
            f"{where}: 'steps' must be a list of tables, e.g. [{{ op = \"lowercase\" }}]"
        )
    for index, table in enumerate(raw, 1):
        op = table.get("op")
        at = f"{where}, step {index}"
        if not isinstance(op, str):
            raise PipelineConfigError(f"{at}: needs 'op', the step's name, got {op!r}")
        if op not in allowed:
            raise PipelineConfigError(
                f"{at}: unknown step '{op}' (steps: {', '.join(sorted(allowed))})"
            )
        at = f"{at} '{op}'"
        accepts, build = STEPS[op]
        if kind not in accepts:
            raise PipelineConfigError(
                f"{at}: takes {' or '.join(sorted(accepts))}, but is given {kind}"
            )
        params = _Params(table, at, base)
        try:
            step = build(params, kind)
            params.finish()
            if isinstance(step, Step):
                kind = step.kind(kind)
        except ValueError as exc:
            if isinstance(exc, PipelineConfigError):
                raise
            raise PipelineConfigError(f"{at}: {exc}") from None
        yield kind, step


def _input(name: str, table: Mapping[str, object], where: str, base: Path) -> InputSection:
    p = _Params(table, where, base)
    alias = p.string("alias", name)
    raw_steps = p.raw("steps", [])
    listed = raw_steps if isinstance(raw_steps, list) else []
    ops = {s.get("op") for s in listed if isinstance(s, dict)}
    source: Kind = "text" if _TEXT_OPS & ops else "number"
    built = list(_steps(raw_steps, where, base, INPUT_STEPS, source))
    if built and built[-1][0] in ("tokens", "ids"):
        raise PipelineConfigError(
            f"{where}: the steps end with rows of {built[-1][0]} of different lengths; "
            "end them with a 'pad' step"
        )
    steps = tuple(step for _, step in built)
    default = p.raw("default", None)
    p.finish()
    return InputSection(
        name,
        alias,
        steps,
        source if steps else None,
        None if default is None else _default(default, where, source if steps else None),
    )


def _default(raw: object, where: str, source: Kind | None) -> Array:
    leaves = list(_leaves(raw))
    kinds = {
        "bool" if isinstance(v, bool) else "str" if isinstance(v, str) else "number" for v in leaves
    }
    if len(kinds) > 1 or not all(isinstance(v, bool | int | float | str) for v in leaves):
        raise PipelineConfigError(f"{where}: 'default' mixes types: {raw!r}")
    kind = kinds.pop() if kinds else "number"
    if source == "text" and not isinstance(raw, str):
        raise PipelineConfigError(f"{where}: 'default' must be one text (a string), got {raw!r}")
    if source == "number" and kind != "number":
        raise PipelineConfigError(f"{where}: 'default' must be numbers, got {raw!r}")
    try:
        value = np.array(raw, dtype=object if kind == "str" else None)
    except ValueError:
        raise PipelineConfigError(
            f"{where}: 'default' has nested lists of different lengths: {raw!r}"
        ) from None
    if value.dtype == object and kind != "str":
        raise PipelineConfigError(
            f"{where}: 'default' has nested lists of different lengths: {raw!r}"
        )
    return value


def _leaves(raw: object) -> Iterator[object]:
    if isinstance(raw, list):
        for item in raw:
            yield from _leaves(item)
    else:
        yield raw


def _output(name: str, table: Mapping[str, object], where: str, base: Path) -> OutputSection:
    p = _Params(table, where, base)
    alias = p.string("alias", name)
    # The kind of an output is known only from the signature; "number" is checked here, and
    # tfgate.pipelines checks the real one.
    built = [step for _, step in _steps(p.raw("steps", []), where, base, OUTPUT_STEPS, "number")]
    p.finish()
    labels = built.pop() if built and isinstance(built[-1], Labels) else None
    if any(isinstance(step, Labels) for step in built):
        raise PipelineConfigError(f"{where}: 'labels' must be the last step")
    if labels is not None and labels.scores_as == name:
        raise PipelineConfigError(
            f"{where}: the labels step's scores_as '{name}' is the output's own name"
        )
    return OutputSection(name, alias, tuple(built), labels)


def _tables(raw: object, where: str, what: str) -> dict[str, Mapping[str, object]]:
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise PipelineConfigError(f"{where}: '{what}' must hold one table per {what[:-1]}")
    return raw


def _model(model: str, table: object, origin: str, base: Path) -> ModelSection:
    where = f"{origin}: model '{model}'"
    if not isinstance(table, dict):
        raise PipelineConfigError(f"{where}: [models.{model}] must be a table")
    p = _Params(table, where, base)
    signature = p.string("signature", DEFAULT_SIGNATURE)
    inputs = {
        name: _input(name, t, f"{where} input '{name}'", base)
        for name, t in _tables(p.raw("inputs", {}), where, "inputs").items()
    }
    outputs = {
        name: _output(name, t, f"{where} output '{name}'", base)
        for name, t in _tables(p.raw("outputs", {}), where, "outputs").items()
    }
    p.finish()
    fed: dict[str, str] = {}
    for feed in inputs.values():
        other = fed.setdefault(feed.alias, feed.name)
        if other != feed.name:
            raise PipelineConfigError(
                f"{where}: inputs '{other}' and '{feed.name}' both feed '{feed.alias}'"
            )
    names = set(outputs)
    for section in outputs.values():
        if section.labels is not None:
            if section.labels.scores_as in names:
                raise PipelineConfigError(
                    f"{where} output '{section.name}': scores_as '{section.labels.scores_as}' "
                    "is the name of another output"
                )
            names.add(section.labels.scores_as)
    return ModelSection(model, signature, inputs, outputs, origin)


def load(path: str | None, data: Mapping[str, Any] | None = None) -> dict[str, ModelSection]:
    """The ``[models.NAME]`` sections of the config file at ``path`` (none without a file).

    ``data`` is the file as tfgate.config.read_file parsed it; without it the file is read here.
    """
    if not path:
        return {}
    origin = f"config file {path}"
    if data is None:
        data = config.read_file(path)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PipelineConfigError(f"{origin}: 'models' must be a table of [models.NAME] sections")
    base = Path(path).resolve().parent
    return {name: _model(name, table, origin, base) for name, table in models.items()}
