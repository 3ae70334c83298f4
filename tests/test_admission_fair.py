"""FairLimiter: a client holds at most its share of the slots; the others still get theirs."""

from __future__ import annotations

import asyncio
import time

import pytest

from tfgate.backends.admission import FairLimiter
from tfgate.errors import ResourceExhausted

pytestmark = pytest.mark.asyncio


def far() -> float:
    return time.monotonic() + 10


async def test_a_client_at_its_share_waits_and_others_go_first() -> None:
    limiter = FairLimiter(limit=4, max_queue=10, max_wait=5, share=0.5)
    assert limiter.per_client == 2
    await limiter.acquire(far(), "a")
    await limiter.acquire(far(), "a")
    got: list[str] = []

    async def take(client: str) -> None:
        await limiter.acquire(far(), client)
        got.append(client)

    a3 = asyncio.ensure_future(take("a"))
    await asyncio.sleep(0.01)
    assert got == [] and limiter.waiting == 1  # a waits, with two slots free
    await take("b")  # b is under its share: it takes a free slot at once, past a's waiter
    assert got == ["b"] and limiter.held == {"a": 2, "b": 1}
    limiter.release("b")  # a freed slot goes to no waiter at its share
    await asyncio.sleep(0.01)
    assert got == ["b"] and limiter.in_flight == 2
    limiter.release("a")  # a is under its share again: its waiter gets the slot
    await asyncio.wait_for(a3, 1)
    assert got == ["b", "a"] and limiter.held == {"a": 2} and limiter.in_flight == 2


async def test_a_freed_slot_skips_waiters_at_their_share() -> None:
    limiter = FairLimiter(limit=2, max_queue=10, max_wait=5, share=0.5)
    await limiter.acquire(far(), "a")
    await limiter.acquire(far(), "b")
    order: list[str] = []

    async def take(client: str) -> None:
        await limiter.acquire(far(), client)
        order.append(client)

    waiting = [asyncio.ensure_future(take(c)) for c in ("a", "a", "c")]
    await asyncio.sleep(0.01)
    limiter.release("b")  # a's waiters are at a's share: c, behind them, gets it
    await asyncio.sleep(0.01)
    assert order == ["c"]
    limiter.release("a")
    limiter.release("c")
    await asyncio.sleep(0.01)
    assert order == ["c", "a"]  # one slot for a at a time, the other stays free
    assert limiter.in_flight == 1
    limiter.release("a")
    await asyncio.gather(*waiting)
    assert order == ["c", "a", "a"] and limiter.in_flight == 1 and limiter.held == {"a": 1}


async def test_a_client_over_its_share_is_shed_after_max_wait() -> None:
    limiter = FairLimiter(limit=4, max_queue=10, max_wait=0.05, share=0.25)
    await limiter.acquire(far(), "a")
    with pytest.raises(ResourceExhausted, match="client a holds 1, its share"):
        await limiter.acquire(far(), "a")
    assert limiter.shed == 1 and limiter.waiting == 0 and limiter.in_flight == 1


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    limiter = FairLimiter(limit=1, max_queue=10, max_wait=5, share=1.0)
    await limiter.acquire(far(), "a")
    first = asyncio.ensure_future(limiter.acquire(far(), "b"))
    second = asyncio.ensure_future(limiter.acquire(far(), "c"))
    await asyncio.sleep(0.01)
    limiter.release("a")  # handed to b ...
    first.cancel()  # ... who has gone: it goes on to c
    await asyncio.sleep(0.01)
    await asyncio.wait_for(second, 1)
    assert limiter.in_flight == 1 and limiter.held == {"c": 1} and limiter.waiting == 0
