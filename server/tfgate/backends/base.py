"""The Backend interface: what the request core (tfgate.inference) needs from TF Serving.

The core calls these and nothing else, so a router, a cache or a batcher can later wrap a
Backend and be handed to the core in its place. Requests and answers are TF Serving's own
messages (or their serialized bytes, which are passed through untouched); failures are
tfgate.errors exceptions, never a transport's.
"""

from __future__ import annotations

from typing import Protocol

from tfgate.calls import Call
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)


class Backend(Protocol):
    async def predict(self, request: bytes, call: Call) -> predict_pb2.PredictResponse:
        """Predict with a serialized PredictRequest (see tfgate.translate)."""
        ...

    async def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse: ...

    async def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest, call: Call
    ) -> get_model_status_pb2.GetModelStatusResponse: ...

    async def forward(self, path: str, request: bytes, call: Call) -> bytes:
        """Any TF Serving method by its gRPC path, request and answer as serialized bytes."""
        ...
