"""What the response cache saves: a hit's CPU against a miss's, and backend calls under repeats.

Both paths are one ``tfgate serve`` with a ``[models.half_plus_two.cache]`` table (a 30 s TTL,
64 MiB), measured in alternating rounds (bench/run.py ``measure_cache``):

- ``tfgate-cached``: every call the same (the bench's small request): after the first, each is
  answered from the cache;
- ``tfgate-cached-bypass``: the same calls with ``cache-control: no-cache``, which skips the
  look-up, calls the backend and stores the answer again: a miss at its full cost.

The hit's CPU per call over the miss's, within each round, is the target's figure
(bench/report.py ``cache_summary``); the server's /metrics after the rounds show that hits and
misses were what they should be (``report.cache_check``).

``repeated``: a bounded load of its own against a fresh tfgate-cached, a grpc.aio client with a
few calls in flight, every other call repeating the input of an earlier one (chosen at random),
the others each new (``plan``); every answer is checked. The backend calls are the server's
``tfgate_backend_attempts_total`` over the load, against the calls made.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import messages, report
from bench.serving import MESSAGE_OPTIONS

MODEL = messages.MODEL
HIT_PATH, MISS_PATH = report.CACHE_HIT, report.CACHE_MISS
NO_CACHE = (("cache-control", "no-cache"),)
CONFIG = f"[models.{messages.MODEL}.cache]\nttl = 30\nmax_bytes = 67108864\n"


def write_config(workdir: Path) -> Path:
    """The config file of the cached paths, written into ``workdir``."""
    directory = workdir / "tfgate-cached"
    directory.mkdir(exist_ok=True)
    config = directory / "tfgate.toml"
    config.write_text(CONFIG)
    return config


def plan(calls: int, seed: int = 14) -> list[int]:
    """Which input each of ``calls`` calls sends, by number: every other call (the 2nd, 4th,
    ...) repeats the input of a call before it, chosen at random; the others send a new one
    (0, 1, 2, ... in turn)."""
    chosen = random.Random(seed)
    out: list[int] = []
    fresh = 0
    for i in range(calls):
        if i % 2:
            out.append(out[chosen.randrange(i)])
        else:
            out.append(fresh)
            fresh += 1
    return out


def inputs_of(number: int) -> np.ndarray[Any, Any]:
    """Input number ``number``: 4 float32 values no other number has."""
    return np.arange(4, dtype=np.float32) / np.float32(4.0) + np.float32(number)


async def _drive(target: str, method: str, order: list[int], in_flight: int) -> int:
    """Sends the calls of ``order`` with ``in_flight`` at once; checks every answer; returns the
    calls answered."""
    requests = {n: messages.domain_predict_request(inputs_of(n)) for n in set(order)}
    queue = iter(order)
    answered = 0
    async with grpc.aio.insecure_channel(target, options=MESSAGE_OPTIONS) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)

        async def worker() -> None:
            nonlocal answered
            for number in queue:
                answer = await call(requests[number], timeout=30)
                messages.check_domain_response(answer, inputs_of(number))
                answered += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return answered


def repeated(
    target: str, method: str, metrics: Callable[[], str], calls: int, in_flight: int = 16
) -> dict[str, Any]:
    """Runs ``plan(calls)`` against the tfgate-cached at ``target`` (tfgate.v1's Predict,
    ``method``); ``metrics()`` reads its /metrics text. Returns the calls, the backend calls
    and cache hits and misses counted over the load, and the time it took."""
    order = plan(calls)
    before = report.cache_counts(metrics(), messages.MODEL)
    began = time.monotonic()
    answered = asyncio.run(_drive(target, method, order, in_flight))
    seconds = time.monotonic() - began
    after = report.cache_counts(metrics(), messages.MODEL)
    counted = {k: after[k] - before[k] for k in after}
    return {
        "calls": answered,
        "distinct": len(set(order)),
        "in_flight": in_flight,
        "seconds": seconds,
        **counted,
    }
