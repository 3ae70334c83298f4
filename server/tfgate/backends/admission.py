"""The concurrency cap on backend calls, with a bounded wait queue (load shedding).

At most ``limit`` calls are in flight. A caller beyond it waits, first come first served, but
only if fewer than ``max_queue`` are already waiting, and for at most ``max_wait`` seconds (and
never past its deadline). Otherwise it is refused at once with RESOURCE_EXHAUSTED: under
overload, answering "no" quickly keeps memory and latency bounded for the calls admitted.
"""

from __future__ import annotations

import asyncio
import collections
import time
from types import TracebackType

from tfgate.errors import DeadlineExceeded, ResourceExhausted


class Limiter:
    def __init__(self, limit: int, max_queue: int, max_wait: float) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.max_wait = max_wait
        self.in_flight = 0
        self.shed = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, deadline: float) -> None:
        """Takes a slot, waiting within the queue's bounds and the ``deadline``."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            self.shed += 1
            raise ResourceExhausted(
                f"tfgate is at capacity: {self.in_flight} backend calls in flight and "
                f"{len(self._waiters)} waiting (max_concurrency={self.limit}, "
                f"max_queue={self.max_queue}); retry with back-off"
            )
        remaining = deadline - time.monotonic()
        wait = min(self.max_wait, remaining)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot arrived just as time ran out: take it
            if wait >= remaining:
                raise DeadlineExceeded(
                    f"the deadline ran out after {wait * 1000:.0f} ms waiting for one of the "
                    f"{self.limit} backend call slots"
                ) from None
            self.shed += 1
            raise ResourceExhausted(
                f"tfgate is at capacity: waited {wait * 1000:.0f} ms (max_queue_wait) for one "
                f"of the {self.limit} backend call slots; retry with back-off"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        self.in_flight -= 1
        self._release_one()

    def _release_one(self) -> None:
        # The slot goes straight to the next live waiter; in_flight stays counted for it.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
                return

    def slot(self, deadline: float) -> _Slot:
        return _Slot(self, deadline)


class _Slot:
    def __init__(self, limiter: Limiter, deadline: float) -> None:
        self._limiter = limiter
        self._deadline = deadline

    async def __aenter__(self) -> None:
        await self._limiter.acquire(self._deadline)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release()
