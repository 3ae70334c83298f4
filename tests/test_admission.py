"""The limiter: the cap, the bounded queue, first come first served, no lost slots."""

from __future__ import annotations

import asyncio
import time

import pytest

from tfgate.backends.admission import Limiter
from tfgate.errors import DeadlineExceeded, ResourceExhausted

pytestmark = pytest.mark.asyncio


def far() -> float:
    return time.monotonic() + 10


async def test_cap_queue_and_order() -> None:
    limiter = Limiter(limit=2, max_queue=2, max_wait=5)
    await limiter.acquire(far())
    await limiter.acquire(far())
    order: list[int] = []

    async def waiter(n: int) -> None:
        await limiter.acquire(far())
        order.append(n)

    tasks = [asyncio.ensure_future(waiter(n)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    assert limiter.waiting == 2
    with pytest.raises(ResourceExhausted, match="2 waiting"):
        await limiter.acquire(far())
    limiter.release()
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == [1, 2]
    assert limiter.in_flight == 2 and limiter.shed == 1


async def test_wait_bounds() -> None:
    limiter = Limiter(limit=1, max_queue=5, max_wait=0.05)
    await limiter.acquire(far())
    with pytest.raises(ResourceExhausted, match="max_queue_wait"):
        await limiter.acquire(far())
    with pytest.raises(DeadlineExceeded):
        await limiter.acquire(time.monotonic() + 0.01)
    assert limiter.in_flight == 1 and limiter.waiting == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = Limiter(limit=1, max_queue=5, max_wait=5)
    await limiter.acquire(far())
    task = asyncio.ensure_future(limiter.acquire(far()))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    limiter.release()
    assert limiter.in_flight == 0
    await limiter.acquire(far())
    assert limiter.in_flight == 1


async def test_slot_granted_as_the_waiter_is_cancelled_is_passed_on() -> None:
    limiter = Limiter(limit=1, max_queue=5, max_wait=5)
    await limiter.acquire(far())
    first = asyncio.ensure_future(limiter.acquire(far()))
    second = asyncio.ensure_future(limiter.acquire(far()))
    await asyncio.sleep(0.01)
    limiter.release()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0.01)
    assert second.done() and limiter.in_flight == 1
