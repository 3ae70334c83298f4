"""When a failed backend call is tried again: the policy as data, a budget, server push-back.

The policy is composed from tenacity strategies: stop after ``max_attempts`` or when the next
back-off would end past the caller's deadline; wait with exponential back-off and full jitter,
unless TF Serving (or a proxy in front of it) sent ``grpc-retry-pushback-ms``, which wins; retry
only the configured codes, and only while the retry budget allows.

The budget (tfgate.backends.budget) keeps a dead or overloaded backend from being hammered. This
module is imported on a call's first failure only (tfgate.backends.upstream): a call that
succeeds at once never builds a retry loop, and a start-up does not pay for importing tenacity.
"""

from __future__ import annotations

import logging
import time
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

from tfgate.backends.budget import RetryBudget
from tfgate.config import RetryPolicy

logger = logging.getLogger(__name__)

PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
# Failures the request itself caused, which a retry would only repeat (all RESOURCE_EXHAUSTED, in
# grpc's or TensorFlow's words): a message over a size limit on either side ("SERVER: Received
# message larger than max (5242880 vs. 4194304)", "CLIENT: Sent message larger than max", an
# answer over tfgate's own limit), an answer whose metadata is over grpc's limit ("Stream removed
# (received metadata size exceeds hard limit ...)": TF Serving's status message quoting a huge
# name from the request), and TensorFlow out of memory for the request's tensors ("OOM when
# allocating tensor with shape[...]"). What load causes (TF Serving's "Run() timeout exceeded while
# waiting in batching queue", a proxy's quota) is still retried.
_CAUSED_BY_REQUEST: Final = (
    "larger than max",
    "message too large",
    "metadata size exceeds",
    "oom when allocating",
)


def caused_by_request(details: str | None) -> bool:
    """Whether a failure with these ``details`` came from the request itself (its size)."""
    text = (details or "").lower()
    return any(needle in text for needle in _CAUSED_BY_REQUEST)


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


class retry_if_retryable(retry_base):
    """Retries the policy's codes, unless the request caused the failure, push-back says no or
    the budget is spent."""

    def __init__(self, codes: frozenset[grpc.StatusCode], budget: RetryBudget) -> None:
        self.codes = codes
        self.budget = budget
        self.budget_spent = False

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _rpc_error(retry_state)
        if error is None or error.code() not in self.codes or caused_by_request(error.details()):
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


def attempts(
    policy: RetryPolicy,
    codes: frozenset[grpc.StatusCode],
    budget: RetryBudget,
    deadline: float,
) -> Attempts:
    """The retry loop for one backend call that must end by ``deadline``, retrying ``codes``
    (the policy's retryable codes, as the caller already holds them in grpc's terms)."""
    predicate = retry_if_retryable(codes, budget)
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
