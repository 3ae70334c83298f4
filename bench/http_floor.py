"""A bare aiohttp server forwarding TF Serving's REST predict: the floor for a Python HTTP gateway.

``POST /v1/models/{model}:predict`` with the bench model's row-format body,
``{"instances": [x0, x1, ...]}`` (float32 scalars): the body read with orjson, the instances put
into one float32 TensorProto ``x`` as ``tensor_content``, the PredictRequest sent as bytes over
grpc.aio to the backend, ``y`` read back and written as ``{"predictions": [...]}`` with orjson.
Nothing else is checked, logged or retried; a body it cannot read fails the call (500). It runs
on uvloop, with tfgate's message-size options, as tfgate does: the two differ only in what
tfgate does per call (bench/passthrough.py is the same floor for gRPC).
Run: ``python -m bench.http_floor --backend HOST:PORT [--listen HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import numpy as np
import orjson
import uvloop
from aiohttp import web

from bench import serving
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import predict_pb2

PREDICT = "/tensorflow.serving.PredictionService/Predict"


class Floor:
    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] | None = None

    async def start(self) -> None:
        # Built inside the running loop.
        options = [*serving.MESSAGE_OPTIONS, ("grpc.enable_retries", 0)]
        channel = grpc.aio.insecure_channel(self._backend, options=options)
        self._call = channel.unary_unary(PREDICT)

    async def predict(self, request: web.Request) -> web.Response:
        x = np.asarray(orjson.loads(await request.read())["instances"], dtype=np.float32)
        message = predict_pb2.PredictRequest()
        message.model_spec.name = request.match_info["model"]
        tensor = message.inputs["x"]
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=x.shape[0])
        tensor.tensor_content = x.tobytes()
        assert self._call is not None
        answer = predict_pb2.PredictResponse.FromString(
            await self._call(message.SerializeToString())
        )
        y = np.frombuffer(answer.outputs["y"].tensor_content, dtype="<f4")
        body = orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
        return web.Response(body=body, content_type="application/json")


async def serve(backend: str, listen: str) -> None:
    floor = Floor(backend)
    await floor.start()
    app = web.Application(client_max_size=serving.MAX_MESSAGE_BYTES)
    app.router.add_post("/v1/models/{model}:predict", floor.predict)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    print(f"port {sockets[0].getsockname()[1]}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    uvloop.run(serve(args.backend, args.listen))


if __name__ == "__main__":
    main()
