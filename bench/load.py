"""One measured row: check the path answers right, warm it up, drive it with h2load, read CPU.

Before each run a few real calls go through the path (gRPC calls, or HTTP POSTs for the HTTP
paths, which must answer 200) and their decoded y is checked against 0.5x + 2. After it,
h2load's counters must show no failed, errored or timed-out stream and nothing but 2xx, and the
bytes it received must be at least one good answer's per completed request: over gRPC the DATA
of one answer's frame (an error status arrives trailers-only, without DATA, so even a few bad
answers show), over HTTP the body of one good answer (a 200 with another body shows too).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import h2load, messages, procs
from bench.paths import Route
from bench.serving import MESSAGE_OPTIONS


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    load_cpu: str | None  # where h2load runs
    connections: int | None = None  # None: one connection carrying every stream


def request_for(route: Route, size: str) -> bytes:
    """The message (or, for an HTTP path, the JSON body) every call of a run sends."""
    x = messages.inputs(size)
    if route.http:
        if route.domain:
            return messages.v1_json_predict_body(x)
        return messages.rest_predict_body(x)
    if route.domain:
        return messages.domain_predict_request(x)
    return messages.tfs_predict_request(x)


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Payload:
    """A gRPC call other than half_plus_two's of a size (another model's): the serialized
    request every call of a run sends, and the check of an answer (ValueError if wrong)."""

    name: str  # names the body file
    request: bytes
    check: Callable[[bytes], None]


def verify(
    target: str,
    route: Route,
    size: str,
    calls: int = 3,
    *,
    headers: Headers = (),
    payload: Payload | None = None,
) -> int:
    """Sends ``calls`` real calls (with ``headers`` as metadata) of ``size``, or ``payload``'s,
    and checks each answer; returns a good answer's size as h2load counts it (its gRPC frame,
    or its HTTP body)."""
    if route.http:
        return verify_http(target, route, size, calls)
    if payload is None:
        x = messages.inputs(size)
        request = request_for(route, size)
        answered = messages.check_domain_response if route.domain else messages.check_tfs_response
        check: Callable[[bytes], None] = lambda answer: answered(answer, x)  # noqa: E731
    else:
        request, check = payload.request, payload.check
    with grpc.insecure_channel(target, options=MESSAGE_OPTIONS) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(route.method)
        answer = b""
        for _ in range(calls):
            answer = call(request, timeout=30, metadata=headers or None)
            check(answer)
    return len(h2load.grpc_frame(answer))


def verify_http(target: str, route: Route, size: str, calls: int = 3) -> int:
    """``calls`` POSTs on one keep-alive connection; each must answer 200 with a good body, and
    every body the same size (h2load's byte count relies on it); returns that size."""
    x = messages.inputs(size)
    body = request_for(route, size)
    check = messages.check_v1_json_response if route.domain else messages.check_rest_response
    host, _, port = target.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    sizes = set()
    try:
        for _ in range(calls):
            connection.request("POST", route.method, body, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise ValueError(
                    f"{route.name}: POST {route.method} answered {response.status}: "
                    f"{answer[:300]!r}"
                )
            check(answer, x)
            sizes.add(len(answer))
    finally:
        connection.close()
    if len(sizes) != 1:
        raise ValueError(f"{route.name}: good answers of different sizes {sorted(sizes)}")
    return sizes.pop()


@dataclass(frozen=True)
class Stage:
    """One started path: where to send the load, and whose CPU time to read."""

    route: Route
    target: str
    front: procs.Proc | None  # the gateway; None for the direct path
    backend: procs.Proc
    settings: Settings
    workdir: Path
    headers: Headers = ()  # what every call carries besides the protocol's (credentials)
    payload: Payload | None = None  # what every call sends, when not half_plus_two's of a size


def drive(stage: Stage, size: str, conc: int) -> dict[str, Any]:
    """Measures one (path, size, concurrency); the gateway's CPU is the front process's (the
    backend's for the direct path)."""
    route, target, settings, workdir = stage.route, stage.target, stage.settings, stage.workdir
    backend = stage.backend
    row: dict[str, Any] = {"path": route.name, "size": size, "conc": conc}
    payload = stage.payload
    expected = verify(target, route, size, headers=stage.headers, payload=payload)
    kind = ("v1" if route.domain else "tfs") + ("-json" if route.http else "")
    body = workdir / (f"{kind}-{size}.bin" if payload is None else f"{payload.name}.bin")
    if not body.exists():
        request = request_for(route, size) if payload is None else payload.request
        body.write_bytes(request if route.http else h2load.grpc_frame(request))
    url = f"http://{target}{route.method}"
    conns, http1, headers = settings.connections, route.http, stage.headers
    if settings.warmup > 0:
        h2load.run(
            h2load.command(
                url, body, conc, settings.warmup, connections=conns, http1=http1, headers=headers
            ),
            settings.warmup,
            settings.load_cpu,
        )
    log = workdir / f"{route.name}-{size}-{conc}.log"
    log.unlink(missing_ok=True)
    args = h2load.command(
        url, body, conc, settings.seconds, log_file=log, connections=conns, http1=http1,
        headers=headers,
    )  # fmt: skip
    gateway = stage.front or backend
    busy_before, load_before = procs.busy_cpu_seconds(), procs.children_cpu_seconds()
    cpu_before, backend_before = gateway.cpu(), backend.cpu()
    out = h2load.run(args, settings.seconds, settings.load_cpu)
    cpu_after, backend_after = gateway.cpu(), backend.cpu()
    busy = procs.busy_cpu_seconds() - busy_before
    h2load_cpu = procs.children_cpu_seconds() - load_before
    ours = (
        h2load_cpu + backend_after - backend_before
        + (cpu_after - cpu_before if stage.front else 0.0)
    )  # fmt: skip
    gateway.check_alive()
    summary = h2load.parse_output(out)
    latencies = h2load.parse_log(log.read_text())
    done = summary.done
    problems = h2load.problems(summary, expected, conc, "body" if http1 else "DATA")
    row.update(
        rps=summary.rps,
        p50_ms=h2load.percentile(latencies, 50),
        p99_ms=h2load.percentile(latencies, 99),
        mean_ms=summary.mean_ms,
        requests=done,
        seconds=summary.seconds,
        cpu_ms=(cpu_after - cpu_before) * 1000 / done if done else None,
        cpu_util=(cpu_after - cpu_before) / summary.seconds,
        h2load_cpu_ms=h2load_cpu * 1000 / done if done else None,
        # CPUs kept busy by processes that are not part of this run (other work on the machine).
        others_cpus=max(busy - ours, 0.0) / summary.seconds,
        backend_cpu_ms=(backend_after - backend_before) * 1000 / done if done else None,
        answer_bytes=expected,
        data_bytes_per_request=summary.data_bytes / done if done else None,
    )
    if problems:
        row["error"] = "; ".join(problems)
    return row
