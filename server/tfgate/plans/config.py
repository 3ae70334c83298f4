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
the file, model, tensor, step and problem. tfgate.plans.bind checks the rest against the live
signature.

The steps a config can name, and how each reads its table, are the step classes' own
(tfgate.plans.steps.REGISTRY); this module reads the rest of a section.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from tfgate import config
from tfgate.plans.arguments import PipelineConfigError, Table
from tfgate.plans.steps import REGISTRY, Array, Kind, Labels, Step, ops
from tfgate.signatures import DEFAULT_SIGNATURE

__all__ = [
    "INPUT_STEPS",
    "OUTPUT_STEPS",
    "InputSection",
    "ModelSection",
    "OutputSection",
    "PipelineConfigError",
    "load",
]


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


# The tables of a [models.NAME] section that other modules read: the response cache's
# (tfgate.cache) and micro-batching's (tfgate.batcher).
OWN_TABLES: Final = frozenset({"cache", "batching"})
INPUT_STEPS: Final = ops("input")
OUTPUT_STEPS: Final = ops("output")


def _steps(
    raw: object, where: str, base: Path, allowed: frozenset[str], kind: Kind
) -> Iterator[tuple[Kind, Step]]:
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
        found = REGISTRY[op]
        if kind not in found.accepts:
            raise PipelineConfigError(
                f"{at}: takes {' or '.join(sorted(found.accepts))}, but is given {kind}"
            )
        args = Table(table, at, base)
        try:
            step = found.from_config(args, kind)
            args.finish()
            kind = step.kind(kind)
        except ValueError as exc:
            if isinstance(exc, PipelineConfigError):
                raise
            raise PipelineConfigError(f"{at}: {exc}") from None
        yield kind, step


def _input(name: str, table: Mapping[str, object], where: str, base: Path) -> InputSection:
    p = Table(table, where, base)
    alias = p.string("alias", name)
    raw_steps = p.raw("steps", [])
    listed = raw_steps if isinstance(raw_steps, list) else []
    named = [s.get("op") for s in listed if isinstance(s, dict)]
    # An op that is not a step's name is reported by _steps, in order.
    reads_text = any(
        isinstance(op, str) and op in INPUT_STEPS and REGISTRY[op].reads_text for op in named
    )
    source: Kind = "text" if reads_text else "number"
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
    p = Table(table, where, base)
    alias = p.string("alias", name)
    # The kind of an output is known only from the signature; "number" is checked here, and
    # tfgate.plans.bind checks the real one.
    built = [step for _, step in _steps(p.raw("steps", []), where, base, OUTPUT_STEPS, "number")]
    p.finish()
    labels = built[-1] if built and isinstance(built[-1], Labels) else None
    if labels is not None:
        built.pop()
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
    p = Table(table, where, base)
    for name in sorted(OWN_TABLES):
        p.raw(name, None)
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
    # A section holding only [models.NAME.cache] or [models.NAME.batching] tables has no
    # preprocessing: its model keeps the identity plan.
    return {
        name: _model(name, table, origin, base)
        for name, table in models.items()
        if not (isinstance(table, dict) and table and table.keys() <= OWN_TABLES)
    }
