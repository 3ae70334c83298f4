"""Traces (tfgate.tracing) in-process: the span tree of a retried call, the context TF Serving
receives on each front, the trace id in the access log, callers' bad context, tracing off."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import Running
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call
from tfgate.app import Gateway
from tfgate.calls import Call, Record
from tfgate.config import Config, ConfigError, RetryPolicy
from tfgate.logs import JsonFormatter
from tfgate.tracing import MAX_MEMBERS, Tracing, parent_of
from tfgate.v1 import inference_pb2, inference_pb2_grpc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE}-{SPAN}-01"
V1_BODY = b'{"inputs": {"x": {"floats": [1, 2]}}}'


def _predict() -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(
        model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0, 2.0])}
    )


Start = Callable[..., Awaitable[tuple[Running, InMemorySpanExporter]]]


@pytest_asyncio.fixture
async def traced() -> AsyncIterator[Start]:
    """Starts tfgate (gRPC and HTTP) whose spans go to an in-memory exporter."""
    started: list[Running] = []

    async def start(backend: str, **settings: Any) -> tuple[Running, InMemorySpanExporter]:
        config = Config(
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            backend=backend,
            health_interval=0.2,
            retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.02),
            **settings,
        )
        exporter = InMemorySpanExporter()
        gateway = Gateway(config, tracing=Tracing(config, exporter))
        port = await gateway.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        running = Running(gateway, channel, inference_pb2_grpc.InferenceServiceStub(channel))
        started.append(running)
        return running, exporter

    yield start
    for running in started:
        await running.channel.close()
        await running.gateway.stop(grace=0)


def _hex(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


@pytest.mark.asyncio
async def test_a_retried_call_has_a_span_per_attempt_under_the_callers_span(
    backend: FakeTFServing, traced: Start
) -> None:
    gw, exporter = await traced(backend.target)
    await gw.stub.Predict(_predict())  # the signatures cached: one Predict to trace below
    exporter.clear()
    backend.trace_headers.clear()
    backend.fail_next(grpc.StatusCode.UNAVAILABLE)
    await gw.stub.Predict(_predict(), metadata=(("traceparent", CALLER),))

    spans = exporter.get_finished_spans()
    (root,) = _by_name(spans, "Predict")
    (prep,) = _by_name(spans, "preprocess")
    first, second = sorted(_by_name(spans, "attempt"), key=lambda s: s.start_time or 0)
    assert {_hex(s.context.trace_id, 32) for s in spans} == {TRACE}
    assert root.parent is not None and _hex(root.parent.span_id, 16) == SPAN
    assert root.parent.is_remote and root.kind is SpanKind.SERVER
    for child in (prep, first, second):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["tfgate.attempt"] == 1 and second.attributes["tfgate.attempt"] == 2
    assert first.attributes["tfgate.code"] == "UNAVAILABLE"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["tfgate.code"] == "OK"
    assert first.attributes["tfgate.replica"] == backend.target
    assert first.kind is SpanKind.CLIENT
    assert root.attributes is not None and root.attributes["tfgate.attempts"] == 2

    # Each attempt told TF Serving its own span as the parent, in the caller's trace.
    sent = [tp for tp, _ in backend.trace_headers]
    assert sent == [f"00-{TRACE}-{_hex(a.context.span_id, 16)}-01" for a in (first, second)]


@pytest.mark.asyncio
async def test_the_http_fronts_take_and_pass_on_the_context(
    backend: FakeTFServing, traced: Start
) -> None:
    gw, exporter = await traced(backend.target)
    paths = {
        "/tfgate/v1/models/half_plus_two:predict": V1_BODY,
        "/v1/models/half_plus_two:predict": b'{"instances": [1, 2]}',
    }
    for path, body in paths.items():
        await call(gw, "POST", path, body)  # warm
        exporter.clear()
        backend.trace_headers.clear()
        answer = await call(
            gw, "POST", path, body, {"traceparent": CALLER, "tracestate": "vendor=abc,b=1"}
        )
        assert answer.status == 200, answer.body
        (attempt,) = _by_name(exporter.get_finished_spans(), "attempt")
        (root,) = [s for s in exporter.get_finished_spans() if s.parent and s.parent.is_remote]
        assert root.attributes is not None and root.attributes["http.response.status_code"] == 200
        assert backend.trace_headers[-1] == (
            f"00-{TRACE}-{_hex(attempt.context.span_id, 16)}-01",
            "vendor=abc,b=1",
        )


@pytest.mark.asyncio
async def test_tf_servings_grpc_api_forwarded_is_traced(
    backend: FakeTFServing, traced: Start
) -> None:
    from tfgate.tfs.tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    gw, exporter = await traced(backend.target)
    stub = model_service_pb2_grpc.ModelServiceStub(gw.channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    await stub.GetModelStatus(request, metadata=(("traceparent", CALLER),))
    (root,) = _by_name(
        exporter.get_finished_spans(), "/tensorflow.serving.ModelService/GetModelStatus"
    )
    assert _hex(root.context.trace_id, 32) == TRACE
    assert backend.trace_headers[-1][0] not in (None, CALLER)


@pytest.mark.asyncio
async def test_the_trace_id_is_in_the_access_log(
    backend: FakeTFServing, traced: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.access")
    gw, _ = await traced(backend.target)
    await gw.stub.Predict(_predict(), metadata=(("traceparent", CALLER),))
    await gw.stub.Predict(_predict())  # a new root trace, with an id of its own
    one, two = [r for r in caplog.records if r.name == "tfgate.access"]
    fields = [JsonFormatter().format(r) for r in (one, two)]
    assert f'"trace_id":"{TRACE}"' in fields[0]
    assert '"trace_id":"' in fields[1] and TRACE not in fields[1]
    assert one.getMessage().endswith(f" trace={TRACE}")


@pytest.mark.asyncio
async def test_a_bad_context_is_ignored_and_the_call_succeeds(
    backend: FakeTFServing, traced: Start
) -> None:
    gw, exporter = await traced(backend.target)
    huge = ",".join(f"k{i}=v" for i in range(MAX_MEMBERS + 1))
    for given in (
        (("traceparent", "00-xyz"),),
        (("traceparent", f"ff-{TRACE}-{SPAN}-01"),),
        (("traceparent", f"00-{'0' * 32}-{SPAN}-01"),),
        (("traceparent", CALLER), ("tracestate", huge)),
        (("traceparent", CALLER), ("tracestate", "x=" + "y" * 2000)),
        (("traceparent", CALLER + "0" * 600),),
    ):
        exporter.clear()
        backend.trace_headers.clear()
        answer = await gw.stub.Predict(_predict(), metadata=given)
        assert answer.model == "half_plus_two"
        (root,) = _by_name(exporter.get_finished_spans(), "Predict")
        if given[0][1] == CALLER:  # the context is kept, its tracestate dropped
            assert _hex(root.context.trace_id, 32) == TRACE
        else:  # a new root
            assert root.parent is None and _hex(root.context.trace_id, 32) != TRACE
        assert backend.trace_headers[-1][1] is None
    http = await call(
        gw, "POST", "/tfgate/v1/models/half_plus_two:predict", V1_BODY, {"traceparent": "nonsense"}
    )
    assert http.status == 200


def test_parent_of_reads_w3c_trace_context() -> None:
    parent = parent_of(f" {CALLER} ", "a=1 , ,b@t=2")
    assert parent is not None
    assert (parent.traceparent, parent.tracestate) == (CALLER, "a=1,b@t=2")
    assert parent.trace_id == int(TRACE, 16) and parent.flags == 1
    assert parent_of(CALLER + "-extra") is None  # version 00 has four fields
    future = parent_of(f"01-{TRACE}-{SPAN}-00-more")
    assert future is not None and future.traceparent.endswith("-more")
    assert parent_of(CALLER.upper()) is None
    assert parent_of(CALLER, "Bad Key=1").tracestate == ""  # type: ignore[union-attr]
    assert parent_of(CALLER, "a=" + "v" * 600).tracestate == ""  # type: ignore[union-attr]


def test_the_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        Config(otlp_endpoint="collector:4317")
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        Config(otlp_endpoint="http://collector")
    with pytest.raises(ConfigError, match="trace_sample_ratio"):
        Config(trace_sample_ratio=1.5)
    with pytest.raises(ConfigError, match="service_name"):
        Config(service_name=" ")
    assert Config(otlp_endpoint="https://collector:4317").otlp_endpoint


def test_a_ratio_of_zero_records_new_traces_not_but_follows_a_sampled_caller() -> None:
    config = Config(trace_sample_ratio=0.0)
    exporter = InMemorySpanExporter()
    tracing = Tracing(config, exporter)
    for parent in (None, parent_of(CALLER)):
        call_ = Call("grpc", "Predict", 0.0)
        call_.trace = tracing.trace(parent, "grpc", "Predict")
        Record(call_).done()
    (kept,) = exporter.get_finished_spans()
    assert _hex(kept.context.trace_id, 32) == TRACE


_OFF = """
import asyncio, sys
import grpc
from tests.fake_tfserving import FakeTFServing
from tfgate.app import Gateway
from tfgate.config import Config
from tfgate.v1 import inference_pb2, inference_pb2_grpc

async def main():
    fake = FakeTFServing()
    await fake.start()
    gateway = Gateway(Config(listen="127.0.0.1:0", http_listen="127.0.0.1:0", backend=fake.target))
    port = await gateway.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = inference_pb2.PredictRequest(
            model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0])}
        )
        await stub.Predict(request, metadata=(("traceparent", sys.argv[1]), ("tracestate", "a=1")))
        await stub.Predict(request)
    await gateway.stop(grace=0)
    await fake.stop()
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(repr((loaded, list(fake.trace_headers))))

asyncio.run(main())
"""


def test_off_no_opentelemetry_is_imported_and_the_context_goes_on_unchanged() -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _OFF, CALLER],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    loaded, headers = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert loaded == []
    # The metadata probe first (GetModelMetadata) carries it too; the second Predict nothing.
    assert headers[-1] == (None, None)
    assert (CALLER, "a=1") in headers
