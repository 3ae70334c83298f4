"""The configured pipelines, bound to each model version's live signature, and run per request.

A ``[models.NAME]`` section (tfgate.pipeline_config) is checked against the signature TF Serving
reports for a model version before that version serves a request through it: at start-up when
TF Serving answers (a problem stops tfgate), else on first use, and again for every new version
(a problem makes that version's requests FAILED_PRECONDITION, with the same message). ``bind``
either gives a Plan or names the file, model, version, tensor and problem.

A Plan turns a domain request into the signature's arrays, and the signature's outputs back
into domain outputs. Inputs and outputs the section does not name pass through as on the plain
path. Pure, apart from ``Pipelines.check``, which asks for metadata through a callable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np

from tfgate import dtypes, tensors, translate
from tfgate.dtypes import DType
from tfgate.errors import FailedPrecondition, GatewayError, InvalidArgument
from tfgate.plans import steps as preprocess
from tfgate.plans.config import ModelSection, OutputSection, PipelineConfigError
from tfgate.plans.steps import Array, Kind, Labels, Lookup, Pad, Step, Template, describe
from tfgate.signatures import DEFAULT_SIGNATURE, ModelMetadata, Signature, TensorSpec
from tfgate.v1 import inference_pb2

logger = logging.getLogger(__name__)

_STRING: Final = dtypes.BY_NAME["string"]
_FLOAT32: Final = dtypes.BY_NAME["float32"]
_INT64: Final = dtypes.BY_NAME["int64"]
_FLOAT64: Final = dtypes.BY_NAME["float64"]
# The signature dtypes each kind of pipeline result can feed.
_FEEDS: Final[dict[Kind, tuple[str, ...]]] = {
    "text": ("string",),
    "number": ("int", "float"),
    "int": ("int", "float"),
    "float": ("float",),
}


class BindError(Exception):
    """A section does not fit a model version's signature; the message says where and why."""


def _batched(shape: Template) -> bool:
    return bool(shape) and shape is not None and shape[0] == -1


def _read_text(what: str, tensor: inference_pb2.Tensor) -> Array:
    present = [name for name in tensors.VALUE_LISTS if len(getattr(tensor, name))]
    if len(present) > 1:
        raise InvalidArgument(f"{what}: set exactly one value list, got {', '.join(present)}")
    if present and present[0] not in ("strings", "bytes_values"):
        raise InvalidArgument(f"{what}: expects text (strings), got {present[0]}")
    values: list[str] = list(tensor.strings)
    if tensor.bytes_values:
        try:
            values = [b.decode() for b in tensor.bytes_values]
        except UnicodeDecodeError:
            raise InvalidArgument(f"{what}: a bytes_values item is not UTF-8 text") from None
    if tensor.shape and list(tensor.shape) != [len(values)]:
        raise InvalidArgument(
            f"{what}: expects a 1-D batch of texts; shape {describe(tuple(tensor.shape))} does "
            f"not fit {len(values)} values"
        )
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _read_numbers(what: str, tensor: inference_pb2.Tensor) -> Array:
    return tensors.from_domain(what, tensor, _INT64 if tensor.ints else _FLOAT64, None)


@dataclass(frozen=True, eq=False)
class _Feed:
    """One signature input, and the domain input that feeds it."""

    name: str
    alias: str
    spec: TensorSpec
    steps: tuple[Step, ...] = ()
    source: Kind | None = None  # None: the tensor is cast as on the plain path
    default: Array | None = None

    def from_request(self, tensor: inference_pb2.Tensor) -> Array:
        what = f"input '{self.name}'"
        if self.source is None:
            return tensors.from_domain(what, tensor, self.spec.dtype, self.spec.shape)
        read = _read_text if self.source == "text" else _read_numbers
        return self._finish(preprocess.run(what, self.steps, read(what, tensor)))

    def from_default(self, batch: int) -> Array:
        assert self.default is not None
        value = self.default
        if _batched(self.spec.shape):
            value = np.repeat(value[np.newaxis], batch, axis=0)
        return self._finish(preprocess.run(f"input '{self.name}' (default)", self.steps, value))

    def _finish(self, value: Any) -> Array:
        what = f"input '{self.name}', fed to '{self.alias}'"
        dtype = self.spec.dtype
        if dtype.kind == "string":
            if value.dtype != object:
                raise InvalidArgument(f"{what}: expects text for {dtype.name}")
            array: Array = np.asarray(np.frompyfunc(str.encode, 1, 1)(value), dtype=object)
        elif dtype.kind == "bool":
            if value.dtype != np.bool_:
                raise InvalidArgument(f"{what}: expects bools for {dtype.name}")
            array = value
        else:
            if value.dtype.kind not in "iuf":
                raise InvalidArgument(f"{what}: expects numbers for {dtype.name}")
            array = tensors.cast(what, value, dtype)
        tensors.check_shape(what, array.shape, self.spec.shape)
        return array


