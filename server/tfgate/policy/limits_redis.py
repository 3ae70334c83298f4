"""Rate limits shared by every tfgate using one Redis (``[limits] redis``); imported only then.

Each bucket of tfgate.policy.limits is a Redis hash (tokens, time of the last refill) under a
key named by the config, so that every replica with the same config meets the same buckets.
One Lua script refills and takes a call's tokens from all its buckets at once, on Redis's own
clock (no skew between replicas): one round trip per call (EVALSHA; the script is sent again
only if Redis has forgotten it). A bucket's key expires when it would be full anyway.

Redis must never fail a call: when it does not answer within ``redis_timeout`` or answers with
an error, the call is counted by the local buckets instead, a WARNING says so once, and Redis
is tried again once a second (one call's worth) until it answers, which is logged once too.
While Redis is away each replica limits on its own, so the replicas together may let through
up to their number times the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final
from urllib.parse import urlsplit

import redis.asyncio
from redis.exceptions import RedisError

from tfgate.policy.limits import RateLimits, TokenBucket

logger = logging.getLogger(__name__)

# One hash tag for every key: a Redis Cluster keeps them in one slot, as a script needs.
PREFIX: Final = "tfgate:{limits}:"
_RETRY_EVERY: Final = 1.0  # seconds between tries of a Redis that did not answer

# KEYS: the buckets; ARGV: rate and burst of each. Returns {0} when every bucket had a token
# (and takes one from each), else {i, wait}: bucket i is the one furthest from a token, wait
# seconds away, and nothing is taken.
_TAKE: Final = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local levels = {}
local worst, longest = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 's')
  local level = tonumber(state[1])
  if level == nil then
    level = burst
  else
    level = math.min(burst, level + math.max(0, now - tonumber(state[2])) * rate)
  end
  levels[i] = level
  if level < 1 - 1e-9 and (1 - level) / rate > longest then
    worst, longest = i, (1 - level) / rate
  end
end
if worst > 0 then
  return {worst, tostring(longest)}
end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', tostring(levels[i] - 1), 's', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {0}
"""


def where(url: str) -> str:
    """A Redis URL as a log line may show it: no user name or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


class SharedLimits:
    def __init__(self, url: str, timeout: float, local: RateLimits) -> None:
        self.local = local
        self.timeout = timeout
        self.where = where(url)
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._take = self._redis.register_script(_TAKE)
        self.shared = True  # whether Redis answered the last time it was asked
        self._retry_at = 0.0

    async def check(self, client: str, model: str) -> None:
        """RateLimits.check, on the buckets in Redis; on the local ones while Redis is away."""
        buckets = [b for b in self.local.applying(client, model) if b is not None]
        if not buckets:
            return
        if not self.shared:
            now = time.monotonic()
            if now < self._retry_at:
                self.local.check(client, model)
                return
            self._retry_at = now + _RETRY_EVERY  # this call tries; the next ones stay local
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._take(
                    keys=[PREFIX + b.key for b in buckets],
                    args=[x for b in buckets for x in (repr(b.rate), repr(b.burst))],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost(exc)
            self.local.check(client, model)
            return
        if not self.shared:
            self.shared = True
            logger.warning("Redis at %s answers again: rate limits are shared", self.where)
        refused = int(answer[0])
        if refused:
            bucket: TokenBucket = buckets[refused - 1]
            raise bucket.refusal(float(answer[1]))

    def _lost(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + _RETRY_EVERY
        if self.shared:
            self.shared = False
            logger.warning(
                "Redis at %s does not answer (%s): rate limits are counted by each tfgate on "
                "its own until it does",
                self.where,
                type(exc).__name__,
            )

    async def close(self) -> None:
        await self._redis.aclose()
