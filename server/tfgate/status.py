"""What the status page shows of the calls: per model, the last minute, counted as calls end.

Every call that names a model is counted when its access-log Record ends (``Window.observe``,
one of tfgate.calls' observers): in one-second buckets, 60 of them in a ring per model, each
holding the calls, the failures (any code but OK) and a histogram of durations on a fixed
log scale (``GROWTH`` apart, so a percentile is known to within 25%). A call costs one
logarithm and a few additions; a bucket is cleared when its second comes round again.

Rows are bounded: a model gets one only once a call to it has succeeded (so TF Serving serves
it) or when it is named in the settings (``known``), and at most ``max_models`` of them; every
other call is counted under ``OTHER``. A caller naming made-up models cannot add rows.
No transport and no clock of its own: ``clock`` is time.monotonic unless a test gives another.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from tfgate.calls import Record
from tfgate.errors import Code

# The row of calls to models without one of their own.
OTHER: Final = "(other)"
SECONDS: Final = 60
# Duration bins: the first holds calls up to FLOOR_MS, each next one up to GROWTH times more;
# the last holds everything longer (0.1 ms * 1.25**63 is about 127 s).
FLOOR_MS: Final = 0.1
GROWTH: Final = 1.25
BINS: Final = 64
_LOG_GROWTH: Final = math.log(GROWTH)


def bin_of(ms: float) -> int:
    """The histogram bin of a call that took ``ms`` milliseconds."""
    if ms <= FLOOR_MS:
        return 0
    return min(math.ceil(math.log(ms / FLOOR_MS) / _LOG_GROWTH - 1e-9), BINS - 1)


def bin_limit(index: int) -> float:
    """The longest duration (ms) bin ``index`` holds; for the last, open-ended one, its lower
    bound."""
    return FLOOR_MS * GROWTH ** min(index, BINS - 2)


@dataclass(frozen=True)
class ModelStats:
    """One model's calls over the last minute (or since start, if shorter)."""

    calls: int
    errors: int
    per_second: float
    p50_ms: float | None  # None without calls; the upper bound of the bin it falls in
    p99_ms: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


class _Ring:
    __slots__ = ("calls", "errors", "hist", "seconds")

    def __init__(self) -> None:
        self.seconds = [-1] * SECONDS
        self.calls = [0] * SECONDS
        self.errors = [0] * SECONDS
        self.hist = [[0] * BINS for _ in range(SECONDS)]

    def add(self, second: int, failed: bool, ms: float) -> None:
        slot = second % SECONDS
        if self.seconds[slot] != second:
            self.seconds[slot] = second
            self.calls[slot] = self.errors[slot] = 0
            self.hist[slot] = [0] * BINS
        self.calls[slot] += 1
        self.errors[slot] += failed
        self.hist[slot][bin_of(ms)] += 1

    def stats(self, now: int, span: float) -> ModelStats:
        calls = errors = 0
        hist = [0] * BINS
        for slot in range(SECONDS):
            if now - SECONDS < self.seconds[slot] <= now:
                calls += self.calls[slot]
                errors += self.errors[slot]
                for index, count in enumerate(self.hist[slot]):
                    hist[index] += count
        return ModelStats(
            calls, errors, calls / span, _quantile(hist, calls, 0.5), _quantile(hist, calls, 0.99)
        )


def _quantile(hist: list[int], total: int, q: float) -> float | None:
    if not total:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return bin_limit(index)
    return bin_limit(BINS - 1)  # pragma: no cover - the counts add up to total


class Window:
    """Per-model calls, failures and durations over the last ``SECONDS`` seconds."""

    def __init__(
        self,
        known: Iterable[str] = (),
        max_models: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_models: must be at least 1, got {max_models}")
        self._clock = clock
        self._since = clock()
        self._max = max_models
        self._rings: dict[str, _Ring] = {OTHER: _Ring()}
        for name in known:
            self._row(name)

    def _row(self, model: str) -> _Ring | None:
        if len(self._rings) > self._max:  # OTHER is not one of the max_models
            return None
        ring = self._rings[model] = _Ring()
        return ring

    def add(self, model: str, code: Code, ms: float) -> None:
        ring = self._rings.get(model)
        if ring is None:
            ring = (self._row(model) if code is Code.OK else None) or self._rings[OTHER]
        ring.add(int(self._clock()), code is not Code.OK, ms)

    def observe(self, record: Record) -> None:
        """A finished call, as tfgate.calls hands it to its observers."""
        if record.model != "-":  # a call refused before it named a model
            self.add(record.model, record.code, record.ms)

    @property
    def models(self) -> list[str]:
        """The models with a row of their own, in the order they got it."""
        return [name for name in self._rings if name != OTHER]

    def stats(self) -> dict[str, ModelStats]:
        """Every row's last minute, ``OTHER`` last (only if it has calls)."""
        now = self._clock()
        span = max(1.0, min(float(SECONDS), now - self._since))
        second = int(now)
        out = {name: ring.stats(second, span) for name, ring in self._rings.items()}
        other = out.pop(OTHER)
        if other.calls:
            out[OTHER] = other
        return out
