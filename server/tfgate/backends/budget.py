"""The retry budget: how many retries the recent calls leave room for.

As in Envoy's retry budgets and gRPC's retry throttling, it keeps a dead or overloaded backend
from being hammered: over a sliding window, retries may add at most ``budget_ratio`` of the calls
started, plus a floor of ``budget_min_per_second`` so that light traffic can still retry. When it
is spent, calls fail at once with UNAVAILABLE and say so (tfgate.backends.upstream). Counting
every call is all a call that succeeds at once pays; the retry loop itself lives in
tfgate.backends.retry.
"""

from __future__ import annotations

import time
from collections import deque

from tfgate.config import RetryPolicy


class RetryBudget:
    """Counts calls and retries over the last ``window`` seconds, in one-second buckets."""

    def __init__(self, ratio: float, min_per_second: float, window: int = 10) -> None:
        self.ratio = ratio
        self.floor = min_per_second * window
        self.window = window
        self._buckets: deque[list[int]] = deque()  # [second, calls, retries]
        self.refused = 0

    def _current(self) -> list[int]:
        now = int(time.monotonic())
        while self._buckets and self._buckets[0][0] <= now - self.window:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != now:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def record_call(self) -> None:
        self._current()[1] += 1

    def try_retry(self) -> bool:
        """Takes one retry from the budget, or refuses."""
        bucket = self._current()
        calls = sum(b[1] for b in self._buckets)
        retries = sum(b[2] for b in self._buckets)
        if retries + 1 > self.ratio * calls + self.floor:
            self.refused += 1
            return False
        bucket[2] += 1
        return True


def budget_for(policy: RetryPolicy) -> RetryBudget:
    return RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