@dataclass(frozen=True, eq=False)
class _Emit:
    """One signature output made into one domain output (two, with a labels step)."""

    name: str
    steps: tuple[Step, ...] = ()
    labels: Labels | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) if self.labels is None else (self.name, self.labels.scores_as)

    def emit(
        self, dtype: DType, array: Array, wanted: Collection[str] | None
    ) -> Iterator[tuple[str, DType, Array]]:
        if wanted is not None and not any(n in wanted for n in self.names):
            return
        if not self.steps and self.labels is None:
            yield self.name, dtype, array
            return
        what = f"output '{self.name}'"
        value = tensors.bfloat16_to_float32(array) if dtype.is_bfloat16 else array
        value = cast(Array, preprocess.run(what, self.steps, value))
        if self.labels is None:
            yield self.name, dtypes.BY_NAME[value.dtype.name], value
            return
        step = f"{what}, step {len(self.steps) + 1} 'labels'"
        labels, scores = self.labels.apply(step, value)
        if wanted is None or self.name in wanted:
            yield self.name, _STRING, labels
        if wanted is None or self.labels.scores_as in wanted:
            yield self.labels.scores_as, _FLOAT32, scores


@dataclass(frozen=True)
class Prepared:
    """A domain request made ready for TF Serving, and what turns its answer back."""

    inputs: dict[str, tuple[DType, Array]]  # by signature input
    output_filter: list[str]  # signature outputs
    outputs: translate.Outputs


@dataclass(frozen=True, eq=False)
class Plan:
    """A section bound to one model version's signature."""

    model: str
    version: int
    signature: str
    feeds: Mapping[str, _Feed]  # by domain input
    emits: Mapping[str, tuple[_Emit, ...]]  # by signature output
    sources: Mapping[str, str]  # domain output -> signature output
    view: inference_pb2.Signature  # the domain view for GetModel

    def prepare(self, request: inference_pb2.PredictRequest, max_elements: int) -> Prepared:
        """The signature's arrays for ``request``; InvalidArgument names the input and step."""
        where = translate.signature_place(self.signature, self.model, self.version)
        translate.check_value_count(request, max_elements)
        unknown = sorted(set(request.inputs) - set(self.feeds))
        if unknown:
            raise InvalidArgument(
                f"input '{unknown[0]}': not an input of {where} (inputs: {', '.join(self.feeds)})"
            )
        missing = [
            f"'{name}' ({_show(self.view.inputs[name])})"
            for name, feed in self.feeds.items()
            if name not in request.inputs and feed.default is None
        ]
        if missing:
            raise InvalidArgument(f"inputs: missing {', '.join(missing)}, required by {where}")
        arrays: dict[str, tuple[DType, Array]] = {}
        batch = None
        for name, tensor in request.inputs.items():
            feed = self.feeds[name]
            array = feed.from_request(tensor)
            arrays[feed.alias] = (feed.spec.dtype, array)
            if batch is None and _batched(feed.spec.shape):
                batch = array.shape[0]
        for name, feed in self.feeds.items():
            if name not in request.inputs:
                arrays[feed.alias] = (feed.spec.dtype, feed.from_default(batch or 1))
        size = sum(array.size for _, array in arrays.values())
        if size > max_elements:
            raise InvalidArgument(
                f"inputs: preprocessing makes {size} values in all, more than tfgate's "
                f"max_tensor_elements ({max_elements})"
            )
        wanted = translate.check_output_filter(request.output_filter, self.sources, where)
        chosen = frozenset(wanted) if wanted else None

        def outputs(alias: str, dtype: DType, array: Array) -> Iterator[tuple[str, DType, Array]]:
            for emit in self.emits.get(alias, (_Emit(alias),)):
                yield from emit.emit(dtype, array, chosen)

        backend_filter = list(dict.fromkeys(self.sources[name] for name in wanted))
        return Prepared(arrays, backend_filter, outputs)


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


def _input_shape(where: str, feed: _Feed) -> Template:
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


