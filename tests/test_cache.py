"""tfgate.cache without a network: its config, its key, TTL, the byte bound, single flight."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfgate import dtypes
from tfgate.cache import CacheConfig, ResponseCache, configs, key_of, size_of
from tfgate.calls import Call, no_cache
from tfgate.config import ConfigError, read_file
from tfgate.domain import Answer, Predict
from tfgate.errors import BackendError, Code, DeadlineExceeded, Unavailable
from tfgate.plans import config as pipeline_config
from tfgate.plans.plan import Plan, identity
from tfgate.signatures import ModelMetadata, Signature, TensorSpec
from tfgate.tensors import Made
from tfgate.translate import Selector
from tfgate.v1 import inference_pb2

T = inference_pb2.Tensor
F32 = dtypes.BY_NAME["float32"]
I64 = dtypes.BY_NAME["int64"]


def plan_of(version: int = 1) -> Plan:
    signature = Signature(
        "tensorflow/serving/predict",
        {"a": TensorSpec(F32, (-1,)), "b": TensorSpec(I64, (-1,))},
        {"sum": TensorSpec(F32, (-1,)), "prod": TensorSpec(F32, (-1,))},
    )
    meta = ModelMetadata("m", version, {"serving_default": signature})
    return identity(meta, "serving_default", signature)


def key(plan: Plan, sel: Selector | None = None, **fields: Any) -> bytes:
    sel = sel or Selector("m")
    request = Predict("m", **fields)
    return key_of(plan, plan.prepare(sel, request, 1_000_000))


def inputs(a: T, b: T) -> dict[str, T]:
    return {"a": a, "b": b}


def test_the_key_ignores_input_order_and_float_encoding() -> None:
    plan = plan_of()
    one = key(plan, inputs=inputs(T(floats=[1.5, 2.0]), T(ints=[3, 4])))
    reordered = key(plan, inputs={"b": T(ints=[3, 4]), "a": T(floats=[1.5, 2.0])})
    doubles = key(plan, inputs=inputs(T(doubles=[1.5, 2.0]), T(ints=[3, 4])))
    assert one == reordered == doubles
    assert key(plan, inputs=inputs(T(floats=[1.5, 2.5]), T(ints=[3, 4]))) != one
    assert key(plan, inputs=inputs(T(floats=[1.5, 2.0]), T(ints=[4, 3]))) != one


def test_the_key_names_the_resolved_version_not_the_selector() -> None:
    fields: dict[str, Any] = {"inputs": inputs(T(floats=[1.0]), T(ints=[1]))}
    latest = key(plan_of(2), Selector("m"), **fields)
    assert key(plan_of(2), Selector("m", 2), **fields) == latest
    assert key(plan_of(2), Selector("m", 0, "canary"), **fields) == latest
    assert key(plan_of(1), Selector("m"), **fields) != latest


def test_the_key_holds_the_sorted_output_filter() -> None:
    plan = plan_of()
    given = inputs(T(floats=[1.0]), T(ints=[1]))
    both = key(plan, inputs=given, output_filter=["sum", "prod"])
    assert key(plan, inputs=given, output_filter=["prod", "sum"]) == both
    assert key(plan, inputs=given, output_filter=["sum"]) != both
    assert key(plan, inputs=given) not in (both, key(plan, inputs=given, output_filter=["sum"]))


def test_cache_control_directives() -> None:
    assert no_cache("no-cache")
    assert no_cache("max-age=0, No-Cache")
    assert not no_cache("no-store")
    assert not no_cache("")
    assert not no_cache(None)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"max_bytes": 1000}, "[models.m.cache] ttl: required"),
        ({"ttl": 5}, "[models.m.cache] max_bytes: required"),
        ({"ttl": "5", "max_bytes": 1000}, "[models.m.cache] ttl: must be a number"),
        ({"ttl": 0, "max_bytes": 1000}, "[models.m.cache] ttl: must be a positive"),
        ({"ttl": 5, "max_bytes": 1.5}, "[models.m.cache] max_bytes: must be a whole"),
        ({"ttl": 5, "max_bytes": -1}, "[models.m.cache] max_bytes: must be a positive number"),
        ({"ttl": 5, "max_bytes": True}, "[models.m.cache] max_bytes: must be a number"),
        ({"ttl": 5, "max_bytes": 9, "size": 1}, "unknown setting 'size'"),
        ("x", "[models.m.cache]: must be a table"),
    ],
)
def test_bad_cache_tables_are_refused_by_name(table: object, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configs("t.toml", {"models": {"m": {"cache": table}}})
    assert needle in str(caught.value)
    assert "config file t.toml" in str(caught.value)


def test_cache_tables_are_read() -> None:
    data = {"models": {"m": {"cache": {"ttl": 2.5, "max_bytes": 4096}}, "n": {"inputs": {}}}}
    assert configs("t.toml", data) == {"m": CacheConfig(2.5, 4096)}


def test_a_cache_only_section_keeps_the_identity_plan(tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(
        "[models.half_plus_two.cache]\nttl = 5\nmax_bytes = 1000\n"
        '[models.sentiment]\nsignature = "serving_default"\n'
        "[models.sentiment.cache]\nttl = 1.5\nmax_bytes = 2000\n"
    )
    data = read_file(str(path))
    assert list(pipeline_config.load(str(path), data)) == ["sentiment"]
    assert configs(str(path), data) == {
        "half_plus_two": CacheConfig(5.0, 1000),
        "sentiment": CacheConfig(1.5, 2000),
    }


# -- the cache itself, with a fake backend call ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answer_of(value: float, version: int = 1) -> Answer:
    values = np.full(4, value, np.float32)
    return Answer("m", version, "serving_default", [("y", Made(F32, values))])


def call(no_cache: bool = False) -> Call:
    return Call("grpc", "Predict", 1e12, no_cache=no_cache)


class Backend:
    """Counts calls; answers ``answer_of(n)`` for the n-th call, after ``gate`` opens."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None
        self.version = 1

    async def fetch(self) -> Answer:
        self.calls += 1
        number = self.calls
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return answer_of(float(number), self.version)


