"""A flood of concurrent calls from one client, in a process of its own (as another caller's
would come): ``python -m tests.limits_flood grpc|http TARGET KEY COUNT``.

It connects, prints ``ready``, waits for a line on stdin, sends COUNT calls at once (half
tfgate.v1 Predict, half TF Serving's Predict, over gRPC or HTTP) and prints one JSON line:
``{"ok": N, "refused": [[code or status, retry-after, pushback ms or null, message], ...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import grpc

from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tfgate.v1 import inference_pb2, inference_pb2_grpc

Outcome = list[Any] | None


def _v1() -> inference_pb2.PredictRequest:
    request = inference_pb2.PredictRequest(model="half_plus_two")
    request.inputs["x"].floats.extend([1.0, 2.0])
    return request


def _tfs() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 2
    request.inputs["x"].float_val.extend([1.0, 2.0])
    return request


async def _grpc(target: str, key: str, count: int) -> list[Outcome]:
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        v1 = inference_pb2_grpc.InferenceServiceStub(channel)
        tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def one(n: int) -> Outcome:
            try:
                if n % 2:
                    await v1.Predict(_v1(), metadata=metadata, timeout=20)
                else:
                    await tfs.Predict(_tfs(), metadata=metadata, timeout=20)
            except grpc.aio.AioRpcError as exc:
                trailers = {k: v for k, v in exc.trailing_metadata() or ()}
                return [
                    exc.code().name,
                    trailers.get("retry-after"),
                    trailers.get("grpc-retry-pushback-ms"),
                    exc.details(),
                ]
            return None

        await _ready()
        return await asyncio.gather(*(one(n) for n in range(count)))


async def _http(base: str, key: str, count: int) -> list[Outcome]:
    headers = {"Authorization": f"Bearer {key}"}
    routes = [
        ("/v1/models/half_plus_two:predict", b'{"instances": [1, 2]}'),
        ("/tfgate/v1/models/half_plus_two:predict", b'{"inputs": {"x": {"floats": [1, 2]}}}'),
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(n: int) -> Outcome:
            path, body = routes[n % 2]
            async with session.post(base + path, data=body, headers=headers) as answer:
                text = await answer.read()
                if answer.status == 200:
                    return None
                return [answer.status, answer.headers.get("Retry-After"), None, text.decode()]

        await _ready()
        return await asyncio.gather(*(one(n) for n in range(count)))


async def _ready() -> None:
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def main() -> None:
    kind, target, key, count = sys.argv[1:5]
    flood = _grpc if kind == "grpc" else _http
    outcomes = asyncio.run(flood(target, key, int(count)))
    refused = [o for o in outcomes if o is not None]
    print(json.dumps({"ok": len(outcomes) - len(refused), "refused": refused}), flush=True)


if __name__ == "__main__":
    main()
