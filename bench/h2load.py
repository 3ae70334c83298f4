"""Driving h2load with pre-encoded gRPC calls, and reading what it reports.

h2load (nghttp2) sends the same request body on every stream of every connection; a gRPC call is
a POST of one length-prefixed message with ``content-type: application/grpc`` and
``te: trailers``. h2load counts any HTTP 200 as a success and never reads ``grpc-status``, so the
bench checks answers itself (see bench/run.py): real calls before each run, and the DATA bytes
per request h2load saw against the size of a good answer.

The HTTP paths are driven over HTTP/1.1 (``--h1``) with keep-alive: one request in flight per
connection, so ``concurrency`` connections, each sending a JSON body. h2load's "data" counts
response body bytes there, as it counts DATA frame payloads over HTTP/2, so the same check
holds: a good answer's body size per completed request, and nothing but 2xx.

Everything but ``run`` is pure, and tested in tests/test_bench_parsing.py.
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
JSON_HEADERS = ("content-type: application/json",)


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message: flag 0, 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 0, len(message)) + message


@dataclass(frozen=True)
class Summary:
    """The counters of one h2load run (its own printout)."""

    seconds: float
    rps: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int  # 3xx, 4xx and 5xx
    data_bytes: int
    mean_ms: float
    max_ms: float


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_output(text: str) -> Summary:
    """The counters from h2load's printout; ValueError if a line is missing."""

    def find(pattern: str) -> re.Match[str]:
        found = re.search(pattern, text, re.MULTILINE)
        if found is None:
            raise ValueError(f"h2load output has no line matching {pattern!r}:\n{text}")
        return found

    finished = find(r"^finished in ([\d.]+)s, ([\d.]+) req/s")
    requests = find(
        r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout"
    )
    codes = find(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    traffic = find(r"^traffic: .*?\((\d+)\) data")
    times = find(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)")
    done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    return Summary(
        seconds=float(finished.group(1)),
        rps=float(finished.group(2)),
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=int(codes.group(1)),
        status_other=sum(int(g) for g in codes.groups()[1:]),
        data_bytes=int(traffic.group(1)),
        mean_ms=_ms(times.group(3)),
        max_ms=_ms(times.group(2)),
    )


def problems(summary: Summary, expected: int, in_flight: int, unit: str = "DATA") -> list[str]:
    """What says a run's answers were not all good ones: failed, errored or timed-out requests,
    any status but 2xx, or received bytes (``unit``: gRPC DATA, or HTTP bodies) that are not
    ``expected`` per completed request (up to ``in_flight`` more for answers still arriving at
    the end). Empty when none."""
    done = summary.done
    out = []
    if not done:
        out.append("no request completed")
    # (A call still in flight at the end may have its 200 and not be done: 2xx >= done.)
    if summary.failed or summary.errored or summary.timeout or summary.status_other:
        out.append(
            f"h2load: {summary.failed} failed, {summary.errored} errored, "
            f"{summary.timeout} timeout, {summary.status_other} not 2xx, of {done}"
        )
    if done and not done * expected <= summary.data_bytes <= (done + in_flight) * expected:
        out.append(
            f"{summary.data_bytes} {unit} bytes for {done} answers of {expected} bytes: "
            "some answers were not good ones"
        )
    return out


def parse_log(text: str) -> list[float]:
    """Per-request times in ms from h2load's ``--log-file`` (start µs, status, duration µs)."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            out.append(int(parts[2]) / 1000.0)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def connections_for(concurrency: int, http1: bool = False) -> tuple[int, int]:
    """(connections, streams per connection) for ``concurrency`` calls in flight.

    One HTTP/2 connection carrying every stream, as one gRPC channel does: the way a service
    calls tfgate, and the fair case for a single-threaded gateway. Over HTTP/1.1 one keep-alive
    connection per call in flight (no pipelining), as a client's connection pool does.
    """
    return (concurrency, 1) if http1 else (1, concurrency)


def command(
    url: str,
    body: Path,
    concurrency: int,
    seconds: float,
    *,
    log_file: Path | None = None,
    connections: int | None = None,
    http1: bool = False,
    headers: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The h2load command line for one timed run against ``url``: gRPC calls over h2c (prior
    knowledge), or with ``http1`` JSON POSTs over HTTP/1.1 keep-alive; ``headers`` are sent on
    every request too (a caller's credentials)."""
    conns, streams = connections_for(concurrency, http1)
    if connections is not None:
        conns, streams = connections, max(1, concurrency // connections)
    args = [
        "h2load",
        "-D",
        f"{round(seconds * 1000)}ms",
        "-c",
        str(conns),
        "-m",
        str(streams),
        "-t",
        "1",
    ]
    args += ["--h1"] if http1 else []
    args += ["-d", str(body)]
    for header in JSON_HEADERS if http1 else GRPC_HEADERS:
        args += ["-H", header]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    if log_file is not None:
        args += ["--log-file", str(log_file)]
    return [*args, url]


def run(args: list[str], seconds: float, cpu: str | None = None) -> str:
    """Runs h2load (on CPU ``cpu`` when given) and returns its printout; h2load stops itself
    after ``seconds``, and is killed if it has not a minute later."""
    if cpu is not None:
        args = ["taskset", "-c", cpu, *args]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 or "\nfinished in" not in done.stdout:
        raise RuntimeError(
            f"h2load failed ({done.returncode}): {done.stderr.strip()} {done.stdout[-300:]}"
        )
    return done.stdout