def _check_feed(where: str, feed: _Feed) -> Template:
    dtype = feed.spec.dtype
    if dtype.kind == "unsupported":
        raise BindError(f"{where}: '{feed.alias}' is {dtype.name}, which tfgate cannot feed")
    shape = feed.spec.shape
    if feed.source is not None:
        kind: Kind = feed.source
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


def _check_ids(where: str, feed: _Feed, dtype: DType) -> None:
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
        raise BindError(
            f"{at}: no signature '{section.signature}' (signatures: "
            f"{', '.join(meta.signatures) or 'none'})"
        )
    view = inference_pb2.Signature(method=signature.method)
    feeds: dict[str, _Feed] = {}
    for s in section.inputs.values():
        where = f"{at} input '{s.name}'"
        spec = signature.inputs.get(s.alias)
        if spec is None:
            raise BindError(
                f"{where}: '{s.alias}' is not an input of signature '{section.signature}' "
                f"(inputs: {', '.join(signature.inputs)})"
            )
        feed = _Feed(s.name, s.alias, spec, s.steps, s.source, s.default)
        shape = _check_feed(where, feed)
        source = {"text": "string", "number": "float64"}.get(s.source or "", spec.dtype.name)
        view.inputs[s.name].CopyFrom(_spec(source, shape, s.alias, s.steps, s.default is not None))
        feeds[s.name] = feed
    fed = {s.alias for s in section.inputs.values()}
    for alias, spec in signature.inputs.items():
        if alias in fed:
            continue
        if alias in feeds:
            raise BindError(
                f"{at} input '{alias}': signature '{section.signature}' has an input of that "
                "name too, which no section feeds; name the domain input otherwise"
            )
        feeds[alias] = _Feed(alias, alias, spec)
        view.inputs[alias].CopyFrom(_spec(spec.dtype.name, spec.shape, alias))

    emits: dict[str, list[_Emit]] = {}
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
        emits.setdefault(o.alias, []).append(_Emit(o.name, o.steps, o.labels))
    used = {o.alias for o in section.outputs.values()}
    for alias, spec in signature.outputs.items():
        if alias in used:
            continue
        if alias in sources:
            raise BindError(
                f"{at} output '{alias}': signature '{section.signature}' has an output of that "
                "name too, which no section uses; name the domain output otherwise"
            )
        emits[alias] = [_Emit(alias)]
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
    )


class Pipelines:
    """The configured sections, and their plan for each model version (or why there is none)."""

    def __init__(self, sections: Mapping[str, ModelSection] | None = None) -> None:
        self._sections = dict(sections or {})
        # A version's signatures never change (see tfgate.catalog), nor then its plan.
        self._plans: dict[tuple[str, int], Plan | str] = {}

    def _bound(self, section: ModelSection, meta: ModelMetadata, log: bool = True) -> Plan | str:
        key = (meta.model, meta.version)
        found = self._plans.get(key)
        if found is None:
            try:
                found = bind(section, meta)
            except BindError as exc:
                found = str(exc)
                if log:  # at start-up the problem stops tfgate, with this message
                    logger.error("%s; its requests are refused", found)
            self._plans[key] = found
        return found

    def plan(self, meta: ModelMetadata, signature: str) -> Plan | None:
        """The plan for a request to ``signature`` of ``meta``; None for the plain path."""
        section = self._sections.get(meta.model)
        if section is None or (signature or DEFAULT_SIGNATURE) != section.signature:
            return None
        found = self._bound(section, meta)
        if isinstance(found, str):
            raise FailedPrecondition(found)
        return found

    def describe(self, meta: ModelMetadata, model: inference_pb2.Model) -> None:
        """Adds the domain view of ``meta``'s configured signature to ``model``, if it binds."""
        section = self._sections.get(meta.model)
        if section is not None:
            found = self._bound(section, meta)
            if isinstance(found, Plan):
                model.domain_signatures[found.signature].CopyFrom(found.view)

    async def check(self, metadata: Callable[[str], Awaitable[ModelMetadata]]) -> None:
        """Binds every section to its model's current version; PipelineConfigError if any fails.

        A model whose metadata cannot be read now (TF Serving down, the model not loaded yet)
        is left to its first request.
        """
        problems: list[str] = []
        for model, section in self._sections.items():
            try:
                meta = await metadata(model)
            except GatewayError as exc:
                logger.warning(
                    "model %s: its [models.%s] section is checked on first use; TF Serving "
                    "did not describe it now: %s",
                    model,
                    model,
                    exc.message,
                )
                continue
            found = self._bound(section, meta, log=False)
            if isinstance(found, str):
                problems.append(found)
        if problems:
            raise PipelineConfigError("\n".join(problems))
