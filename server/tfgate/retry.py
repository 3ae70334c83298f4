"""When a failed backend call is tried again: the policy as data, a budget, server push-back.

The policy is composed from tenacity strategies: stop after ``max_attempts`` or when the next
back-off would end past the caller's deadline; wait with exponential back-off and full jitter,
unless TF Serving (or a proxy in front of it) sent ``grpc-retry-pushback-ms``, which wins; retry
only the configured codes, and only while the retry budget allows.

The budget (as in Envoy's retry budgets and gRPC's retry throttling) keeps a dead or overloaded
backend from being hammered: over a sliding window, retries may add at most ``budget_ratio`` of
the calls started, plus a floor of ``budget_min_per_second`` so that light traffic can still
retry. When it is spent, calls fail at once with UNAVAILABLE and say so.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

import grpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    before_sleep_log,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from tfgate.config import RetryPolicy

logger = logging.getLogger(__name__)

PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
# RESOURCE_EXHAUSTED also means "this message is larger than the limit", which no retry fixes.
_TOO_LARGE: Final = ("larger than max", "message too large")


def _rpc_error(state: RetryCallState) -> grpc.aio.AioRpcError | None:
    if state.outcome is None or not state.outcome.failed:
        return None
    exc = state.outcome.exception()
    return exc if isinstance(exc, grpc.aio.AioRpcError) else None


def pushback_ms(error: grpc.aio.AioRpcError) -> int | None:
    """The server's ``grpc-retry-pushback-ms``: None if absent, -1 for "do not retry"."""
    for key, value in error.trailing_metadata() or ():
        if key == PUSHBACK_KEY:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return int(text) if text.isdigit() else -1
    return None


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


class retry_if_retryable(retry_base):
    """Retries the policy's codes, unless push-back says no or the budget is spent."""

    def __init__(self, codes: frozenset[grpc.StatusCode], budget: RetryBudget) -> None:
        self.codes = codes
        self.budget = budget
        self.budget_spent = False

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _rpc_error(retry_state)
        if error is None or error.code() not in self.codes:
            return False
        details = (error.details() or "").lower()
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and any(
            needle in details for needle in _TOO_LARGE
        ):
            return False
        pushback = pushback_ms(error)
        if pushback is not None and pushback < 0:
            return False
        if not self.budget.try_retry():
            self.budget_spent = True
            return False
        return True


class wait_pushback_or(wait_base):
    """The server's push-back delay when it sent one, else ``fallback``."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        error = _rpc_error(retry_state)
        pushback = pushback_ms(error) if error is not None else None
        if pushback is not None and pushback >= 0:
            return pushback / 1000.0
        return self.fallback(retry_state)


class stop_at_deadline(stop_base):
    """Stops when the next back-off sleep would end past ``deadline`` (time.monotonic())."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


@dataclass
class Attempts:
    """One call's retrying loop, and whether the budget cut it short."""

    retrying: AsyncRetrying
    predicate: retry_if_retryable


def attempts(policy: RetryPolicy, budget: RetryBudget, deadline: float) -> Attempts:
    """The retry loop for one backend call that must end by ``deadline``."""
    predicate = retry_if_retryable(policy.codes, budget)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_at_deadline(deadline),
        wait=wait_pushback_or(
            wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)
        ),
        retry=predicate,
        before_sleep=before_sleep_log(logger, logging.INFO),
        reraise=True,
    )
    return Attempts(retrying, predicate)


def budget_for(policy: RetryPolicy) -> RetryBudget:
    return RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
