"""The retry budget (retries may add at most a fraction of the calls, plus a floor), and which
failures are never retried because the request caused them."""

from __future__ import annotations

import pytest

from tfgate.backends.budget import RetryBudget
from tfgate.backends.retry import caused_by_request


def test_budget_allows_ratio_plus_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, window=10)  # floor: 5 in the window
    for _ in range(100):
        budget.record_call()
    granted = sum(budget.try_retry() for _ in range(100))
    assert granted == 25
    assert budget.refused == 75


def test_budget_grows_with_traffic() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10)
    assert not budget.try_retry()
    budget.record_call()
    budget.record_call()
    assert budget.try_retry()
    assert not budget.try_retry()


@pytest.mark.parametrize(
    "details",
    [
        # grpc's own words (seen on 1.85 against a limit on each side)
        "SERVER: Received message larger than max (5242880 vs. 4194304)",
        "CLIENT: Sent message larger than max (2000 vs. 1024)",
        "Stream removed (CLIENT: Received message larger than max (2000 vs. 1024))",
        "Stream removed (received metadata size exceeds hard limit (value length 20000 vs. 16384))",
        # TensorFlow's, for tensors too large for memory
        "OOM when allocating tensor with shape[200000,75,75,64] and type float",
    ],
)
def test_failures_the_request_caused_are_recognised(details: str) -> None:
    assert caused_by_request(details)
    assert caused_by_request(f"TF Serving answered RESOURCE_EXHAUSTED: {details.upper()}")


@pytest.mark.parametrize(
    "details",
    [
        "Run() timeout exceeded while waiting in batching queue",  # TF Serving under load
        "tfgate is at capacity: 64 backend calls in flight and 512 waiting",
        "Stream removed (Socket closed)",
        "",
        None,
    ],
)
def test_failures_of_load_are_not_blamed_on_the_request(details: str | None) -> None:
    assert not caused_by_request(details)
