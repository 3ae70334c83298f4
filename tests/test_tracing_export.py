"""A real OTLP export: ``tfgate serve`` as a process, with TFGATE_OTLP_ENDPOINT at a receiver,
sends the spans of a traced call there."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from tests.fake_tfserving import FakeTFServing
from tests.otlp_sink import OtlpSink
from tests.test_lifecycle import end, start_tfgate
from tfgate.v1 import inference_pb2, inference_pb2_grpc

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{TRACE}-b7ad6b7169203331-01"


@pytest.mark.asyncio
async def test_spans_reach_an_otlp_collector(backend: FakeTFServing, tmp_path: Path) -> None:
    sink = OtlpSink()
    port = await sink.start()
    env = {
        "TFGATE_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "TFGATE_SERVICE_NAME": "tfgate-under-test",
    }
    process, gateway = start_tfgate(backend.target, tmp_path / "tfgate.log", env=env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            request = inference_pb2.PredictRequest(
                model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0])}
            )
            await stub.Predict(request, metadata=(("traceparent", CALLER),), timeout=10)
        give_up = time.monotonic() + 15  # the batch goes out within a second or so
        while not any(s.name == "Predict" for s in sink.spans):
            sink.arrived.clear()
            await asyncio.wait_for(sink.arrived.wait(), max(give_up - time.monotonic(), 0))
        ours = [s for s in sink.spans if s.trace_id == TRACE]
        names = sorted(s.name for s in ours)
        assert names == ["Predict", "attempt", "attempt", "preprocess"], sink.spans
        assert {s.service for s in ours} == {"tfgate-under-test"}
        (call,) = [s for s in ours if s.name == "Predict"]
        assert call.parent_span_id == "b7ad6b7169203331"
    finally:
        end(process)
        await sink.stop()
