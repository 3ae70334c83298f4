"""What the bench's own servers (backend, pass-through) share: bind, announce the port, stop.

Each server runs in a process of its own, prints ``port N`` once it is serving and stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # tfgate's default max_message_bytes
MESSAGE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


async def _serve(add_handlers: Callable[[grpc.aio.Server], None], listen: str) -> None:
    # SO_REUSEPORT lets several worker processes listen on one port (the kernel spreads the
    # connections); gRPC turns it on by default, set here so the choice is visible.
    server = grpc.aio.server(options=[*MESSAGE_OPTIONS, ("grpc.so_reuseport", 1)])
    add_handlers(server)
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    print(f"port {port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0)


def run(add_handlers: Callable[[grpc.aio.Server], None], listen: str, use_uvloop: bool) -> None:
    """Serves on ``listen`` until SIGTERM, on uvloop's event loop when ``use_uvloop``."""
    if use_uvloop:
        import uvloop

        uvloop.run(_serve(add_handlers, listen))
    else:
        asyncio.run(_serve(add_handlers, listen))
