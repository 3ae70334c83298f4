"""The TF Serving client: retries, the concurrency cap and deadlines live here and nowhere else.

Every call carries an absolute deadline (``time.monotonic()`` seconds): the caller's, or the
configured default. Waiting for a slot, each attempt and each back-off sleep fit inside it, so
no retry outlives the caller. Failures leave this module as tfgate.errors exceptions, never as
grpc's.

An attempt is sent only on a connection: while TF Serving cannot be reached (refused, or still
connecting after a restart) the call waits, holding its slot, until the channel is READY, within
its deadline and at most ``wait_for_backend`` seconds from when the backend was first found down.
It is then sent. Should the connection go between the two, grpc answers at once UNAVAILABLE
"failed to connect to all addresses" (``_never_sent``): the call goes back to waiting, on any
replica. (Sending with grpc's wait-for-ready instead would hold it for a replica that may never
return, up to the deadline.) A call that was never sent costs TF Serving nothing, so the wait
uses neither ``max_attempts`` nor the retry budget: every other UNAVAILABLE came on a connection
that was up when the call was sent (e.g. "Socket closed" when TF Serving died with the call in
flight), and only those are retried.

Every attempt carries the call's id as ``x-request-id`` metadata, and is counted in
``call.attempts`` for the access log (a call never sent is not an attempt), and by replica and
code in the metrics (tfgate.metrics), like each retry. A call with a trace (tfgate.tracing)
has a span per attempt, whose ``traceparent`` the attempt carries too.

Replicas: ``backend`` may list several TF Serving replicas, each with its own channel; calls
go round-robin over those not known to be down, and a retry goes to the next replica. A
``dns:///`` target is one channel whose addresses grpc balances round-robin.

With ``backend_tls_ca`` set, every channel is TLS (tfgate.tls.channel_credentials); a
handshake that fails (wrong CA, wrong name) leaves the channel unconnected, so calls wait for it
like for a TF Serving that is down and then fail with UNAVAILABLE naming the backend.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from tfgate import tls
from tfgate.backends.admission import FairLimiter, Limiter
from tfgate.backends.budget import budget_for
from tfgate.calls import REQUEST_ID, Call
from tfgate.config import Config
from tfgate.errors import BadBackendAnswer, Code, DeadlineExceeded, Unavailable, from_backend
from tfgate.metrics import NO_METRICS, Metrics
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

logger = logging.getLogger(__name__)

_Resp = TypeVar("_Resp")

# Codes that mean "nobody answered" for the health probe; any other answer proves TF Serving is up.
_DOWN: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_AVAILABLE: Final = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_PREDICT: Final = "/tensorflow.serving.PredictionService/Predict"
_READY: Final = grpc.ChannelConnectivity.READY


# What grpc answers, at once, for a call it could not send for want of a connection.
_NO_CONNECTION: Final = "failed to connect to all addresses"
# The pause before a call grpc could not send looks for a connection again.
_RESEND_PAUSE: Final = 0.01


def _never_sent(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.UNAVAILABLE and _NO_CONNECTION in (exc.details() or "")


def _failed(exc: grpc.aio.AioRpcError) -> Exception:
    return from_backend(Code[exc.code().name], exc.details())


def _parsed(answer: _Resp | None, model: str, kind: str) -> _Resp:
    """An answer grpc parsed; None where it could not (grpc logs why, and answers None)."""
    if answer is None:
        raise BadBackendAnswer(f"TF Serving's answer for model '{model}' is not a valid {kind}")
    return answer


def channel_options(config: Config) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # gRPC's own transparent retries would bypass the policy in tfgate.backends.retry.
        ("grpc.enable_retries", 0),
        ("grpc.keepalive_time_ms", int(config.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # Reconnect to a restarted replica quickly rather than after grpc's default 20 s cap.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if config.backend.startswith("dns:"):
        options.append(("grpc.lb_policy_name", "round_robin"))
    return options + tls.channel_options(config)


class Replica:
    def __init__(
        self,
        target: str,
        options: list[tuple[str, Any]],
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.up = False  # whether it answered the last health probe (Upstream.probe)
        self._raw: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    def raw(self, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """The method at ``path`` with bytes in and out: nothing parsed, nothing re-encoded."""
        found = self._raw.get(path)
        if found is None:
            found = self._raw[path] = self.channel.unary_unary(path)
        return found

    def ready(self) -> bool:
        return self.channel.get_state(try_to_connect=True) == _READY

    async def ready_by(self, give_up: float) -> bool:
        """Whether the channel is READY by ``give_up`` (time.monotonic()), asking it to connect."""
        state = self.channel.get_state(try_to_connect=True)
        while state != _READY:
            remaining = give_up - time.monotonic()
            if remaining <= 0 or state == grpc.ChannelConnectivity.SHUTDOWN:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self.channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True

    def looks_down(self) -> bool:
        state = self.channel.get_state(try_to_connect=False)
        return state in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        )


class Upstream:
    """PredictionService and ModelService calls to TF Serving: a tfgate.backends.base.Backend."""

    def __init__(self, config: Config, metrics: Metrics = NO_METRICS) -> None:
        self.metrics = metrics
        self._policy = config.retry
        self._retryable = frozenset(grpc.StatusCode[c] for c in config.retry.retryable_codes)
        self.budget = budget_for(config.retry)
        share = config.limits.client_share
        self.limiter = (
            Limiter(config.max_concurrency, config.max_queue, config.max_queue_wait)
            if share >= 1.0
            else FairLimiter(config.max_concurrency, config.max_queue, config.max_queue_wait, share)
        )
        self.wait_for_backend = config.wait_for_backend
        # When a call first found no replica connected, since one was last seen connected.
        self.down_since: float | None = None
        options = channel_options(config)
        credentials = tls.channel_credentials(config) if config.backend_tls_ca else None
        self.replicas = [Replica(target, options, credentials) for target in config.backends]
        self._turn = itertools.count()
        self.target = config.backend
        # A TLS handshake that fails looks like a backend that is down: say what to check.
        self._down_hint = (
            "; or its TLS handshake fails (see backend_tls_ca, backend_tls_server_name)"
            if credentials is not None
            else ""
        )

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.channel.close()

    def _pick(self) -> Replica:
        """The next replica round-robin, skipping those whose channel says they are down."""
        count = len(self.replicas)
        if count == 1:
            return self.replicas[0]
        start = next(self._turn)
        for offset in range(count):
            replica = self.replicas[(start + offset) % count]
            if not replica.looks_down():
                return replica
        return self.replicas[start % count]

    async def predict(self, request: bytes, call: Call) -> predict_pb2.PredictResponse:
        """Predict with a PredictRequest already serialized (see tfgate.translate)."""
        answer = await self.forward(_PREDICT, request, call)
        try:
            return predict_pb2.PredictResponse.FromString(answer)
        except DecodeError:
            raise BadBackendAnswer(
                f"TF Serving's answer is not a valid PredictResponse ({len(answer)} bytes)"
            ) from None

    async def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        answer = await self._call(lambda r: r.prediction.GetModelMetadata, request, call)
        return _parsed(answer, request.model_spec.name, "GetModelMetadataResponse")

    async def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest, call: Call
    ) -> get_model_status_pb2.GetModelStatusResponse:
        answer = await self._call(lambda r: r.models.GetModelStatus, request, call)
        return _parsed(answer, request.model_spec.name, "GetModelStatusResponse")

    async def forward(self, path: str, request: bytes, call: Call) -> bytes:
        """Any TF Serving method, request and answer as serialized bytes."""
        return await self._call(lambda r: r.raw(path), request, call)

    async def probe(self, within: float) -> bool:
        """Whether any replica answers at all, within ``within`` seconds; each replica's
        ``up`` says whether it did. No cap, no retries."""
        if len(self.replicas) == 1:
            return await self._probe(self.replicas[0], within)
        answers = await asyncio.gather(*(self._probe(r, within) for r in self.replicas))
        return any(answers)

    @staticmethod
    async def _probe(replica: Replica, within: float) -> bool:
        try:
            await replica.models.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(), timeout=within
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _DOWN:
                replica.up = False
                return False
        replica.up = True
        return True

    async def model_available(self, model: str, within: float) -> bool:
        """Whether some version of ``model`` is AVAILABLE. No cap, no retries."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            answer = await self._pick().models.GetModelStatus(request, timeout=within)
        except grpc.aio.AioRpcError:
            return False
        return any(v.state == _AVAILABLE for v in answer.model_version_status)

    async def _call(
        self,
        method: Callable[[Replica], grpc.aio.UnaryUnaryMultiCallable[Any, _Resp]],
        request: Message | bytes,
        call: Call,
    ) -> _Resp:
        deadline = call.deadline
        # The call's id goes with every attempt, so that TF Serving's side can be matched up.
        metadata = ((REQUEST_ID, call.request_id),) if call.request_id else None
        self.budget.record_call()
        # The first attempt runs outside tenacity: most calls succeed, and building the retry
        # loop costs more than the rest of tfgate's work on a small call.
        try:
            return await self._attempt(method, request, deadline, call, metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in self._retryable:
                raise _failed(exc) from None
            first: grpc.aio.AioRpcError | None = exc
        from tfgate.backends import (
            retry,  # tenacity: imported on the first failure, not at start-up
        )

        loop = retry.attempts(self._policy, self._retryable, self.budget, deadline)
        try:
            async for attempt in loop.retrying:
                with attempt:
                    if first is not None:
                        # Attempt 1 replays the failure above, so that the policy (back-off,
                        # push-back, budget, stop) judges it like any other.
                        failed, first = first, None
                        raise failed
                    self.metrics.retried()
                    return await self._attempt(method, request, deadline, call, metadata)
        except grpc.aio.AioRpcError as exc:
            if loop.predicate.budget_spent:
                raise Unavailable(
                    f"TF Serving answered {exc.code().name} ({exc.details()}), and tfgate's "
                    "retry budget is spent: retries may add at most "
                    f"{self._policy.budget_ratio:.0%} of recent calls while the backend fails"
                ) from None
            raise _failed(exc) from None
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _attempt(
        self,
        method: Callable[[Replica], grpc.aio.UnaryUnaryMultiCallable[Any, _Resp]],
        request: Message | bytes,
        deadline: float,
        call: Call,
        metadata: tuple[tuple[str, str], ...] | None,
    ) -> _Resp:
        if deadline - time.monotonic() <= 0:
            raise DeadlineExceeded("the deadline ran out before TF Serving could be called")
        async with self.limiter.slot(deadline, call.client):
            while True:
                replica = await self._connected(deadline)
                call.attempts += 1
                trace = call.trace
                traced = (
                    None
                    if trace is None
                    else trace.attempt(call.attempts, replica.target, metadata)
                )
                try:
                    answer = await method(replica)(
                        request,
                        timeout=max(deadline - time.monotonic(), 0.001),
                        metadata=metadata if traced is None else traced.metadata,
                    )
                except grpc.aio.AioRpcError as exc:
                    code = Code[exc.code().name]
                    if not _never_sent(exc):
                        self.metrics.attempt(replica.target, code)
                        if traced is not None:
                            traced.done(code)
                        raise
                    if traced is not None:
                        traced.done(code, sent=False)
                except BaseException:  # cancelled, or the deadline's timeout
                    if traced is not None:
                        traced.done(Code.CANCELLED)
                    raise
                else:
                    self.metrics.attempt(replica.target, Code.OK)
                    if traced is not None:
                        traced.done(Code.OK)
                    return answer
                # The connection went after it was seen READY: not an attempt; wait again.
                call.attempts -= 1
                await asyncio.sleep(_RESEND_PAUSE)

    async def _connected(self, deadline: float) -> Replica:
        """The replica to send to, once one has a connection; raises if none comes in time."""
        replica = self._pick()
        if replica.ready():
            self.down_since = None
            return replica
        for other in self.replicas:
            if other.ready():
                self.down_since = None
                return other
        started = time.monotonic()
        if self.down_since is None:
            self.down_since = started
        # Bounded from when the backend was first found down, not from this call's arrival: once
        # it has been down that long, callers are told so at once instead of each waiting again.
        give_up = self.down_since + self.wait_for_backend
        found = await self._first_ready(min(deadline, give_up))
        if found is not None:
            self.down_since = None
            return found
        now = time.monotonic()
        if deadline <= give_up:
            raise DeadlineExceeded(
                f"the deadline ran out after {(now - started) * 1000:.0f} ms waiting for a "
                f"connection to TF Serving at {self.target}"
            )
        raise Unavailable(
            f"TF Serving at {self.target} is down: no connection to it for "
            f"{now - self.down_since:.1f} s (wait_for_backend={self.wait_for_backend:g} s)"
            f"{self._down_hint}"
        )

    async def _first_ready(self, give_up: float) -> Replica | None:
        """The first replica whose channel becomes READY by ``give_up``, or None."""
        if len(self.replicas) == 1:
            only = self.replicas[0]
            return only if await only.ready_by(give_up) else None
        waits = {asyncio.ensure_future(r.ready_by(give_up)): r for r in self.replicas}
        pending = set(waits)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for wait in done:
                    if wait.result():
                        return waits[wait]
            return None
        finally:
            for wait in pending:
                wait.cancel()
