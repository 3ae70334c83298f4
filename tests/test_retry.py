"""The retry budget: retries may add at most a fraction of the calls, plus a floor."""

from __future__ import annotations

from tfgate.backends.budget import RetryBudget


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
