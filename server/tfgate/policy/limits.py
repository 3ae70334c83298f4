"""Rate limits: token buckets for all calls together, per client, and per client and model.

A bucket holds up to ``burst`` tokens and gains ``rate`` of them per second; a call takes one
token from every bucket that applies to it, or, when one of them has none, is refused with
RateLimited saying how long until it would have one, and takes nothing. Buckets refill lazily,
from the clock, when a call looks at them: no task or timer per bucket, O(1) per call.

Which buckets a call meets: the global one ([limits] rate), its client's (the client's own
[limits.clients.NAME] rate, else [limits] client_rate), and the first of its client's model
patterns that matches the model (one bucket per pattern, shared by the models it matches).
Buckets exist only for what the config names: a client without a [clients.NAME] or
[limits.clients.NAME] section (and "-", the caller when auth is off) shares one bucket with
every other such client, so that no caller can make tfgate grow a bucket. No I/O here.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable
from typing import Final

from tfgate.errors import RateLimited
from tfgate.policy.limits_config import LimitsConfig, Rate

Clock = Callable[[], float]
_WHOLE: Final = 1.0 - 1e-9


class TokenBucket:
    __slots__ = ("burst", "key", "rate", "scope", "stamp", "tokens")

    def __init__(self, limit: Rate, scope: str, key: str, now: float) -> None:
        self.rate = limit.rate
        self.burst = limit.burst
        self.scope = scope  # what the limit is for, as a refusal names it
        self.key = key  # a name unique among the buckets, the same in every replica
        self.tokens = limit.burst
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is), refilling first."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.stamp = now
        # Within float rounding of a whole token is one: a caller retrying after exactly the
        # wait it was told must find it.
        return 0.0 if self.tokens >= _WHOLE else (1.0 - self.tokens) / self.rate

    def refusal(self, wait: float) -> RateLimited:
        return RateLimited(
            f"{self.scope} of {self.rate:g}/s (burst {self.burst:g}) reached; "
            f"retry after {wait:.3g} s",
            wait,
        )


class _Client:
    """The buckets of one client (or of every client the config does not name)."""

    __slots__ = ("bucket", "models")

    def __init__(
        self, bucket: TokenBucket | None, models: list[tuple[re.Pattern[str], TokenBucket]]
    ) -> None:
        self.bucket = bucket
        self.models = models

    def model_bucket(self, model: str) -> TokenBucket | None:
        for pattern, bucket in self.models:
            if pattern.match(model) is not None:
                return bucket
        return None


OTHERS: Final = 'clients the config does not name (one bucket for all, "-" among them)'


class RateLimits:
    def __init__(
        self, config: LimitsConfig, clients: Iterable[str] = (), clock: Clock = time.monotonic
    ) -> None:
        """The buckets ``config`` describes; ``clients`` are the further client names the
        config knows ([clients.NAME]), each with its own bucket of the default client rate."""
        self._clock = clock
        now = clock()
        self._global = (
            None
            if config.rate is None
            else TokenBucket(config.rate, "global rate limit", "global", now)
        )
        self._clients: dict[str, _Client] = {}
        for name in {*clients, *config.clients}:
            own = config.clients.get(name)
            limit = own.rate if own is not None and own.rate is not None else config.client
            scope = f'rate limit for client "{name}"'
            key = f"client:{len(name)}:{name}"  # the length: no name can pass for another's
            bucket = None if limit is None else TokenBucket(limit, scope, key, now)
            models = [
                (
                    re.compile(fnmatch.translate(pattern)),
                    TokenBucket(
                        rate,
                        f'rate limit for client "{name}" on models "{pattern}"',
                        f"models:{len(name)}:{name}:{pattern}",
                        now,
                    ),
                )
                for pattern, rate in (own.models if own is not None else ())
            ]
            self._clients[name] = _Client(bucket, models)
        shared = (
            None
            if config.client is None
            else TokenBucket(config.client, f"rate limit for {OTHERS}", "others", now)
        )
        self._others = _Client(shared, [])

    @property
    def buckets(self) -> int:
        """How many buckets there are: fixed by the config, whoever calls."""
        count = (self._global is not None) + (self._others.bucket is not None)
        for client in self._clients.values():
            count += (client.bucket is not None) + len(client.models)
        return count

    def applying(self, client: str, model: str) -> tuple[TokenBucket | None, ...]:
        """The buckets a call of ``client`` on ``model`` takes from (None: no such limit)."""
        entry = self._clients.get(client, self._others)
        model_bucket = entry.model_bucket(model) if entry.models else None
        return (model_bucket, entry.bucket, self._global)

    def check(self, client: str, model: str) -> None:
        """Takes a token for a call of ``client`` on ``model`` from each bucket that applies,
        or raises RateLimited for the one whose token is furthest away (taking none)."""
        now = self._clock()
        buckets = self.applying(client, model)
        worst: TokenBucket | None = None
        longest = 0.0
        for bucket in buckets:
            if bucket is not None:
                wait = bucket.wait(now)
                if wait > longest:
                    worst, longest = bucket, wait
        if worst is not None:
            raise worst.refusal(longest)
        for bucket in buckets:
            if bucket is not None:
                bucket.tokens -= 1.0
