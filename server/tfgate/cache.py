"""The response cache: a model's recent Predict answers, reused for identical requests.

Opt-in per model, in the config file::

    [models.iris.cache]
    ttl = 30               # seconds an answer is reused
    max_bytes = 67108864   # the most memory its answers take, LRU by bytes

The key is the model, the version the catalog resolved the request to (so a label, a number or
nothing naming one version share entries, and a new version never reuses an old answer), the
signature, the outputs asked for (sorted) and the request's tensors after preprocessing in the
form TF Serving receives them (dtype, shape and values as bytes), sorted by input name: input
order and the JSON or protobuf encoding a caller chose do not matter, nor do ``floats`` and
``doubles`` that cast to the same values. The dict holds a 32-byte BLAKE2b digest of the key;
the entry keeps the full key, compared on every hit, so that two keys of one digest can never
answer each other's callers.

Only answers that passed every check are kept. Identical concurrent misses share one backend
call (single flight); its failure reaches each caller as an exception of its own. A caller who
gives up does not stop the call for the others; when all have given up, it is cancelled. A
caller's ``cache-control: no-cache`` skips the look-up, calls the backend and keeps the fresh
answer.

Pure but for the event loop: no I/O. The core (tfgate.inference) builds the key from its plan
and prepared request and hands the cache the call to make on a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tfgate import wire
from tfgate.calls import Call
from tfgate.config import ConfigError, model_tables, number_of
from tfgate.domain import Answer
from tfgate.errors import DeadlineExceeded, own_copy
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.plans.plan import Plan, Prepared
from tfgate.tensors import FromBackend

Digest = Callable[[bytes], bytes]
Clock = Callable[[], float]

# The PredictRequest field of each input (a map entry: name, TensorProto).
_INPUTS: Final = 2
# Bytes counted for an entry besides its key and outputs (its objects and the dict's slot).
ENTRY_OVERHEAD: Final = 512
SETTINGS: Final = ("max_bytes", "ttl")


def blake2b(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=32).digest()


@dataclass(frozen=True)
class CacheConfig:
    """A ``[models.NAME.cache]`` table: answers kept ``ttl`` seconds, in ``max_bytes`` at most."""

    ttl: float
    max_bytes: int

    def __post_init__(self) -> None:
        if not self.ttl > 0 or not math.isfinite(self.ttl):
            raise ConfigError(f"ttl: must be a positive number of seconds, got {self.ttl!r}")
        if self.max_bytes <= 0:
            raise ConfigError(f"max_bytes: must be a positive number, got {self.max_bytes}")


def configs(path: str | None, data: Mapping[str, Any]) -> dict[str, CacheConfig]:
    """The ``[models.NAME.cache]`` tables of the config file at ``path``, as parsed into ``data``
    (tfgate.config.read_file); ConfigError names the file, the table and the setting."""
    found: dict[str, CacheConfig] = {}
    for model, (table, where) in model_tables(path, data, "cache", SETTINGS).items():
        for name in SETTINGS:
            if name not in table:
                raise ConfigError(f"{where} {name}: required ({' and '.join(SETTINGS)} are)")
        ttl = number_of(table["ttl"], f"{where} ttl")
        max_bytes = number_of(table["max_bytes"], f"{where} max_bytes", whole=True)
        try:
            found[model] = CacheConfig(float(ttl), int(max_bytes))
        except ConfigError as exc:
            raise ConfigError(f"{where} {exc}") from None
    return found


def key_of(plan: Plan, prepared: Prepared) -> bytes:
    """The canonical key of a prepared request to ``plan``'s model version and signature.

    Walks the request's fields, not its values: each input's map entry (its name and its
    TensorProto, as written once by tfgate.tensors) is taken as bytes and the entries sorted.
    The request's model spec (the caller's selector) and output filter are left out: the plan's
    resolved version and the sorted domain outputs asked for stand for them.
    """
    wanted = sorted(prepared.wanted) if prepared.wanted is not None else None
    parts = [repr((plan.model, plan.version, plan.signature, wanted)).encode()]
    entries = _entries(prepared.request.data)
    if len(entries) > 1:
        entries.sort()
    for entry in entries:  # each entry after its length: no two lists of entries join alike
        parts += (len(entry).to_bytes(8, "little"), entry)
    return b"\0".join(parts)


def _entries(data: bytes) -> list[bytes]:
    """The input map entries of PredictRequest bytes tfgate.translate wrote: every field is
    length-delimited (model spec, inputs, output filter), so only their keys and lengths are
    read (faster than tfgate.wire.fields' general walk, which the key's few fields do not need)."""
    found: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        if tag & 7 != 2 or tag >= 0x80:  # not a length-delimited field of number 1 to 15
            raise ValueError(f"unexpected field tag {tag}")
        size, pos = wire.read_varint(data, pos + 1)
        if tag >> 3 == _INPUTS:
            found.append(data[pos : pos + size])
        pos += size
    return found


def size_of(key: bytes, answer: Answer) -> int:
    """The bytes an entry is counted as: its key, its outputs' and a fixed overhead."""
    size = ENTRY_OVERHEAD + len(key)
    for _, output in answer.outputs:
        if isinstance(output, FromBackend):
            size += output.proto.ByteSize()
        else:
            values = output.values
            size += values.nbytes
            if values.dtype == object:
                size += sum(len(v) for v in values.reshape(-1).tolist())
    return size


