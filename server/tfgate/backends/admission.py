"""The concurrency cap on backend calls, with a bounded wait queue (load shedding).

At most ``limit`` calls are in flight. A caller beyond it waits, first come first served, but
only if fewer than ``max_queue`` are already waiting, and for at most ``max_wait`` seconds (and
never past its deadline). Otherwise it is refused at once with RESOURCE_EXHAUSTED: under
overload, answering "no" quickly keeps memory and latency bounded for the calls admitted.

``FairLimiter`` adds a fair share: no client holds more than ``share`` of the slots (rounded
up), so that one client flooding tfgate leaves slots to the others. The cap per client is
strict, even when no other client wants a slot: predictable, and what a client sees does not
depend on who else is calling. A client at its share waits in the same queue, within the same
bounds; a freed slot goes to the first waiter whose client is under its share.
"""

from __future__ import annotations

import asyncio
import collections
import math
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

    async def acquire(self, deadline: float, client: str = "-") -> None:
        """Takes a slot, waiting within the queue's bounds and the ``deadline``."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise self._queue_full()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await self._wait(waiter, deadline, client)

    def _queue_full(self) -> ResourceExhausted:
        self.shed += 1
        return ResourceExhausted(
            f"tfgate is at capacity: {self.in_flight} backend calls in flight and "
            f"{self.waiting} waiting (max_concurrency={self.limit}, "
            f"max_queue={self.max_queue}); retry with back-off"
        )

    async def _wait(self, waiter: asyncio.Future[None], deadline: float, client: str) -> None:
        """Waits for the queued ``waiter`` to be handed a slot, for at most ``max_wait`` and
        never past the ``deadline``; takes it off the queue, whatever happens."""
        remaining = deadline - time.monotonic()
        wait = min(self.max_wait, remaining)
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
                f"of the {self.limit} backend call slots{self._share_note(client)}; retry with "
                "back-off"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(client)  # handed a slot just as we were cancelled: pass it on
            raise
        finally:
            self._unqueue(waiter, client)

    def _share_note(self, client: str) -> str:
        """What a refusal after waiting says of ``client``'s share: nothing, without one."""
        return ""

    def _unqueue(self, waiter: asyncio.Future[None], client: str) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self, client: str = "-") -> None:
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

    def slot(self, deadline: float, client: str = "-") -> _Slot:
        return _Slot(self, deadline, client)


class FairLimiter(Limiter):
    """A Limiter where each client holds at most ``ceil(share * limit)`` slots (see above)."""

    def __init__(self, limit: int, max_queue: int, max_wait: float, share: float) -> None:
        super().__init__(limit, max_queue, max_wait)
        self.per_client = max(1, math.ceil(share * limit))
        self.held: dict[str, int] = {}  # client -> slots it holds; only clients holding some
        self._fair: collections.deque[tuple[asyncio.Future[None], str]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._fair)

    def _take(self, client: str) -> None:
        self.in_flight += 1
        self.held[client] = self.held.get(client, 0) + 1

    async def acquire(self, deadline: float, client: str = "-") -> None:
        # A free slot with waiters means they all wait for their own share (release hands a
        # free slot to the first waiter who may take it): a client under its share goes first.
        if self.in_flight < self.limit and self.held.get(client, 0) < self.per_client:
            self._take(client)
            return
        if len(self._fair) >= self.max_queue:
            raise self._queue_full()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fair.append((waiter, client))
        await self._wait(waiter, deadline, client)

    def _share_note(self, client: str) -> str:
        held = self.held.get(client, 0)
        if held < self.per_client:
            return ""
        return f"; client {client} holds {held}, its share (limits.client_share)"

    def _unqueue(self, waiter: asyncio.Future[None], client: str) -> None:
        entry = (waiter, client)
        if entry in self._fair:
            self._fair.remove(entry)

    def release(self, client: str = "-") -> None:
        self.in_flight -= 1
        held = self.held[client] - 1
        if held:
            self.held[client] = held
        else:
            del self.held[client]
        # Scans at most max_queue waiters, and only while some wait.
        for entry in self._fair:
            waiter, waiting = entry
            if not waiter.done() and self.held.get(waiting, 0) < self.per_client:
                self._fair.remove(entry)
                self._take(waiting)
                waiter.set_result(None)
                return


class _Slot:
    def __init__(self, limiter: Limiter, deadline: float, client: str) -> None:
        self._limiter = limiter
        self._deadline = deadline
        self._client = client

    async def __aenter__(self) -> None:
        await self._limiter.acquire(self._deadline, self._client)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release(self._client)
