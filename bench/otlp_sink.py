"""An OTLP/gRPC trace collector that keeps nothing: where tfgate-traced sends its spans.

It answers ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` through a generic
handler with identity serializers, so no opentelemetry package is needed: the request's bytes
are counted, its spans too (by walking the protobuf wire format three levels down:
ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
ScopeSpans.spans = 2), and dropped. The answer is an empty ExportTraceServiceResponse, ``b""``:
an empty message is valid protobuf, and without ``partial_success`` every span counts as
accepted.

``/bench.OtlpSink/Stats`` answers the counts so far as JSON (``requests``, ``bytes``,
``spans``), for the bench to show that spans were exported.

``python -m bench.otlp_sink [--listen HOST:PORT]`` prints ``port N`` once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import orjson

from tfgate.wire import fields  # the protobuf wire walker tfgate reads requests with

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT = f"/{SERVICE}/Export"
STATS = "/bench.OtlpSink/Stats"


def _children(data: memoryview, number: int) -> Iterator[memoryview]:
    for found, value in fields(data):
        if found == number and value is not None:
            yield value


def count_spans(request: bytes) -> int:
    """The spans in a serialized ExportTraceServiceRequest."""
    spans = 0
    for resource in _children(memoryview(request), 1):
        for scope in _children(resource, 2):
            spans += sum(1 for _ in _children(scope, 2))
    return spans


class Sink:
    """The counts of what was exported to it; thread-safe (grpc's server runs handlers in a
    thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = self.bytes = self.spans = 0

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            spans = count_spans(request)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a trace export: {exc}")
        with self._lock:
            self.requests += 1
            self.bytes += len(request)
            self.spans += spans
        return b""

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "bytes": self.bytes, "spans": self.spans}

    def handler(self) -> grpc.GenericRpcHandler:
        def identity(message: bytes) -> bytes:
            return message

        def stats(_request: bytes, _context: grpc.ServicerContext) -> bytes:
            return orjson.dumps(self.stats())

        trace = grpc.method_handlers_generic_handler(
            SERVICE,
            {"Export": grpc.unary_unary_rpc_method_handler(self.export, identity, identity)},
        )
        own = grpc.method_handlers_generic_handler(
            "bench.OtlpSink",
            {"Stats": grpc.unary_unary_rpc_method_handler(stats, identity, identity)},
        )

        class Both(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                return trace.service(details) or own.service(details)

        return Both()


def serve(listen: str = "127.0.0.1:0") -> tuple[grpc.Server, int, Sink]:
    """A started sink on ``listen``: its server, the port it bound, its counts."""
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((sink.handler(),))
    port = server.add_insecure_port(listen)
    server.start()
    return server, port, sink


def stats(target: str, timeout: float = 10.0) -> dict[str, int]:
    """The counts of the sink at ``target``."""
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(STATS)
        counts: dict[str, int] = orjson.loads(call(b"", timeout=timeout))
        return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    server, port, _ = serve(args.listen)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"port {port}", flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop(0)


if __name__ == "__main__":
    main(sys.argv[1:])
