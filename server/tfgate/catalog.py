"""The signatures tfgate validates against, read from TF Serving and cached.

A specific version's signatures never change, so they are kept until TF Serving says the
version is gone. What "latest" or a label resolves to can change at any time: such entries are
re-read after ``ttl`` seconds, and at once when a Predict is answered by another version than
the one cached. Concurrent misses for one key share a single GetModelMetadata call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tfgate import signatures, translate
from tfgate.calls import Call
from tfgate.signatures import ModelMetadata
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2
from tfgate.translate import Selector

Fetch = Callable[
    [get_model_metadata_pb2.GetModelMetadataRequest, Call],
    Awaitable[get_model_metadata_pb2.GetModelMetadataResponse],
]


@dataclass
class _Entry:
    meta: ModelMetadata
    expires: float  # time.monotonic(); inf for a specific version


class Catalog:
    def __init__(self, fetch: Fetch, ttl: float) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._entries: dict[Selector, _Entry] = {}
        self._pending: dict[Selector, asyncio.Future[ModelMetadata]] = {}

    def cached(self, sel: Selector) -> ModelMetadata | None:
        """The metadata for ``sel`` if it is cached and fresh: no await on the common path."""
        entry = self._entries.get(sel)
        if entry is not None and entry.expires > time.monotonic():
            return entry.meta
        return None

    async def metadata(self, sel: Selector, call: Call) -> ModelMetadata:
        found = self.cached(sel)
        if found is not None:
            return found
        task = self._pending.get(sel)
        if task is None:
            # A task of its own, so that a caller who gives up does not fail the others.
            task = asyncio.ensure_future(self._load(sel, call))
            self._pending[sel] = task
            task.add_done_callback(lambda done: self._settled(sel, done))
        return await asyncio.shield(task)

    def _settled(self, sel: Selector, task: asyncio.Future[ModelMetadata]) -> None:
        self._pending.pop(sel, None)
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody waited for is not reported as lost

    async def _load(self, sel: Selector, call: Call) -> ModelMetadata:
        response = await self._fetch(translate.metadata_request(sel), call)
        meta = signatures.from_metadata(response)
        expires = float("inf") if sel.version else time.monotonic() + self._ttl
        self._entries[sel] = _Entry(meta, expires)
        return meta

    def answered(self, sel: Selector, version: int) -> None:
        """A Predict for ``sel`` was answered by ``version``: forget a stale resolution."""
        entry = self._entries.get(sel)
        if entry is not None and version and entry.meta.version != version:
            del self._entries[sel]

    def forget(self, model: str) -> None:
        """TF Serving no longer knows something of ``model``: re-read all of it."""
        for sel in [s for s in self._entries if s.model == model]:
            del self._entries[sel]

    def models(self) -> list[str]:
        """The models TF Serving has described to tfgate, in the order it first did."""
        return list(dict.fromkeys(sel.model for sel in self._entries))

    def labels(self, model: str) -> dict[str, int]:
        """The labels of ``model`` callers have named, and the version each last resolved to
        (TF Serving's API cannot list them)."""
        entries = self._entries.items()
        return {s.label: e.meta.version for s, e in entries if s.model == model and s.label}
