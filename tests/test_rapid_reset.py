"""An HTTP/2 rapid reset against a ``tfgate serve`` process: its memory stays bounded, and it
still answers afterwards.

Measured on 127.0.0.1 with 6 rounds of 20,000 HEADERS+RST_STREAM on one connection (55.5 MiB
before): with grpc's default backlog of calls not yet taken in (1,000 / 3,000) tfgate grew by 88
to 93 MiB (52 to 90 of them after the first round); with tfgate's own (200 / 400) by 21 to 27 MiB
(19 to 25 after the first round).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.fake_tfserving import FakeTFServing
from tests.rapid_reset import rapid_reset, rss_mib
from tests.test_gateway import hp2
from tests.test_lifecycle import end, start_tfgate
from tfgate.v1 import inference_pb2_grpc

ROUNDS = 6
PER_ROUND = 20_000
# MiB above the size before the attack at any round's end; and from the first round's end to the
# last one's. grpc's defaults exceed both.
MAX_GROWTH = 50.0
MAX_GROWTH_AFTER_FIRST_ROUND = 40.0


@pytest.mark.asyncio
async def test_a_rapid_reset_on_one_connection_leaves_memory_bounded_and_tfgate_answering(
    backend: FakeTFServing, tmp_path: Path
) -> None:
    proc, port = start_tfgate(backend.target, tmp_path / "tfgate.log", "--log-level", "WARNING")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            first = await stub.Predict(hp2(), timeout=10)  # warmed up: imports, metadata cached
        await asyncio.sleep(0.5)
        before = rss_mib(proc.pid)
        sizes = await rapid_reset(port, proc.pid, ROUNDS, PER_ROUND)
        print(f"RSS before {before:.1f} MiB, after each round", [round(s, 1) for s in sizes])
        assert len(sizes) == ROUNDS
        assert max(sizes) - before <= MAX_GROWTH, (before, sizes)
        assert sizes[-1] - sizes[0] <= MAX_GROWTH_AFTER_FIRST_ROUND, (before, sizes)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            answer = await stub.Predict(hp2(), timeout=10)
        assert answer == first  # the fake's newest half_plus_two: x / 2 + 3
        assert list(answer.outputs["y"].floats) == [3.5, 4.0, 5.5]
    finally:
        end(proc)
    assert proc.returncode is not None
