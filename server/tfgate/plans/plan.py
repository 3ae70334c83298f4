"""One Predict path: every (model version, signature) a request names runs through a Plan.

A Plan turns a domain request (tfgate.domain.Predict) into TF Serving's PredictRequest bytes,
and TF Serving's answer back into domain outputs. A signature without a ``[models.NAME]``
section gets the identity plan: each signature input is fed by the domain input of its name,
cast to its dtype (float inputs in their own type go through as bytes, read in place), and each
output is passed on as TF Serving sent it. A configured section binds to a plan whose feeds run
preprocessing steps (tfgate.plans.bind builds those); inputs and outputs it does not name are
fed and passed on exactly as by the identity plan.

Pure: no I/O. This module imports nothing of the preprocessing steps, so a start without model
sections does not load them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from tfgate import dtypes, tensors, translate, wire
from tfgate.domain import UNNAMED, Predict
from tfgate.errors import FailedPrecondition, GatewayError, InvalidArgument, counted
from tfgate.signatures import DEFAULT_SIGNATURE, ModelMetadata, Signature, TensorSpec
from tfgate.tensors import Array, FromBackend, Given, Made, Output
from tfgate.tfs.tensorflow_serving.apis import predict_pb2
from tfgate.v1 import inference_pb2

logger = logging.getLogger(__name__)

_STRING: Final = dtypes.BY_NAME["string"]
_FLOAT32: Final = dtypes.BY_NAME["float32"]
_INT64: Final = dtypes.BY_NAME["int64"]
_FLOAT64: Final = dtypes.BY_NAME["float64"]


def _batched(shape: tuple[int, ...] | None) -> bool:
    return bool(shape) and shape is not None and shape[0] == -1


def _run(what: str, steps: tuple[Any, ...], value: Any) -> Any:
    """``value`` through ``steps``: only plans bound from a section have any, and then the
    steps' modules are loaded."""
    from tfgate.plans.steps import run

    return run(what, steps, value)


def _text_of(what: str, given: Given) -> Array:
    """A 1-D batch of texts (str objects) from a domain input."""
    if isinstance(given, np.ndarray):
        if given.dtype != object:
            raise InvalidArgument(f"{what}: expects text (strings), got numbers")
        items: list[Any] = given.reshape(-1).tolist()
        shape = given.shape
    else:
        chosen, listed = tensors.chosen_list(what, given)
        if chosen not in (None, "strings", "bytes_values"):
            raise InvalidArgument(f"{what}: expects text (strings), got {chosen}")
        items = list(listed)
        shape = tuple(given.shape) or (len(items),)
    values: list[str] = []
    try:
        values = [i if isinstance(i, str) else i.decode() for i in items]
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what}: a bytes_values item is not UTF-8 text") from None
    if list(shape) != [len(values)]:
        raise InvalidArgument(
            f"{what}: expects a 1-D batch of texts; shape "
            f"{tensors.describe_shape(tuple(shape))} does not fit {counted(len(values), 'value')}"
        )
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _numbers_of(what: str, given: Given) -> Array:
    """Numbers from a domain input: int64 if given as whole numbers, else float64."""
    if isinstance(given, np.ndarray):
        if given.dtype.kind not in "iuf":
            got = "bools" if given.dtype.kind == "b" else "strings"
            raise InvalidArgument(f"{what}: expects numbers, got {got}")
        return given
    return tensors.from_domain(what, given, _INT64 if given.ints else _FLOAT64, None, flat=True)


@dataclass(frozen=True, eq=False)
class Feed:
    """One signature input (``alias``), and the domain input (``name``) that feeds it."""

    name: str
    alias: str
    spec: TensorSpec
    steps: tuple[Any, ...] = ()
    source: str | None = None  # "text" or "number": read so, then run through steps
    default: Array | None = None
    shown: str = ""  # how error messages describe what the caller sends

    def encode(
        self, given: Given, packed: tuple[int, memoryview] | None
    ) -> tuple[tensors.Shape, list[wire.Chunk]]:
        """The TensorProto for ``given``, and its shape."""
        what = f"input '{self.name}'"
        if self.source is None:
            return tensors.encode_input(what, given, self.spec.dtype, self.spec.shape, packed)
        read = _text_of if self.source == "text" else _numbers_of
        array = self._finish(_run(what, self.steps, read(what, given)))
        return array.shape, tensors.to_proto_chunks(array, self.spec.dtype)

    def from_default(self, batch: int) -> Array:
        assert self.default is not None
        value = self.default
        if _batched(self.spec.shape):
            value = np.repeat(value[np.newaxis], batch, axis=0)
        return self._finish(_run(f"input '{self.name}' (default)", self.steps, value))

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
class Emit:
    """One signature output made into one domain output (two, with a labels step)."""

    name: str
    steps: tuple[Any, ...] = ()
    labels: Any = None  # tfgate.plans.steps.Labels

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) if self.labels is None else (self.name, self.labels.scores_as)

    def emit(self, proto: Any, wanted: Collection[str] | None) -> Iterator[tuple[str, Output]]:
        if wanted is not None and not any(n in wanted for n in self.names):
            return
        if not self.steps and self.labels is None:
            yield self.name, FromBackend(proto)
            return
        what = f"output '{self.name}'"
        dtype, array = tensors.from_proto(what, proto)
        value = tensors.bfloat16_to_float32(array) if dtype.is_bfloat16 else array
        value = _run(what, self.steps, value)
        if self.labels is None:
            yield self.name, Made(dtypes.BY_NAME[value.dtype.name], value)
            return
        step = f"{what}, step {len(self.steps) + 1} 'labels'"
        labels, scores = self.labels.apply(step, value)
        if wanted is None or self.name in wanted:
            yield self.name, Made(_STRING, labels)
        if wanted is None or self.labels.scores_as in wanted:
            yield self.labels.scores_as, Made(_FLOAT32, scores)


