"""A bare grpc.aio pass-through: the floor for any Python gateway.

Every method is forwarded as bytes to one backend channel and the answer's bytes are returned;
nothing is parsed, checked, logged or retried. Its channel and message-size options are
tfgate's, so the two differ only in what tfgate does per call.
Run: ``python -m bench.passthrough --backend HOST:PORT [--listen HOST:PORT] [--uvloop]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from bench import serving

Context = grpc.aio.ServicerContext[Any, Any]


class Forward(grpc.GenericRpcHandler):
    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._channel: grpc.aio.Channel | None = None
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            if self._channel is None:
                # Built inside the running loop, on the first call.
                options = [*serving.MESSAGE_OPTIONS, ("grpc.enable_retries", 0)]
                self._channel = grpc.aio.insecure_channel(self._backend, options=options)
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method)

            async def forward(request: bytes, context: Context) -> bytes:
                return await call(request)

            handler = grpc.unary_unary_rpc_method_handler(forward)
            self._handlers[method] = handler
        return handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    forward = Forward(args.backend)
    serving.run(
        lambda server: server.add_generic_rpc_handlers((forward,)), args.listen, args.uvloop
    )


if __name__ == "__main__":
    main()
