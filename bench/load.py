"""One measured row: check the path answers right, warm it up, drive it with h2load, read CPU.

Before each run a few real gRPC calls go through the path and their decoded y is checked
against 0.5x + 2. After it, h2load's counters must show no failed, errored or timed-out stream,
and the DATA bytes it received must be at least one good answer's frame per completed request
(an error status arrives trailers-only, without DATA, so even a few bad answers show).
"""

from __future__ import annotations

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
    x = messages.inputs(size)
    if route.domain:
        return messages.domain_predict_request(x)
    return messages.tfs_predict_request(x)


def verify(target: str, route: Route, size: str, calls: int = 3) -> int:
    """Sends ``calls`` real calls and checks each answer; returns a good answer's frame size."""
    x = messages.inputs(size)
    request = request_for(route, size)
    check = messages.check_domain_response if route.domain else messages.check_tfs_response
    with grpc.insecure_channel(target, options=MESSAGE_OPTIONS) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(route.method)
        answer = b""
        for _ in range(calls):
            answer = call(request, timeout=30)
            check(answer, x)
    return len(h2load.grpc_frame(answer))


@dataclass(frozen=True)
class Stage:
    """One started path: where to send the load, and whose CPU time to read."""

    route: Route
    target: str
    front: procs.Proc | None  # the gateway; None for the direct path
    backend: procs.Proc
    settings: Settings
    workdir: Path


def drive(stage: Stage, size: str, conc: int) -> dict[str, Any]:
    """Measures one (path, size, concurrency); the gateway's CPU is the front process's (the
    backend's for the direct path)."""
    route, target, settings, workdir = stage.route, stage.target, stage.settings, stage.workdir
    backend = stage.backend
    row: dict[str, Any] = {"path": route.name, "size": size, "conc": conc}
    expected = verify(target, route, size)
    body = workdir / f"{'domain' if route.domain else 'tfs'}-{size}.bin"
    if not body.exists():
        body.write_bytes(h2load.grpc_frame(request_for(route, size)))
    url = f"http://{target}{route.method}"
    if settings.warmup > 0:
        h2load.run(
            h2load.command(url, body, conc, settings.warmup, connections=settings.connections),
            settings.warmup,
            settings.load_cpu,
        )
    log = workdir / f"{route.name}-{size}-{conc}.log"
    log.unlink(missing_ok=True)
    args = h2load.command(
        url, body, conc, settings.seconds, log_file=log, connections=settings.connections
    )
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
    problems = []
    if not done:
        problems.append("no request completed")
    # (A call still in flight at the end may have its 200 and not be done: 2xx >= done.)
    if summary.failed or summary.errored or summary.timeout or summary.status_other:
        problems.append(
            f"h2load: {summary.failed} failed, {summary.errored} errored, "
            f"{summary.timeout} timeout, {summary.status_other} not 2xx, of {done}"
        )
    if done and not done * expected <= summary.data_bytes <= (done + conc) * expected:
        problems.append(
            f"{summary.data_bytes} DATA bytes for {done} answers of {expected} bytes: "
            "some answers were not good ones"
        )
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
