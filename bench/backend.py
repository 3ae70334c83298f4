"""A fast TF-Serving-compatible backend for ``half_plus_two``, so the backend is not what is
measured.

A grpc.aio server with raw-bytes handlers: Predict parses the request with tfgate's TF Serving
stubs (upb, in C) and computes y = 0.5x + 2 with numpy; GetModelMetadata and GetModelStatus
answer bytes encoded once at start-up. Run: ``python -m bench.backend [--listen HOST:PORT]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from bench import messages, serving
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import model_pb2, predict_pb2

Context = grpc.aio.ServicerContext[Any, Any]

_SPEC = model_pb2.ModelSpec(
    name=messages.MODEL,
    version=wrappers_pb2.Int64Value(value=messages.VERSION),
    signature_name=messages.SIGNATURE,
)


async def predict(data: bytes, context: Context) -> bytes:
    request = predict_pb2.PredictRequest.FromString(data)
    if request.model_spec.name != messages.MODEL:
        await context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: Latest({request.model_spec.name})",
        )
    if "x" not in request.inputs or request.inputs["x"].dtype != types_pb2.DT_FLOAT:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expects one float input 'x'")
    y = messages.half_plus_two(messages.tfs_tensor_values(request.inputs["x"]))
    response = predict_pb2.PredictResponse(model_spec=_SPEC)
    response.outputs["y"].CopyFrom(messages.float_tensor(y))
    return response.SerializeToString()


def _constant(answer: bytes) -> grpc.RpcMethodHandler:
    async def handle(data: bytes, context: Context) -> bytes:
        return answer

    return grpc.unary_unary_rpc_method_handler(handle)


def add_handlers(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService",
                {
                    "Predict": grpc.unary_unary_rpc_method_handler(predict),
                    "GetModelMetadata": _constant(messages.metadata_response()),
                },
            ),
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.ModelService",
                {"GetModelStatus": _constant(messages.status_response())},
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    serving.run(add_handlers, args.listen, args.uvloop)


if __name__ == "__main__":
    main()