@dataclass(frozen=True)
class Prepared:
    """A request made ready for TF Serving, and what turns its answer back."""

    request: translate.BackendRequest
    wanted: frozenset[str] | None  # domain outputs asked for; None: all


@dataclass(frozen=True, eq=False)
class Plan:
    """How requests to one signature of one model version are fed and answered."""

    model: str
    version: int
    signature: str
    feeds: Mapping[str, Feed]  # by domain input
    emits: Mapping[str, tuple[Emit, ...]]  # by signature output; absent: passed on as it is
    sources: Mapping[str, str]  # domain output -> signature output
    view: inference_pb2.Signature | None = None  # the domain view for GetModel; None: identity
    # Whether any feed makes values of its own (steps, defaults): their count is checked again.
    makes_values: bool = False
    # Whether the signature is batched (tfgate.signatures.Signature.batched): calls to it may
    # be joined into one (tfgate.batcher).
    batched: bool = False

    @property
    def where(self) -> str:
        return translate.signature_place(self.signature, self.model, self.version)

    def prepare(self, sel: translate.Selector, request: Predict, max_elements: int) -> Prepared:
        """TF Serving's PredictRequest for ``request``, whose value count the caller has checked
        (``check_value_count``); InvalidArgument names the input (and the step, if preprocessing
        refused it)."""
        inputs = self._named(request.inputs) if request.unnamed else request.inputs
        if len(inputs) != len(self.feeds) or not all(k in inputs for k in self.feeds):
            self._refuse_inputs(inputs)
        wanted = self._wanted(request) if not self.makes_values else []
        packed = request.packed
        written: list[tuple[str, list[wire.Chunk]]] = []
        batch = None
        size = 0
        for name in inputs:
            feed = self.feeds[name]
            shape, chunks = feed.encode(inputs[name], packed.get(name) if packed else None)
            written.append((feed.alias, chunks))
            if self.makes_values:
                size += int(np.prod(shape))
                if batch is None and _batched(feed.spec.shape):
                    batch = shape[0]
        if self.makes_values:
            for name, feed in self.feeds.items():
                if name not in inputs:
                    array = feed.from_default(batch or 1)
                    size += array.size
                    written.append((feed.alias, tensors.to_proto_chunks(array, feed.spec.dtype)))
            if size > max_elements:
                raise InvalidArgument(
                    f"inputs: preprocessing makes {size} values in all, more than tfgate's "
                    f"max_tensor_elements ({max_elements})"
                )
            wanted = self._wanted(request)  # checked after preprocessing, as its errors come first
        if not wanted:
            return Prepared(translate.backend_request(sel, self.signature, written, ()), None)
        backend_filter = list(dict.fromkeys(self.sources[name] for name in wanted))
        backend = translate.backend_request(sel, self.signature, written, backend_filter)
        return Prepared(backend, frozenset(wanted))

    def _wanted(self, request: Predict) -> list[str]:
        """The domain outputs the request's output_filter names, checked; [] for all."""
        if not request.output_filter:
            return []
        return translate.check_output_filter(request.output_filter, self.sources, self.where)

    def _named(self, inputs: Mapping[str, Given]) -> Mapping[str, Given]:
        """``inputs``, the unnamed one given the name of the signature's only input."""
        assert list(inputs) == [UNNAMED]
        required = [name for name, feed in self.feeds.items() if feed.default is None]
        if len(required) != 1:
            raise InvalidArgument(
                f"inputs: values without an input name need a signature with one input; "
                f"{self.where} has {', '.join(self.feeds) or 'none'}: name each input"
            )
        return {required[0]: inputs[UNNAMED]}

    def _refuse_inputs(self, given: Collection[str]) -> None:
        unknown = sorted(set(given) - set(self.feeds))
        if unknown:
            raise InvalidArgument(
                f"input '{unknown[0]}': not an input of {self.where} (inputs: "
                f"{', '.join(self.feeds)})"
            )
        missing = [
            f"'{name}' ({feed.shown})"
            for name, feed in self.feeds.items()
            if name not in given and feed.default is None
        ]
        if missing:
            raise InvalidArgument(f"inputs: missing {', '.join(missing)}, required by {self.where}")

    def expected(self, wanted: frozenset[str] | None, version: int) -> Collection[str]:
        """The signature outputs TF Serving's answer from ``version`` must hold: those the
        request's filter asked for, or without one all the signature's, when ``version`` is the
        one this plan was made for (another version may have other outputs)."""
        if wanted is not None:
            return {self.sources[name] for name in wanted}
        return set(self.sources.values()) if version == self.version else ()

    def outputs(
        self, answer: predict_pb2.PredictResponse, wanted: frozenset[str] | None
    ) -> list[tuple[str, Output]]:
        """TF Serving's outputs as domain outputs, in the order TF Serving answered them."""
        answered = answer.outputs
        out: list[tuple[str, Output]] = []
        emits = self.emits
        for key in answered:  # a protobuf map's items() is iterated in Python, its keys in C
            found = emits.get(key)
            if found is None:
                out.append((key, FromBackend(answered[key])))
                continue
            for emit in found:
                out += emit.emit(answered[key], wanted)
        return out


