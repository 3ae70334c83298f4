"""A configured section bound to a model version's live signature: the plan it runs.

A ``[models.NAME]`` section (tfgate.plans.config) is checked against the signature TF Serving
reports for a model version before that version serves a request through it: at start-up when
TF Serving answers (a problem stops tfgate), else on first use, and again for every new version
(a problem makes that version's requests FAILED_PRECONDITION, with the same message); see
tfgate.plans.plan.Plans. ``bind`` either gives a Plan or names the file, model, version, tensor
and problem. Inputs and outputs the section does not name are fed and passed on as by the
identity plan. Pure.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, cast

import numpy as np

from tfgate import dtypes
from tfgate.dtypes import DType
from tfgate.errors import GatewayError
from tfgate.plans.config import ModelSection, OutputSection
from tfgate.plans.plan import Emit, Feed, Plan
from tfgate.plans.steps import Kind, Lookup, Pad, Step, Template, describe
from tfgate.signatures import ModelMetadata, Signature, TensorSpec
from tfgate.v1 import inference_pb2

# The signature dtypes each kind of pipeline result can feed.
_FEEDS: Final[dict[Kind, tuple[str, ...]]] = {
    "text": ("string",),
    "number": ("int", "float"),
    "int": ("int", "float"),
    "float": ("float",),
}


class BindError(Exception):
    """A section does not fit a model version's signature; the message says where and why."""


# -- binding ---------------------------------------------------------------------------------


def _fits(shape: Template, spec: Template) -> bool:
    if shape is None or spec is None:
        return True
    return len(shape) == len(spec) and all(
        a < 0 or b < 0 or a == b for a, b in zip(shape, spec, strict=True)
    )


def _shapes(where: str, steps: tuple[Step, ...], start: Template) -> list[Template]:
    """The shape before each step and after the last, as far as known."""
    shapes = [start]
    for index, step in enumerate(steps, 1):
        try:
            shapes.append(step.forward(shapes[-1]))
        except ValueError as exc:
            raise BindError(f"{where}, step {index} '{step.op}': {exc}") from None
    return shapes


def _input_shape(where: str, feed: Feed) -> Template:
    """Checks the steps' shapes against the signature's; the shape callers send."""
    start: Template = (-1,) if feed.source == "text" else None
    shapes = _shapes(where, feed.steps, start)
    spec = feed.spec.shape
    if not _fits(shapes[-1], spec):
        raise BindError(
            f"{where}: the steps give shape {describe(shapes[-1])}, but '{feed.alias}' is "
            f"{describe(spec)}"
        )
    # Back from the signature's shape, for per-channel steps before it is known going forward.
    after = shapes[-1] if shapes[-1] is not None else spec
    for index in reversed(range(len(feed.steps))):
        step = feed.steps[index]
        before = shapes[index] if shapes[index] is not None else step.backward(after)
        try:
            step.forward(before)
        except ValueError as exc:
            raise BindError(f"{where}, step {index + 1} '{step.op}': {exc}") from None
        after = before
    return after


def _check_feed(where: str, feed: Feed) -> Template:
    dtype = feed.spec.dtype
    if dtype.kind == "unsupported":
        raise BindError(f"{where}: '{feed.alias}' is {dtype.name}, which tfgate cannot feed")
    shape = feed.spec.shape
    if feed.source is not None:
        kind = cast(Kind, feed.source)
        for step in feed.steps:
            kind = step.kind(kind)
        if dtype.kind not in _FEEDS[kind]:
            hint = " (add a 'round' or 'cast' step)" if kind == "float" else ""
            raise BindError(
                f"{where}: the steps give {kind} values, but '{feed.alias}' is {dtype.name}{hint}"
            )
        if dtype.kind == "int":
            _check_ids(where, feed, dtype)
        shape = _input_shape(where, feed)
    if feed.default is not None:
        try:
            feed.from_default(1)
        except GatewayError as exc:
            raise BindError(f"{where}: the default does not fit: {exc.message}") from None
    return shape


def _check_ids(where: str, feed: Feed, dtype: DType) -> None:
    low, high = dtypes.int_range(dtype)
    for index, step in enumerate(feed.steps, 1):
        at = f"{where}, step {index} '{step.op}'"
        if isinstance(step, Lookup) and step.max_id > high:
            raise BindError(
                f"{at}: ids up to {step.max_id} ({step.file}) do not fit '{feed.alias}' "
                f"({dtype.name}, up to {high})"
            )
        if isinstance(step, Pad) and isinstance(step.value, int) and not low <= step.value <= high:
            raise BindError(f"{at}: value {step.value} does not fit {dtype.name}")


