"""tfgate.logs: the writer thread, its bounded queue, and rate-limited warnings and errors."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest

from tests.conftest import Running
from tests.fake_tfserving import FakeTFServing
from tests.test_lifecycle import end, start_tfgate
from tfgate import logs
from tfgate.v1 import inference_pb2, inference_pb2_grpc

T = inference_pb2.Tensor
_SUPPRESSED = re.compile(r"(\d+) similar lines suppressed")


def hp2() -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0])})


class Blocked(logging.Handler):
    """A writer stuck until ``unblock`` is set, as on a full or hung disk; keeps what it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.unblock = threading.Event()
        self.entered = threading.Event()  # set once it holds a line
        self.lines: list[str] = []
        self.setFormatter(logs.formatter("text"))

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.unblock.wait(30)
        self.lines.append(self.format(record))


@pytest.fixture
def pipelines() -> Iterator[list[logs.LogPipeline]]:
    """Pipelines a test starts, stopped after it even when it fails."""
    started: list[logs.LogPipeline] = []
    yield started
    for pipeline in started:
        if isinstance(pipeline.writer, Blocked):
            pipeline.writer.unblock.set()
        pipeline.stop()


def _record(
    message: str, *args: object, name: str = "tfgate.x", level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


@pytest.mark.asyncio
async def test_a_stuck_writer_does_not_stall_calls(
    gw: Running, pipelines: list[logs.LogPipeline]
) -> None:
    writer = Blocked()
    pipeline = logs.LogPipeline(writer, "INFO")
    pipeline.start()
    pipelines.append(pipeline)
    calls = 50
    async with asyncio.timeout(10):  # with the writer stuck for 30 s
        for _ in range(calls):
            await gw.stub.Predict(hp2())
    assert len(writer.lines) <= 1  # the writer holds at most the first line
    writer.unblock.set()
    pipeline.stop()
    access = [line for line in writer.lines if " tfgate.access Predict " in line]
    assert len(access) == calls


def test_the_queue_is_bounded_and_says_how_many_lines_it_dropped(
    pipelines: list[logs.LogPipeline],
) -> None:
    writer = Blocked()
    pipeline = logs.LogPipeline(writer, "INFO", capacity=10)
    pipeline.start()
    pipelines.append(pipeline)
    log = logging.getLogger("tfgate.test_logs")
    log.info("first")
    assert writer.entered.wait(5)  # the writer is stuck with it
    for i in range(100):
        log.info("line %d", i)
    assert pipeline.queue.qsize() == 10
    assert pipeline.handler.dropped == 90
    writer.unblock.set()
    pipeline.stop()  # the listener has written the queue: room again
    pipeline.start()
    log.info("after")
    pipeline.stop()
    assert writer.lines[0].endswith(" first") and writer.lines[-1].endswith(" after")
    written = [line for line in writer.lines if " INFO tfgate.test_logs line " in line]
    assert [line.rsplit(" ", 1)[1] for line in written] == [str(i) for i in range(10)]
    (dropped,) = [line for line in writer.lines if "log lines dropped" in line]
    assert " WARNING tfgate.logs 90 log lines dropped: " in dropped
    assert writer.lines[-2] == dropped  # said before the next line written


def test_repeated_errors_are_limited_per_cause_and_summarised() -> None:
    now = [0.0]
    limit = logs.RateLimit(burst=3, window=10.0, clock=lambda: now[0])
    passed = [limit.filter(_record("TF Serving at %s is down", "a:1")) for _ in range(100)]
    assert passed == [True] * 3 + [False] * 97
    # Another cause, another logger and the access log are not limited by it.
    assert limit.filter(_record("something else"))
    assert limit.filter(_record("TF Serving at %s is down", "a:1", name="tfgate.y"))
    access = _record("x", name="tfgate.access", level=logging.INFO)
    assert all(limit.filter(access) for _ in range(10))
    assert all(limit.filter(_record("info", level=logging.INFO)) for _ in range(10))
    assert limit.pending() == [("tfgate.x", "TF Serving at %s is down", 97)]
    now[0] = 12.0
    later = _record("TF Serving at %s is down", "b:2")
    assert limit.filter(later)
    assert later.getMessage() == (
        "TF Serving at b:2 is down (97 similar lines suppressed in the last 12 s)"
    )
    assert limit.pending() == []


def test_tracebacks_are_one_cause_per_exception_type_and_place() -> None:
    limit = logs.RateLimit(burst=2)

    def failing(kind: type[Exception]) -> logging.LogRecord:
        try:
            raise kind("boom")
        except Exception:
            record = _record("%s failed", "Predict")
            record.exc_info = sys.exc_info()
            return record

    assert [limit.filter(failing(KeyError)) for _ in range(4)] == [True, True, False, False]
    assert limit.filter(failing(ValueError))


def test_the_causes_tracked_are_bounded() -> None:
    limit = logs.RateLimit(burst=1, max_causes=50)
    for i in range(10_000):
        limit.filter(_record(f"cause {i}"))  # a template per call: the worst case
    assert len(limit._causes) == 50


def test_json_lines_for_other_records() -> None:
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        record = _record("%s failed", "Predict\n")
        record.exc_info = sys.exc_info()
    prepared = logs.BoundedQueueHandler(queue.Queue()).prepare(record)
    line = logs.formatter("json").format(prepared)
    data = orjson.loads(line)
    assert set(data) == {"time", "level", "logger", "message", "traceback"}
    assert data["message"] == "Predict\n failed" and "\n" not in line
    assert data["level"] == "ERROR" and "RuntimeError: bad" in data["traceback"]


@pytest.mark.asyncio
async def test_a_flood_of_failing_calls_keeps_every_access_line_and_few_errors(
    gw: Running, monkeypatch: pytest.MonkeyPatch, pipelines: list[logs.LogPipeline]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gw.gateway.inference, "predict", broken)
    stream = io.StringIO()
    pipeline = logs.start("INFO", "json", stream)
    pipelines.append(pipeline)
    calls, batch = 10_000, 250
    started = time.monotonic()
    for _ in range(calls // batch):
        results = await asyncio.gather(
            *(gw.stub.Predict(hp2()) for _ in range(batch)), return_exceptions=True
        )
        assert all(
            isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.INTERNAL
            for r in results
        )
    windows = 1 + int((time.monotonic() - started) // 10)  # the default window: 10 s
    pipeline.stop()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if "request_id" in line]
    errors = [line for line in lines if line.get("level") == "ERROR"]
    assert len(access) == calls and all(line["code"] == "INTERNAL" for line in access)
    assert 1 <= len(errors) <= 5 * windows
    assert all("RuntimeError: a bug" in line["traceback"] for line in errors)
    assert pipeline.handler.dropped == 0
    # Every error is written or counted in a summary (the last one written by stop).
    said = sum(int(n) for line in lines for n in _SUPPRESSED.findall(line.get("message", "")))
    assert len(errors) + said == calls


@pytest.mark.asyncio
async def test_tfgate_serve_writes_json_lines_to_the_last_one(
    backend: FakeTFServing, tmp_path: Path
) -> None:
    log = tmp_path / "tfgate.log"
    proc, port = start_tfgate(backend.target, log, "--log-format", "json", "--grace-period", "0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            await stub.Predict(hp2(), timeout=10, metadata=(("x-request-id", "proc-1"),))
        os.kill(proc.pid, signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        end(proc)
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]
    access = [line for line in lines if line.get("request_id") == "proc-1"]
    assert len(access) == 1 and access[0]["code"] == "OK" and access[0]["attempts"] == 2
    # The shutdown's own line, logged just before the writer stops, was written.
    assert any(line.get("message", "").startswith("shutting down") for line in lines)
