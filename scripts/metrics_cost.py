"""What metrics cost a call: tfgate with ``metrics = true`` against ``metrics = false``.

    .venv/bin/python scripts/metrics_cost.py [--calls N] [--rounds R]

Two measurements, in one process (so both sides share the machine's state):
- the access-log Record of a finished call with metrics on and off (timeit), which is all the
  per-call work metrics add besides one attempt count and one preprocessing time;
- CPU time per tfgate.v1 Predict through a gateway in front of the test suite's fake TF
  Serving (all in this process, so the figure includes the client's and the backend's work:
  metrics' share of tfgate's own CPU is larger than the ratio shown), rounds alternating
  between a gateway with metrics and one without. The machine's noise is of the same order as
  the difference: compare the medians of many rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import timeit
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_tfserving import FakeTFServing
from tfgate.app import Gateway
from tfgate.calls import Call, Record
from tfgate.config import Config
from tfgate.errors import Code
from tfgate.metrics import NO_METRICS, Exported, Metrics
from tfgate.v1 import inference_pb2, inference_pb2_grpc


def record_cost(metrics: Metrics, number: int) -> float:
    """Microseconds to build and finish one call's Record."""

    def one() -> None:
        record = Record(Call("grpc", "Predict", 0.0), metrics)
        record.model = "half_plus_two"
        record.version = 2
        record.done_with(Code.OK)

    one()  # binds the label children
    return min(timeit.repeat(one, number=number, repeat=5)) / number * 1e6


async def start(backend: FakeTFServing, metrics: bool) -> tuple[Gateway, grpc.aio.Channel]:
    config = Config(listen="127.0.0.1:0", backend=backend.target, metrics=metrics)
    gateway = Gateway(config)
    port = await gateway.start()
    return gateway, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


async def cpu_per_call(channel: grpc.aio.Channel, calls: int) -> float:
    """CPU microseconds per Predict, over ``calls`` sequential calls."""
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    start = time.process_time()
    for _ in range(calls):
        await stub.Predict(REQUEST, timeout=5)
    return (time.process_time() - start) / calls * 1e6


REQUEST = inference_pb2.PredictRequest(
    model="half_plus_two", inputs={"x": inference_pb2.Tensor(floats=[1.0, 2.0, 5.0])}
)


async def paired(calls: int, rounds: int) -> tuple[list[float], list[float]]:
    """Two gateways, one with metrics and one without, in front of one backend; rounds of
    ``calls`` alternate between them (which goes first alternates too)."""
    backend = FakeTFServing()
    await backend.start()
    with_metrics, without = await start(backend, True), await start(backend, False)
    on: list[float] = []
    off: list[float] = []
    try:
        for _, channel in (with_metrics, without):
            await cpu_per_call(channel, 200)  # warm: metadata cached, label children bound
        for index in range(rounds):
            pairs = [(with_metrics[1], on), (without[1], off)]
            for channel, results in pairs if index % 2 == 0 else pairs[::-1]:
                results.append(await cpu_per_call(channel, calls))
    finally:
        for gateway, channel in (with_metrics, without):
            await channel.close()
            await gateway.stop(grace=0)
        await backend.stop()
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # no access log: what is measured is the metrics
    exported = record_cost(Exported(), 20_000)
    plain = record_cost(NO_METRICS, 20_000)
    print(f"Record, finished: {plain:.2f} us without metrics, {exported:.2f} us with")
    on, off = asyncio.run(paired(args.calls, args.rounds))
    median_on, median_off = statistics.median(on), statistics.median(off)
    print(
        f"CPU per Predict (gateway + fake backend, {args.rounds} paired rounds of "
        f"{args.calls}): {median_off:.1f} us without metrics, {median_on:.1f} us with "
        f"({(median_on / median_off - 1) * 100:+.1f}%)"
    )


if __name__ == "__main__":
    main()
