"""Traces: W3C trace context from callers, spans of each call, exported over OTLP.

Every front reads the caller's ``traceparent`` / ``tracestate`` (HTTP headers or gRPC metadata)
with ``parent_of``, and gives the call its ``Trace`` with ``trace_of``:

- tracing on (``otlp_endpoint`` set: one ``Tracing`` per gateway, from ``tracing_for``): a span
  for the call, child of the caller's span when it sent a valid ``traceparent`` (else a new root),
  with a span for the preprocessing of a Predict and one per attempt sent to TF Serving; each
  attempt carries ``traceparent`` (the attempt's span as parent) and the caller's ``tracestate``;
- tracing off: a caller's valid context goes on to TF Serving unchanged, as W3C asks of a proxy
  that does not trace, and nothing else happens (OpenTelemetry is not even imported); a call
  without one has no trace, and costs one ``is None`` test at each step.

What a caller sends is checked before anything trusts it: a ``traceparent`` that is not W3C's
format is ignored, and a ``tracestate`` over 512 characters or 32 members, or with a member that
is not ``key=value``, is dropped whole. Neither is ever an error, nor logged (a caller could fill
the log).

Spans are batched (a bounded queue that drops spans when it is full, exported by a thread of
its own, never by the event loop) and flushed, within a bound, when the gateway stops.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from tfgate.errors import Code

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, StatusCode, Tracer

    from tfgate.calls import Record
    from tfgate.config import Config

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
# W3C Trace Context's bounds on tracestate: what a caller sends beyond them is dropped.
MAX_TRACESTATE: Final = 512
MAX_MEMBERS: Final = 32
# version-traceid-parentid-flags; a version after 00 may append fields, ff is invalid.
_PARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[!-~]*)?")
_MAX_PARENT: Final = 512
_MEMBER: Final = re.compile(
    r"(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[ -+\--<>-~]{0,255}[!-+\--<>-~]"
)
# Spans waiting for export at most (more are dropped), and how long the gateway's stop waits
# for them to go out.
_QUEUE: Final = 4096
_FLUSH_SECONDS: Final = 5.0

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Parent:
    """A caller's trace context, checked: its ``traceparent``, and its ``tracestate`` ("" for
    none)."""

    traceparent: str
    tracestate: str
    trace_id: int
    span_id: int
    flags: int

    def metadata(self) -> Metadata:
        if self.tracestate:
            return ((TRACEPARENT, self.traceparent), (TRACESTATE, self.tracestate))
        return ((TRACEPARENT, self.traceparent),)


def parent_of(traceparent: str | None, tracestate: str | None = None) -> Parent | None:
    """The caller's context when its ``traceparent`` is valid (None otherwise), with its
    ``tracestate`` when that is valid and within W3C's bounds (else "")."""
    if not traceparent or len(traceparent) > _MAX_PARENT:
        return None
    text = traceparent.strip(" \t")
    match = _PARENT.fullmatch(text)
    if match is None:
        return None
    version, trace, span, flags, more = match.groups()
    if version == "ff" or (version == "00" and more) or trace == "0" * 32 or span == "0" * 16:
        return None
    return Parent(text, _tracestate(tracestate), int(trace, 16), int(span, 16), int(flags, 16))


def _tracestate(value: str | None) -> str:
    if not value or len(value) > MAX_TRACESTATE:
        return ""
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    if len(members) > MAX_MEMBERS or not all(_MEMBER.fullmatch(m) for m in members):
        return ""
    return ",".join(members)


class Attempt(Protocol):
    """One call sent to TF Serving: the metadata it carries, and its end."""

    metadata: Metadata

    def done(self, code: Code, sent: bool = True) -> None: ...


class Step(Protocol):
    """A part of a call's own work (its preprocessing)."""

    def done(self, failed: BaseException | None = None) -> None: ...


class Trace(Protocol):
    """What a call's trace does at each step; ``trace_id`` (32 hex digits) when tfgate traces
    it, for the access log."""

    @property
    def trace_id(self) -> str | None: ...

    def step(self, name: str) -> Step: ...

    def attempt(self, number: int, replica: str, metadata: Metadata | None) -> Attempt: ...

    def end(self, record: Record) -> None: ...


class _Passed:
    __slots__ = ("metadata",)

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata

    def done(self, code: Code | BaseException | None = None, sent: bool = True) -> None:
        pass


_NOTHING: Final = _Passed(())


class Forwarded:
    """Tracing off: the caller's context goes on to TF Serving as it came, and nothing else."""

    __slots__ = ("_metadata",)
    trace_id = None

    def __init__(self, parent: Parent) -> None:
        self._metadata = parent.metadata()

    def step(self, name: str) -> Step:
        return _NOTHING

    def attempt(self, number: int, replica: str, metadata: Metadata | None) -> Attempt:
        return _Passed((*metadata, *self._metadata) if metadata else self._metadata)

    def end(self, record: Record) -> None:
        pass


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