def start(cache: ResponseCache, backend: Backend) -> asyncio.Future[Answer]:
    return asyncio.ensure_future(cache.answer(b"k", 1, call(), backend.fetch))


def cache_of(max_bytes: int = 1 << 20, ttl: float = 10.0, **kwargs: Any) -> ResponseCache:
    return ResponseCache("m", CacheConfig(ttl, max_bytes), **kwargs)


@pytest.mark.asyncio
async def test_a_hit_reuses_the_answer_and_the_log_says_which() -> None:
    cache, backend = cache_of(), Backend()
    first, second = call(), call()
    a = await cache.answer(b"k", 1, first, backend.fetch)
    b = await cache.answer(b"k", 1, second, backend.fetch)
    assert a is b and backend.calls == 1
    assert (first.cache, second.cache) == ("miss", "hit")
    await cache.answer(b"other", 1, call(), backend.fetch)
    assert backend.calls == 2


@pytest.mark.asyncio
async def test_entries_expire_after_ttl() -> None:
    clock, backend = Clock(), Backend()
    cache = cache_of(ttl=5.0, clock=clock)
    await cache.answer(b"k", 1, call(), backend.fetch)
    clock.now += 4.9
    await cache.answer(b"k", 1, call(), backend.fetch)
    assert backend.calls == 1
    clock.now += 0.2
    late = call()
    found = await cache.answer(b"k", 1, late, backend.fetch)
    assert backend.calls == 2 and late.cache == "miss"
    assert found.outputs[0][1].values[0] == 2.0  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_no_cache_skips_the_look_up_and_refreshes_the_entry() -> None:
    cache, backend = cache_of(), Backend()
    await cache.answer(b"k", 1, call(), backend.fetch)
    bypass = call(no_cache=True)
    fresh = await cache.answer(b"k", 1, bypass, backend.fetch)
    assert backend.calls == 2 and bypass.cache == "bypass"
    again = await cache.answer(b"k", 1, call(), backend.fetch)
    assert again is fresh and backend.calls == 2


@pytest.mark.asyncio
async def test_an_answer_from_another_version_is_not_kept() -> None:
    cache, backend = cache_of(), Backend()
    backend.version = 2  # the catalog resolved to 1; TF Serving answered from 2
    await cache.answer(b"k", 1, call(), backend.fetch)
    await cache.answer(b"k", 1, call(), backend.fetch)
    assert backend.calls == 2 and len(cache) == 0


