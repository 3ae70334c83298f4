"""Micro-batching: concurrent Predicts for one model version and signature gathered for up to
``max_delay`` and sent to TF Serving as one (tfgate.batch joins and cuts them).

One Batcher per model with a ``[models.NAME.batching]`` section. A call to a model with
nothing in flight and nothing waiting is sent at once, alone (padded, with allowed batch
sizes): waiting would only delay it, and the calls that come while it is out gather behind
it. Else a call joins the open batch of its kind (same version, signature, output filter,
input dtypes and trailing dimensions, and client when clients have shares); the batch is sent
when ``max_delay`` has passed since it opened, when it holds
``max_batch_size`` rows (or a call's rows or bytes would take it past that or past tfgate's
``max_message_bytes``), or at once when a member's deadline would end inside the window. A
batch of one is sent as the call itself, unchanged. The batch is one backend call: one slot of
the concurrency cap, one retry budget entry; a retry retries the whole batch.

Each member keeps its own deadline (it gets DEADLINE_EXCEEDED when its deadline passes, the
batch goes on for the others), and a member whose caller goes away leaves its batch: before
it is sent its rows are taken out; after, the others still get their answers (the backend
call is cancelled only when no member waits for it any more). TF Serving's error reaches every
member, each as its own exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tfgate import batch
from tfgate.calls import Call
from tfgate.config import ConfigError, model_tables, number_of
from tfgate.errors import DeadlineExceeded, ResourceExhausted, own_copy
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.tfs.tensorflow_serving.apis import model_pb2, predict_pb2

logger = logging.getLogger(__name__)

Send = Callable[[bytes, Call], Awaitable[predict_pb2.PredictResponse]]


# The most bytes of requests a batch joins, unless told: tfgate's default max_message_bytes.
MAX_BYTES: Final = 64 * 1024 * 1024
SETTINGS: Final = ("allowed_batch_sizes", "max_batch_size", "max_delay", "max_enqueued")


@dataclass(frozen=True)
class BatchingConfig:
    """``[models.NAME.batching]``: at most ``max_batch_size`` rows per batch, gathered for at
    most ``max_delay`` seconds (milliseconds in the file); ``allowed_batch_sizes`` (ascending,
    the last one ``max_batch_size``) pads a batch up to the next; at most ``max_enqueued``
    calls wait in open batches (more are refused RESOURCE_EXHAUSTED)."""

    max_batch_size: int = 32
    max_delay: float = 0.002
    allowed_batch_sizes: tuple[int, ...] = ()
    max_enqueued: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError("max_batch_size: must be at least 1")
        if not 0.0 < self.max_delay <= 1.0:  # NaN too
            raise ConfigError("max_delay: must be over 0 and at most 1000 ms")
        if self.max_enqueued < 1:
            raise ConfigError("max_enqueued: must be at least 1")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] < 1:
                raise ConfigError("allowed_batch_sizes: must be positive and ascending")
            if sizes[-1] != self.max_batch_size:
                raise ConfigError(
                    f"allowed_batch_sizes: the last ({sizes[-1]}) must equal "
                    f"max_batch_size ({self.max_batch_size})"
                )


def configs(path: str | None, data: Mapping[str, Any]) -> dict[str, BatchingConfig]:
    """The ``[models.NAME.batching]`` tables of the config file at ``path``, as parsed into
    ``data`` (tfgate.config.read_file); every setting has a default, so an empty table turns
    batching on. ConfigError names the file, the table and the setting."""
    found: dict[str, BatchingConfig] = {}
    for model, (table, where) in model_tables(path, data, "batching", SETTINGS).items():
        try:
            found[model] = _config(table)
        except ConfigError as exc:
            raise ConfigError(f"{where} {exc}") from None
    return found


def _config(table: Mapping[str, object]) -> BatchingConfig:
    given: dict[str, Any] = {}
    for name in ("max_batch_size", "max_enqueued"):
        if name in table:
            given[name] = number_of(table[name], name, whole=True)
    if "max_delay" in table:
        given["max_delay"] = number_of(table["max_delay"], "max_delay") / 1000
    sizes = table.get("allowed_batch_sizes")
    if sizes is not None:
        if not isinstance(sizes, list):
            raise ConfigError(f"allowed_batch_sizes: must be a list of batch sizes, got {sizes!r}")
        given["allowed_batch_sizes"] = tuple(
            number_of(size, "allowed_batch_sizes", whole=True) for size in sizes
        )
    return BatchingConfig(**given)


@dataclass(eq=False)
class _Waiting:
    member: batch.Member
    data: bytes
    call: Call
    answer: asyncio.Future[predict_pb2.PredictResponse]


Where = tuple[int, str, str, batch.Key]  # version, signature, client (or ""), the batch key


@dataclass(eq=False)
class _Batch:
    where: Where
    spec: model_pb2.ModelSpec
    members: list[_Waiting] = field(default_factory=list)
    rows: int = 0
    size: int = 0  # the members' serialized requests, in bytes, padding included
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None


class Batcher:
    """The batches of one model. ``predict`` is Backend.predict's shape, plus the version and
    signature the call resolved to."""

    def __init__(
        self,
        model: str,
        config: BatchingConfig,
        send: Send,
        max_elements: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics = NO_METRICS,
        max_bytes: int = MAX_BYTES,
        per_client: bool = False,
    ) -> None:
        """``max_bytes``: the most bytes of requests one batch joins (tfgate's
        max_message_bytes, which the backend channel will send). ``per_client``: calls of
        different clients never share a batch (with [limits] client_share, each client's
        calls take slots of its own share)."""
        self.model = model
        self.config = config
        self._send = send
        self._max_elements = max_elements
        self._clock = clock
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._per_client = per_client
        self._open: dict[Where, _Batch] = {}
        self.enqueued = 0  # calls in open batches, not yet sent
        self.unbatchable: str | None = None  # the output that showed the model reduces rows
        self.batches = 0  # batches sent (of two or more calls)
        self.batched_calls = 0  # calls sent in them
        self.in_flight = 0  # backend calls sent and not yet answered, batches or alone

    async def predict(
        self, data: bytes, call: Call, version: int, signature: str
    ) -> predict_pb2.PredictResponse:
        """TF Serving's answer to the serialized PredictRequest ``data``, alone or in a batch
        to ``version`` of the model, ``signature``."""
        if self.unbatchable is not None:
            return await self._direct(data, call)
        # Nothing of the model at TF Serving or waiting: waiting for company would only delay
        # this call; the calls that come while it is out gather behind it.
        idle = not self.in_flight and not self._open
        if idle and not self.config.allowed_batch_sizes:
            return await self._alone(data, call)
        request = predict_pb2.PredictRequest.FromString(data)
        member = batch.member_of(request)
        if member is None or member.rows > self.config.max_batch_size:
            return await self._direct(data, call)
        if self._padded_bytes(member.rows, len(data)) > self._max_bytes:
            return await self._direct(data, call)  # padded, it would not fit a message
        if self.enqueued >= self.config.max_enqueued:
            raise ResourceExhausted(
                f"model '{self.model}': {self.enqueued} calls wait for a batch, the most "
                f"[models.{self.model}.batching] max_enqueued allows"
            )
        loop = asyncio.get_running_loop()
        waiting = _Waiting(member, data, call, loop.create_future())
        now = self._clock()
        opened = self._join(waiting, version, signature, loop)
        if (
            idle  # padded to an allowed size, at once
            or opened.rows >= self.config.max_batch_size
            or call.deadline - now <= self.config.max_delay
        ):
            self._flush(opened)
        return await self._wait(waiting, opened)

    def _join(
        self, waiting: _Waiting, version: int, signature: str, loop: asyncio.AbstractEventLoop
    ) -> _Batch:
        client = waiting.call.client if self._per_client else ""
        where = (version, signature, client, batch.key_of(waiting.member.request))
        opened = self._open.get(where)
        rows = waiting.member.rows
        if opened is not None and (
            opened.rows + rows > self.config.max_batch_size
            or self._padded_bytes(opened.rows + rows, opened.size + len(waiting.data))
            > self._max_bytes
        ):
            self._flush(opened)
            opened = None
        if opened is None:
            spec = model_pb2.ModelSpec(name=self.model, signature_name=signature)
            spec.version.value = version
            opened = _Batch(where, spec)
            self._open[where] = opened
            opened.timer = loop.call_later(self.config.max_delay, self._flush, opened)
        opened.members.append(waiting)
        opened.rows += rows
        opened.size += len(waiting.data)
        self.enqueued += 1
        return opened

    def _padded_bytes(self, rows: int, size: int) -> int:
        """About the bytes a batch of ``rows`` rows in ``size`` bytes is sent as, padded."""
        return size * batch.padded_size(rows, self.config.allowed_batch_sizes) // rows

    def _close(self, opened: _Batch) -> None:
        """``opened`` takes no more calls."""
        if self._open.get(opened.where) is opened:
            del self._open[opened.where]
        if opened.timer is not None:
            opened.timer.cancel()

    def _flush(self, opened: _Batch) -> None:
        """Sends ``opened`` (once; a timer that fires after the batch has gone does nothing)."""
        if opened.task is not None or not opened.members:
            return
        self._close(opened)
        self.enqueued -= len(opened.members)
        opened.task = asyncio.get_running_loop().create_task(self._run(opened))

    async def _alone(self, data: bytes, call: Call) -> predict_pb2.PredictResponse:
        call.batch = 1
        self._metrics.batch_sent(self.model, 1)
        return await self._direct(data, call)

    async def _direct(self, data: bytes, call: Call) -> predict_pb2.PredictResponse:
        """``data`` sent as it is, not in a batch."""
        self.in_flight += 1
        try:
            return await self._send(data, call)
        finally:
            self.in_flight -= 1

    async def _run(self, opened: _Batch) -> None:
        members = list(opened.members)
        for waiting in members:
            waiting.call.batch = len(members)
        self._metrics.batch_sent(self.model, len(members))
        self.in_flight += 1
        try:
            if len(members) == 1 and not self.config.allowed_batch_sizes:
                only = members[0]
                answers = [await self._send(only.data, only.call)]
            else:
                answers = await self._send_batch(opened, members)
        except Exception as exc:  # every member gets it, each its own copy
            for waiting in members:
                if not waiting.answer.done():
                    waiting.answer.set_exception(own_copy(exc))
            return
        except BaseException:  # cancelled (every member gone), or the process ends
            for waiting in members:
                if not waiting.answer.done():
                    waiting.answer.cancel()
            raise
        finally:
            self.in_flight -= 1
        for waiting, answer in zip(members, answers, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(answer)

    async def _send_batch(
        self, opened: _Batch, members: list[_Waiting]
    ) -> list[predict_pb2.PredictResponse]:
        data, size = batch.merge(
            [w.member for w in members], opened.spec, self.config.allowed_batch_sizes
        )
        first = members[0].call
        call = Call(
            first.front,
            first.method,
            max(w.call.deadline for w in members),
            peer=first.peer,
            request_id=f"{first.request_id}+{len(members) - 1}",
            credentials=first.credentials,
            client=first.client,
            trace=first.trace,  # the batch's attempts are traced in its first member's trace
        )
        try:
            answer = await self._send(data, call)
        finally:
            for waiting in members:
                waiting.call.attempts += call.attempts
        self.batches += 1
        self.batched_calls += len(members)
        rows = [w.member.rows for w in members]
        try:
            return batch.split(answer, rows, size, self._max_elements * len(members))
        except batch.Unsplittable as exc:
            if self.unbatchable is None:
                self.unbatchable = exc.output
                self._metrics.unbatchable(self.model)
                logger.warning(
                    "model '%s' is not batchable: %s; its calls are sent one by one from now on",
                    self.model,
                    exc.message,
                )
            raise

    async def _wait(self, waiting: _Waiting, opened: _Batch) -> predict_pb2.PredictResponse:
        left = waiting.call.deadline - self._clock()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await asyncio.shield(waiting.answer)
        except TimeoutError:
            stage = (
                f"waiting for a batch of model '{self.model}'"
                if opened.task is None
                else f"while its batch of model '{self.model}' was at TF Serving"
            )
            self._leave(waiting, opened)
            raise DeadlineExceeded(f"deadline exceeded {stage}") from None
        except asyncio.CancelledError:
            self._leave(waiting, opened)
            raise

    def _leave(self, waiting: _Waiting, opened: _Batch) -> None:
        """``waiting``'s caller is gone: out of its batch if not yet sent; else, if nobody
        waits for the batch any more, the backend call is cancelled."""
        if opened.task is None:
            with contextlib.suppress(ValueError):
                opened.members.remove(waiting)
                opened.rows -= waiting.member.rows
                opened.size -= len(waiting.data)
                self.enqueued -= 1
            if not opened.members:
                self._close(opened)
            return
        if not waiting.answer.done():
            waiting.answer.cancel()
        if all(w.answer.done() for w in opened.members) and not opened.task.done():
            opened.task.cancel()


def batchers(
    configured: Mapping[str, BatchingConfig],
    send: Send,
    max_elements: int,
    max_bytes: int,
    metrics: Metrics,
    *,
    per_client: bool = False,
) -> dict[str, Batcher]:
    """A Batcher for each model with a ``[models.NAME.batching]`` table."""
    return {
        model: Batcher(
            model,
            config,
            send,
            max_elements,
            metrics=metrics,
            max_bytes=max_bytes,
            per_client=per_client,
        )
        for model, config in configured.items()
    }