def _check_output(
    where: str, section: OutputSection, spec: TensorSpec
) -> list[tuple[str, str, Template]]:
    """Checks a section against its signature output; (name, dtype, shape) of what it gives."""
    if not section.steps and section.labels is None:
        return [(section.name, spec.dtype.name, spec.shape)]
    dtype = spec.dtype
    if dtype.kind not in ("int", "float"):
        raise BindError(f"{where}: '{section.alias}' is {dtype.name}; only numbers take steps")
    kind: Kind = "int" if dtype.kind == "int" else "float"
    numpy_dtype = np.dtype(np.float32 if dtype.is_bfloat16 else dtype.name)
    for step in section.steps:
        kind = step.kind(kind)
        numpy_dtype = step.dtype(numpy_dtype)
    shape = _shapes(where, section.steps, spec.shape)[-1]
    if section.labels is None:
        return [(section.name, numpy_dtype.name, shape)]
    try:
        shape = section.labels.forward(shape)
    except ValueError as exc:
        index = len(section.steps) + 1
        raise BindError(f"{where}, step {index} 'labels': {exc}") from None
    return [(section.name, "string", shape), (section.labels.scores_as, "float32", shape)]


def _spec(
    dtype: str, shape: Template, alias: str, steps: tuple[Any, ...] = (), optional: bool = False
) -> inference_pb2.TensorSpec:
    out = inference_pb2.TensorSpec(
        dtype=dtype, alias=alias, steps=[s.describe() for s in steps], optional=optional
    )
    if shape is None:
        out.unknown_rank = True
    else:
        out.shape.extend(shape)
    return out


def _show(spec: inference_pb2.TensorSpec) -> str:
    shape = "unknown rank" if spec.unknown_rank else describe(tuple(spec.shape))
    return f"{spec.dtype} {shape}"


def bind(section: ModelSection, meta: ModelMetadata) -> Plan:
    """``section`` checked against ``meta``'s signature; BindError says what does not fit."""
    at = f"{section.origin}: model '{section.model}' version {meta.version}"
    signature: Signature | None = meta.signatures.get(section.signature)
    if signature is None:
        raise BindError(f"{at}: no signature '{section.signature}' (signatures: {meta.offered()})")
    view = inference_pb2.Signature(method=signature.method)
    feeds: dict[str, Feed] = {}
    for s in section.inputs.values():
        where = f"{at} input '{s.name}'"
        spec = signature.inputs.get(s.alias)
        if spec is None:
            raise BindError(
                f"{where}: '{s.alias}' is not an input of signature '{section.signature}' "
                f"(inputs: {', '.join(signature.inputs)})"
            )
        feed = Feed(s.name, s.alias, spec, s.steps, s.source, s.default)
        shape = _check_feed(where, feed)
        source = {"text": "string", "number": "float64"}.get(s.source or "", spec.dtype.name)
        view.inputs[s.name].CopyFrom(_spec(source, shape, s.alias, s.steps, s.default is not None))
        feeds[s.name] = dataclasses.replace(feed, shown=_show(view.inputs[s.name]))
    fed = {s.alias for s in section.inputs.values()}
    for alias, spec in signature.inputs.items():
        if alias in fed:
            continue
        if alias in feeds:
            raise BindError(
                f"{at} input '{alias}': signature '{section.signature}' has an input of that "
                "name too, which no section feeds; name the domain input otherwise"
            )
        feeds[alias] = Feed(alias, alias, spec, shown=spec.describe())
        view.inputs[alias].CopyFrom(_spec(spec.dtype.name, spec.shape, alias))

    emits: dict[str, list[Emit]] = {}
    sources: dict[str, str] = {}
    for o in section.outputs.values():
        where = f"{at} output '{o.name}'"
        spec = signature.outputs.get(o.alias)
        if spec is None:
            raise BindError(
                f"{where}: '{o.alias}' is not an output of signature '{section.signature}' "
                f"(outputs: {', '.join(signature.outputs)})"
            )
        steps: tuple[Any, ...] = o.steps if o.labels is None else (*o.steps, o.labels)
        for name, dtype, shape in _check_output(where, o, spec):
            view.outputs[name].CopyFrom(_spec(dtype, shape, o.alias, steps))
            sources[name] = o.alias
        emits.setdefault(o.alias, []).append(Emit(o.name, o.steps, o.labels))
    used = {o.alias for o in section.outputs.values()}
    for alias, spec in signature.outputs.items():
        if alias in used:
            continue
        if alias in sources:
            raise BindError(
                f"{at} output '{alias}': signature '{section.signature}' has an output of that "
                "name too, which no section uses; name the domain output otherwise"
            )
        emits[alias] = [Emit(alias)]
        sources[alias] = alias
        view.outputs[alias].CopyFrom(_spec(spec.dtype.name, spec.shape, alias))
    return Plan(
        meta.model,
        meta.version,
        section.signature,
        feeds,
        {alias: tuple(e) for alias, e in emits.items()},
        sources,
        view,
        makes_values=any(f.source is not None or f.default is not None for f in feeds.values()),
        batched=signature.batched,
    )
