"""The status page's window of calls (tfgate.status), on a fake clock."""

from __future__ import annotations

import pytest

from tfgate.calls import Call, Record
from tfgate.errors import Code
from tfgate.metrics import Metrics
from tfgate.status import BINS, FLOOR_MS, GROWTH, OTHER, Window, bin_limit, bin_of


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_and_error_ratio_over_the_last_minute() -> None:
    clock = Clock()
    window = Window(["m"], clock=clock)
    clock.now += 60  # a full minute since start: the rate is per 60 s
    for _ in range(30):
        clock.now += 1
        for i in range(4):
            window.add("m", Code.OK if i else Code.UNAVAILABLE, 5.0)
    stats = window.stats()["m"]
    assert stats.calls == 120
    assert stats.errors == 30
    assert stats.error_ratio == pytest.approx(0.25)
    assert stats.per_second == pytest.approx(2.0)


def test_the_rate_of_a_young_window_is_over_the_time_it_has_run() -> None:
    clock = Clock()
    window = Window(["m"], clock=clock)
    clock.now += 10
    for _ in range(50):
        window.add("m", Code.OK, 1.0)
    assert window.stats()["m"].per_second == pytest.approx(5.0)


def test_p50_and_p99_fall_in_the_bins_of_the_durations() -> None:
    window = Window(["m"], clock=Clock())
    for ms in [2.0] * 98 + [800.0] * 2:
        window.add("m", Code.OK, ms)
    stats = window.stats()["m"]
    assert stats.p50_ms is not None and stats.p99_ms is not None
    assert 2.0 <= stats.p50_ms < 2.0 * GROWTH
    assert 800.0 <= stats.p99_ms < 800.0 * GROWTH
    for ms in [1.0] * 99 + [3000.0]:  # now 1 call in 200 is slow: p99 is a fast one
        window.add("m", Code.OK, ms)
    assert window.stats()["m"].p99_ms == pytest.approx(bin_limit(bin_of(800.0)))


def test_bins_cover_every_duration_within_growth() -> None:
    assert bin_of(0.0) == 0 and bin_of(FLOOR_MS) == 0
    for ms in (0.11, 1.0, 7.3, 250.0, 30_000.0):
        index = bin_of(ms)
        assert bin_limit(index - 1) < ms <= bin_limit(index), ms
    assert bin_of(1e9) == BINS - 1


def test_calls_older_than_a_minute_expire() -> None:
    clock = Clock()
    window = Window(["m"], clock=clock)
    window.add("m", Code.OK, 3.0)
    clock.now += 30
    window.add("m", Code.INTERNAL, 3.0)
    assert window.stats()["m"].calls == 2
    clock.now += 30  # the first call's second is now 60 s ago
    stats = window.stats()["m"]
    assert (stats.calls, stats.errors) == (1, 1)
    clock.now += 30
    stats = window.stats()["m"]
    assert (stats.calls, stats.p50_ms, stats.error_ratio) == (0, None, 0.0)


def test_a_bucket_is_cleared_when_its_second_comes_round_again() -> None:
    clock = Clock()
    window = Window(["m"], clock=clock)
    for _ in range(5):
        window.add("m", Code.OK, 3.0)
    clock.now += 60  # same slot of the ring, a minute later
    window.add("m", Code.OK, 3.0)
    assert window.stats()["m"].calls == 1


def test_unknown_models_share_one_row_and_rows_are_bounded() -> None:
    window = Window(["known"], max_models=3, clock=Clock())
    window.add("made-up", Code.NOT_FOUND, 1.0)  # never succeeded: no row of its own
    window.add("made-up", Code.NOT_FOUND, 1.0)
    for name in ("a", "b", "c", "d"):
        window.add(name, Code.OK, 1.0)
    assert window.models == ["known", "a", "b"]
    stats = window.stats()
    assert list(stats) == ["known", "a", "b", OTHER]
    assert (stats[OTHER].calls, stats[OTHER].errors) == (4, 2)
    window.add("made-up", Code.OK, 1.0)  # full: still under OTHER
    assert window.models == ["known", "a", "b"]


def test_other_is_shown_only_with_calls() -> None:
    window = Window(["m"], clock=Clock())
    assert list(window.stats()) == ["m"]


def test_max_models_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_models"):
        Window(max_models=0)


def test_it_hears_of_calls_as_the_access_log_ends_them() -> None:
    window = Window(clock=Clock())
    metrics = Metrics()
    metrics.observers = (window.observe,)
    record = Record(Call("http", "Predict", 0.0), metrics)
    record.model = "m"
    record.done()
    unnamed = Record(Call("http", "GET /nowhere", 0.0), metrics)
    unnamed.done_with(Code.NOT_FOUND)  # named no model: not counted
    elsewhere = Record(Call("http", "Predict", 0.0))  # another gateway's (NO_METRICS)
    elsewhere.model = "m"
    elsewhere.done()  # not heard
    stats = window.stats()
    assert list(stats) == ["m"]
    assert stats["m"].calls == 1