def check_value_count(request: Predict, max_elements: int) -> None:
    """INVALID_ARGUMENT when the request's inputs carry more than ``max_elements`` values."""
    # Every value takes at least a byte as it arrives: a request of at most that many bytes
    # needs no count.
    if request.size <= max_elements:
        return
    total = sum(_count(given) for given in request.inputs.values())
    if total > max_elements:
        raise InvalidArgument(
            f"inputs: {total} values in all, more than tfgate's max_tensor_elements "
            f"({max_elements})"
        )


def _count(given: Given) -> int:
    if isinstance(given, np.ndarray):
        return int(given.size)
    return sum(len(getattr(given, name)) for name in tensors.VALUE_LISTS)


def identity(meta: ModelMetadata, name: str, signature: Signature) -> Plan:
    """The plan of a signature without a section: inputs fed by name, outputs passed on."""
    feeds = {
        key: Feed(key, key, spec, shown=spec.describe()) for key, spec in signature.inputs.items()
    }
    outputs = {k: k for k in signature.outputs}
    return Plan(meta.model, meta.version, name, feeds, {}, outputs, batched=signature.batched)


class Plans:
    """The plan of every (model version, signature) requests name, made once and kept: a
    version's signatures never change (see tfgate.catalog), nor then its plan.

    ``sections``: the config file's [models.NAME] sections (tfgate.plans.config), bound by
    tfgate.plans.bind, which is imported only when there are sections.
    """

    def __init__(self, sections: Mapping[str, Any] | None = None) -> None:
        self._sections = dict(sections or {})
        # A section that does not fit a version keeps the reason, which its requests get.
        self._plans: dict[tuple[str, int, str], Plan | str] = {}

    @property
    def configured(self) -> tuple[str, ...]:
        """The models with a [models.NAME] section."""
        return tuple(self._sections)

    def plan(self, meta: ModelMetadata, signature: str) -> Plan:
        """The plan for a request to ``signature`` ("" for the default) of ``meta``."""
        found = self._lookup(meta, signature or DEFAULT_SIGNATURE)
        if isinstance(found, str):
            raise FailedPrecondition(found)
        return found

    def _lookup(self, meta: ModelMetadata, name: str) -> Plan | str:
        """The kept plan (or binding problem) for signature ``name`` of ``meta``, made if new."""
        found = self._plans.get((meta.model, meta.version, name))
        return self._make(meta, name) if found is None else found

    def _make(self, meta: ModelMetadata, name: str, log: bool = True) -> Plan | str:
        section = self._sections.get(meta.model)
        found: Plan | str
        if section is not None and section.signature == name:
            from tfgate.plans import bind

            try:
                found = bind.bind(section, meta)
            except bind.BindError as exc:
                found = str(exc)
                if log:  # at start-up the problem stops tfgate, with this message
                    logger.error("%s; its requests are refused", found)
        else:
            key, signature = translate.signature_of(meta, name)
            found = identity(meta, key, signature)
        self._plans[(meta.model, meta.version, name)] = found
        return found

    def forget(self, model: str) -> None:
        """TF Serving no longer knows something of ``model``: its plans go with its signatures."""
        for key in [k for k in self._plans if k[0] == model]:
            del self._plans[key]

    def describe(self, meta: ModelMetadata, model: inference_pb2.Model) -> None:
        """Adds the domain view of ``meta``'s configured signature to ``model``, if it binds."""
        section = self._sections.get(meta.model)
        if section is None:
            return
        found = self._lookup(meta, section.signature)
        if isinstance(found, Plan) and found.view is not None:
            model.domain_signatures[found.signature].CopyFrom(found.view)

    async def check(self, metadata: Callable[[str], Awaitable[ModelMetadata]]) -> None:
        """Binds every section to its model's current version; PipelineConfigError if any fails.

        A model whose metadata cannot be read now (TF Serving down, the model not loaded yet)
        is left to its first request.
        """
        if not self._sections:
            return
        from tfgate.plans.config import PipelineConfigError

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
            found = self._make(meta, section.signature, log=False)
            if isinstance(found, str):
                problems.append(found)
        if problems:
            raise PipelineConfigError("\n".join(problems))