class _AttemptSpan:
    __slots__ = ("error", "metadata", "span")

    def __init__(self, span: Span, metadata: Metadata, error: StatusCode) -> None:
        self.span = span
        self.metadata = metadata
        self.error = error

    def done(self, code: Code, sent: bool = True) -> None:
        span = self.span
        span.set_attribute("rpc.grpc.status_code", code.value)
        span.set_attribute("tfgate.code", code.name)
        if not sent:  # grpc found no connection: TF Serving never saw it (not an attempt)
            span.set_attribute("tfgate.sent", False)
        if code is not Code.OK:
            span.set_status(self.error, code.name)
        span.end()


class _StepSpan:
    __slots__ = ("error", "span")

    def __init__(self, span: Span, error: StatusCode) -> None:
        self.span = span
        self.error = error

    def done(self, failed: BaseException | None = None) -> None:
        if failed is not None:
            self.span.set_status(self.error, type(failed).__name__)
        self.span.end()


class Traced:
    """A call tfgate traces: its span, the parent of its steps' and attempts' spans."""

    __slots__ = ("_context", "_otel", "_tracestate", "span")

    def __init__(self, otel: _Otel, parent: Parent | None, front: str, method: str) -> None:
        self._otel = otel
        caller = None if parent is None else otel.context_of(parent)
        self.span = otel.tracer.start_span(method, caller, otel.server, {"tfgate.front": front})
        self._context = otel.set_span(self.span)
        self._tracestate = "" if parent is None else parent.tracestate

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"

    def step(self, name: str) -> Step:
        return _StepSpan(self._otel.tracer.start_span(name, self._context), self._otel.error)

    def attempt(self, number: int, replica: str, metadata: Metadata | None) -> Attempt:
        otel = self._otel
        span = otel.tracer.start_span(
            "attempt",
            self._context,
            otel.client,
            {"tfgate.attempt": number, "tfgate.replica": replica},
        )
        sent: Metadata = ((TRACEPARENT, _traceparent(span.get_span_context())),)
        if self._tracestate:
            sent += ((TRACESTATE, self._tracestate),)
        return _AttemptSpan(span, (*metadata, *sent) if metadata else sent, otel.error)

    def end(self, record: Record) -> None:
        span = self.span
        span.update_name(record.method)
        call = record.call
        span.set_attributes(
            {
                "tfgate.request_id": call.request_id,
                "tfgate.model": record.model,
                "tfgate.code": record.code.name,
                "tfgate.attempts": call.attempts,
            }
        )
        if record.http_status is not None:
            span.set_attribute("http.response.status_code", record.http_status)
        if record.code is not Code.OK:
            span.set_status(self._otel.error, record.error or record.code.name)
        span.end()


class _Otel:
    """OpenTelemetry's names, imported when the first Tracing is built, never before."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import trace

        self.tracer = tracer
        self.server, self.client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self.error = trace.StatusCode.ERROR
        self.set_span = trace.set_span_in_context
        self._span_context, self._remote = trace.SpanContext, trace.NonRecordingSpan
        self._state, self._flags = trace.TraceState, trace.TraceFlags

    def context_of(self, parent: Parent) -> Context:
        """The caller's span, as the parent of the call's."""
        state = None
        if parent.tracestate:
            pairs = [m.split("=", 1) for m in parent.tracestate.split(",")]
            state = self._state([(k, v) for k, v in pairs])
        flags = self._flags(parent.flags & 1)  # only "sampled" is defined
        caller = self._span_context(parent.trace_id, parent.span_id, True, flags, state)
        return self.set_span(self._remote(caller))


class Tracing:
    """One gateway's tracer: its spans go to ``exporter`` one by one (tests), else in batches
    to ``config.otlp_endpoint`` over OTLP/gRPC."""

    def __init__(self, config: Config, exporter: SpanExporter | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.trace_sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            endpoint = config.otlp_endpoint
            exporter = OTLPSpanExporter(
                endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=5
            )
            self.provider.add_span_processor(
                BatchSpanProcessor(exporter, max_queue_size=_QUEUE, schedule_delay_millis=1000)
            )
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._otel = _Otel(self.provider.get_tracer("tfgate"))

    def trace(self, parent: Parent | None, front: str, method: str) -> Traced:
        return Traced(self._otel, parent, front, method)

    async def close(self, within: float = _FLUSH_SECONDS) -> None:
        """Exports the spans still queued, waiting at most ``within`` seconds, and stops."""
        try:
            async with asyncio.timeout(within):
                await asyncio.to_thread(self.provider.force_flush, int(within * 1000))
                await asyncio.to_thread(self.provider.shutdown)
        except TimeoutError:
            pass  # the exporter's thread is a daemon: the spans it still holds are lost


def tracing_for(config: Config) -> Tracing | None:
    """The gateway's Tracing when ``otlp_endpoint`` is set, else None (and no OpenTelemetry)."""
    return Tracing(config) if config.otlp_endpoint else None


def trace_of(
    tracing: Tracing | None, parent: Parent | None, front: str, method: str
) -> Trace | None:
    """The trace of a new call: traced when tracing is on; else the caller's context forwarded,
    if it sent one; else None."""
    if tracing is not None:
        return tracing.trace(parent, front, method)
    return None if parent is None else Forwarded(parent)


def joined(values: Sequence[str]) -> str | None:
    """Several ``tracestate`` headers as the one list they stand for (W3C)."""
    return ",".join(values) if values else None