@dataclass(slots=True)
class _Entry:
    key: bytes
    answer: Answer
    size: int
    expires: float


class _Flight:
    """One backend call for identical concurrent misses, and how many still wait for it."""

    __slots__ = ("key", "task", "waiters")

    def __init__(self, key: bytes, task: asyncio.Future[Answer]) -> None:
        self.key = key
        self.task = task
        self.waiters = 0


class ResponseCache:
    """One model's cache (see the module docstring). ``clock`` and ``digest`` are for tests."""

    def __init__(
        self,
        model: str,
        config: CacheConfig,
        metrics: Metrics = NO_METRICS,
        *,
        clock: Clock = time.monotonic,
        digest: Digest = blake2b,
    ) -> None:
        self.model = model
        self.config = config
        self.bytes = 0
        self.evictions = 0
        self._metrics = metrics
        self._clock = clock
        self._digest = digest
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._flights: dict[bytes, _Flight] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(
        self, key: bytes, version: int, call: Call, fetch: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """The kept answer for ``key``, else ``fetch``'s (kept when it came from ``version``,
        the one the key names). Sets ``call.cache`` to "hit", "miss" or "bypass"."""
        digest = self._digest(key)
        if call.no_cache:
            call.cache = "bypass"
            self._metrics.cache_missed(self.model)
            fresh = await fetch()
            self._keep(digest, key, version, fresh)
            return fresh
        entry = self._entries.get(digest)
        if entry is not None and entry.key == key:
            if entry.expires > self._clock():
                self._entries.move_to_end(digest)
                call.cache = "hit"
                self._metrics.cache_hit(self.model)
                return entry.answer
            self._drop(digest)
        call.cache = "miss"
        self._metrics.cache_missed(self.model)
        flight = self._flights.get(digest)
        if flight is None or flight.key != key:
            flight = self._fly(digest, key, version, fetch)
        return await self._wait(digest, flight, call)

    def _fly(
        self, digest: bytes, key: bytes, version: int, fetch: Callable[[], Awaitable[Answer]]
    ) -> _Flight:
        async def fill() -> Answer:
            fresh = await fetch()
            self._keep(digest, key, version, fresh)
            return fresh

        # A task of its own, so that the caller who started it may leave without stopping it.
        flight = _Flight(key, asyncio.ensure_future(fill()))
        self._flights[digest] = flight
        flight.task.add_done_callback(lambda task: self._landed(digest, flight))
        return flight

    def _landed(self, digest: bytes, flight: _Flight) -> None:
        if self._flights.get(digest) is flight:
            del self._flights[digest]
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved: a failure every caller left is not "lost"

    async def _wait(self, digest: bytes, flight: _Flight, call: Call) -> Answer:
        """The flight's answer, or its failure as this caller's own exception; DeadlineExceeded
        when the caller's deadline ends first (the call goes on for the others)."""
        flight.waiters += 1
        try:
            async with asyncio.timeout(max(call.deadline - time.monotonic(), 0.0)) as limit:
                return await asyncio.shield(flight.task)
        except TimeoutError:
            if not limit.expired():
                raise own_copy(flight.task.exception() or TimeoutError()) from None
            raise DeadlineExceeded(
                "the deadline ran out while waiting for the answer to an identical request"
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise own_copy(exc) from None
        finally:
            flight.waiters -= 1
            if not flight.waiters and not flight.task.done():
                # The last caller waiting for it is gone; the next one starts a call anew.
                if self._flights.get(digest) is flight:
                    del self._flights[digest]
                flight.task.cancel()

    def _keep(self, digest: bytes, key: bytes, version: int, answer: Answer) -> None:
        # An answer from another version than the key's (the catalog's view was stale) is
        # returned but not kept: it would answer for a version that did not make it.
        if answer.version and answer.version != version:
            return
        size = size_of(key, answer)
        if size > self.config.max_bytes:
            return
        if digest in self._entries:
            self._drop(digest)
        self._entries[digest] = _Entry(key, answer, size, self._clock() + self.config.ttl)
        self.bytes += size
        evicted = 0
        while self.bytes > self.config.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= oldest.size
            evicted += 1
        if evicted:
            self.evictions += evicted
            self._metrics.cache_evicted(self.model, evicted)
        self._metrics.cache_bytes(self.model, self.bytes)

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest)
        self.bytes -= entry.size
        self._metrics.cache_bytes(self.model, self.bytes)


def caches(configured: Mapping[str, CacheConfig], metrics: Metrics) -> dict[str, ResponseCache]:
    """A ResponseCache for each model with a ``[models.NAME.cache]`` table."""
    return {model: ResponseCache(model, config, metrics) for model, config in configured.items()}