@pytest.mark.asyncio
async def test_the_byte_bound_holds_under_a_flood_of_distinct_inputs() -> None:
    entry = size_of(b"%05d" % 0, answer_of(0.0))
    cache, backend = cache_of(max_bytes=entry * 50 + entry // 2), Backend()
    most = 0
    for n in range(10_000):
        await cache.answer(b"%05d" % n, 1, call(), backend.fetch)
        most = max(most, cache.bytes)
    assert most <= cache.config.max_bytes
    assert len(cache) == 50 and cache.evictions == 10_000 - 50
    assert cache.bytes == sum(e.size for e in cache._entries.values())
    # The most recently used stay: the last 50 keys hit, the first is gone.
    hits = call()
    await cache.answer(b"%05d" % 9_999, 1, hits, backend.fetch)
    assert hits.cache == "hit"
    await cache.answer(b"%05d" % 0, 1, call(), backend.fetch)
    assert backend.calls == 10_001


@pytest.mark.asyncio
async def test_a_hit_keeps_an_entry_from_eviction() -> None:
    entry = size_of(b"k0", answer_of(0.0))
    cache, backend = cache_of(max_bytes=entry * 2), Backend()
    await cache.answer(b"k0", 1, call(), backend.fetch)
    await cache.answer(b"k1", 1, call(), backend.fetch)
    await cache.answer(b"k0", 1, call(), backend.fetch)  # k1 is now the least recently used
    await cache.answer(b"k2", 1, call(), backend.fetch)
    kept = call()
    await cache.answer(b"k0", 1, kept, backend.fetch)
    assert kept.cache == "hit" and backend.calls == 3


@pytest.mark.asyncio
async def test_an_answer_larger_than_the_bound_is_not_kept() -> None:
    cache, backend = cache_of(max_bytes=100), Backend()
    await cache.answer(b"k", 1, call(), backend.fetch)
    assert len(cache) == 0 and cache.bytes == 0


@pytest.mark.asyncio
async def test_a_digest_collision_never_answers_another_key() -> None:
    cache, backend = cache_of(digest=lambda key: b"same"), Backend()
    a = await cache.answer(b"first", 1, call(), backend.fetch)
    b = await cache.answer(b"second", 1, call(), backend.fetch)
    assert a is not b and backend.calls == 2
    again = call()
    assert await cache.answer(b"second", 1, again, backend.fetch) is b
    assert again.cache == "hit"
    assert await cache.answer(b"first", 1, call(), backend.fetch) is not a
    assert backend.calls == 3


@pytest.mark.asyncio
async def test_identical_concurrent_misses_make_one_call() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    waiting = [start(cache, backend) for _ in range(100)]
    await asyncio.sleep(0.01)
    backend.gate.set()
    answers = await asyncio.gather(*waiting)
    assert backend.calls == 1
    assert all(a is answers[0] for a in answers)


@pytest.mark.asyncio
async def test_a_failure_reaches_each_waiter_as_its_own_error() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    backend.error = BackendError(Code.UNAVAILABLE, "TF Serving is down", Code.UNAVAILABLE)
    waiting = [start(cache, backend) for _ in range(5)]
    await asyncio.sleep(0.01)
    backend.gate.set()
    errors = await asyncio.gather(*waiting, return_exceptions=True)
    assert backend.calls == 1
    assert all(isinstance(e, BackendError) for e in errors)
    assert len({id(e) for e in errors}) == 5
    assert all(
        e.message == "TF Serving is down" and e.code is Code.UNAVAILABLE  # type: ignore[union-attr]
        for e in errors
    )
    # Nothing was kept: the next call asks again.
    backend.error = None
    await cache.answer(b"k", 1, call(), backend.fetch)
    assert backend.calls == 2


@pytest.mark.asyncio
async def test_a_cancelled_waiter_does_not_cancel_the_call_for_the_others() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    first = asyncio.ensure_future(cache.answer(b"k", 1, call(), backend.fetch))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(cache.answer(b"k", 1, call(), backend.fetch))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    backend.gate.set()
    found = await second
    assert first.cancelled() and backend.cancelled == 0 and backend.calls == 1
    assert found.outputs[0][1].values[0] == 1.0  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_the_call_is_cancelled_when_every_waiter_is_gone() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    waiting = [start(cache, backend) for _ in range(3)]
    await asyncio.sleep(0.01)
    for task in waiting:
        task.cancel()
    await asyncio.sleep(0.01)
    assert backend.cancelled == 1
    # A new caller starts a call of its own rather than joining the cancelled one.
    backend.gate.set()
    await cache.answer(b"k", 1, call(), backend.fetch)
    assert backend.calls == 2


@pytest.mark.asyncio
async def test_a_failure_nobody_waits_for_is_not_reported_lost() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    backend.error = Unavailable("down")
    waiter = asyncio.ensure_future(cache.answer(b"k", 1, call(), backend.fetch))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert backend.cancelled == 1  # cancelled with its last waiter: nothing left unretrieved


@pytest.mark.asyncio
async def test_a_waiter_whose_deadline_ends_first_leaves_the_call_to_the_others() -> None:
    cache, backend = cache_of(), Backend()
    backend.gate.clear()
    patient = start(cache, backend)
    await asyncio.sleep(0)
    hurried = Call("grpc", "Predict", time.monotonic() + 0.05)
    with pytest.raises(DeadlineExceeded, match="identical request"):
        await cache.answer(b"k", 1, hurried, backend.fetch)
    backend.gate.set()
    found = await patient
    assert found.outputs[0][1].values[0] == 1.0  # type: ignore[union-attr]
    assert backend.calls == 1 and backend.cancelled == 0
