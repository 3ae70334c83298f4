"""The TF Serving client: retries, the concurrency cap and deadlines live here and nowhere else.

Every call carries an absolute deadline (``time.monotonic()`` seconds): the caller's, or the
configured default. Waiting for a slot, each attempt and each back-off sleep fit inside it, so
no retry outlives the caller. Failures leave this module as tfgate.errors exceptions, never as
grpc's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import Message
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from tfgate.config import Config, RetryPolicy
from tfgate.errors import DeadlineExceeded, from_backend
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


class stop_at_deadline(stop_base):
    """Stops when the next back-off sleep would end past ``deadline``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


def _retryable(codes: frozenset[grpc.StatusCode]) -> retry_if_exception:
    return retry_if_exception(lambda e: isinstance(e, grpc.aio.AioRpcError) and e.code() in codes)


def channel_options(config: Config) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # gRPC's own transparent retries would bypass the policy above.
        ("grpc.enable_retries", 0),
    ]


class Upstream:
    """PredictionService and ModelService calls to one TF Serving target."""

    def __init__(self, config: Config) -> None:
        self._policy: RetryPolicy = config.retry
        self._codes = config.retry.codes
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._channel = grpc.aio.insecure_channel(config.backend, options=channel_options(config))
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.target = config.backend

    async def close(self) -> None:
        await self._channel.close()

    async def predict(
        self, request: predict_pb2.PredictRequest, deadline: float
    ) -> predict_pb2.PredictResponse:
        return await self._call(self._prediction.Predict, request, deadline)

    async def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, deadline: float
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return await self._call(self._prediction.GetModelMetadata, request, deadline)

    async def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest, deadline: float
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return await self._call(self._models.GetModelStatus, request, deadline)

    async def probe(self, within: float) -> bool:
        """Whether TF Serving answers at all, within ``within`` seconds. No cap, no retries."""
        request = get_model_status_pb2.GetModelStatusRequest()
        try:
            await self._models.GetModelStatus(request, timeout=within)
        except grpc.aio.AioRpcError as exc:
            return exc.code() not in _DOWN
        return True

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Any, _Resp],
        request: Message,
        deadline: float,
    ) -> _Resp:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts) | stop_at_deadline(deadline),
            wait=wait_random_exponential(
                multiplier=self._policy.initial_backoff, max=self._policy.max_backoff
            ),
            retry=_retryable(self._codes),
            before_sleep=before_sleep_log(logger, logging.INFO),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(method, request, deadline)
        except grpc.aio.AioRpcError as exc:
            raise from_backend(exc.code(), exc.details()) from None
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _attempt(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Any, _Resp],
        request: Message,
        deadline: float,
    ) -> _Resp:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the deadline ran out before TF Serving could be called")
        if self._slots.locked():
            try:
                async with asyncio.timeout(remaining):
                    await self._slots.acquire()
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the deadline ran out after {remaining * 1000:.0f} ms waiting for one of "
                    "the backend call slots (--max-concurrency)"
                ) from None
        else:
            await self._slots.acquire()
        try:
            return await method(request, timeout=max(deadline - time.monotonic(), 0.001))
        finally:
            self._slots.release()
