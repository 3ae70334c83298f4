"""tfgate's start-up time and idle memory, against a process that imports the official stubs.

tfgate: from ``Popen`` of ``python -m tfgate serve`` to the first grpc.health.v1 ``SERVING``
(which needs the backend's first answer), then its VmRSS after a second idle, and the private
part of it (RssAnon). tfgate's sources
are compiled to bytecode first, as installing its wheel does: this machine may run Python with
PYTHONDONTWRITEBYTECODE, and an editable install would then compile every module at each start.
The official
``tensorflow_serving.apis`` stubs: a process that imports them, its import time and VmRSS after
the import. Medians of a few starts.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench import procs

# Fast reconnects: the default back-off (1 s) would be measured instead of tfgate.
_POLL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 20),
]
_OFFICIAL = """\
import time
t = time.perf_counter()
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
t = time.perf_counter() - t
rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]
print(f'imported {t:.6f} {int(rss) / 1024:.1f}', flush=True)
"""


def wait_serving(target: str, timeout: float = 30.0) -> float:
    """Polls grpc.health.v1 Check on ``target`` until SERVING; returns time.monotonic() then."""
    end = time.monotonic() + timeout
    with grpc.insecure_channel(target, options=_POLL_OPTIONS) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        while time.monotonic() < end:
            try:
                answer = check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic()
            except grpc.RpcError:
                pass
            time.sleep(0.002)
    raise TimeoutError(f"{target} not SERVING within {timeout} s")


def tfgate_args(listen: str, backend: str, log_level: str = "WARNING") -> list[str]:
    # A short grace period: the bench stops tfgate when no call is in flight.
    return [sys.executable, "-m", "tfgate", "serve", "--listen", listen, "--backend", backend,
            "--log-level", log_level, "--grace-period", "1"]  # fmt: skip


SOURCES = [Path(__file__).resolve().parent.parent / d for d in ("server", "gen")]


def compile_sources() -> bool:
    """Writes tfgate's bytecode (__pycache__), as ``pip install`` of its wheel does."""
    return all(compileall.compile_dir(str(d), quiet=1) for d in SOURCES if d.is_dir())


def measure_tfgate(backend: str, workdir: Path, starts: int) -> dict[str, Any]:
    compiled = compile_sources()
    times, rss, anon = [], [], []
    for i in range(starts):
        port = procs.free_port()
        log = procs.fresh_log(workdir, f"startup-{i}")
        began = time.monotonic()
        popen = procs.spawn(tfgate_args(f"127.0.0.1:{port}", backend), log, env=procs.clean_env())
        proc = procs.Proc("tfgate-startup", [popen], log, port)
        try:
            times.append(wait_serving(f"127.0.0.1:{port}") - began)
            time.sleep(1.0)
            rss.append(procs.rss_mb(popen.pid))
            anon.append(procs.rss_mb(popen.pid, "RssAnon"))
        finally:
            proc.stop()
    return {
        "start_to_serving_s": statistics.median(times),
        "start_to_serving_all_s": times,
        "idle_rss_mb": statistics.median(rss),
        # Private memory; the rest of the RSS is mapped files (see procs.rss_mb).
        "idle_rss_anon_mb": statistics.median(anon),
        "bytecode_compiled": compiled,
    }


def measure_official(starts: int) -> dict[str, Any]:
    """Import time and VmRSS of the official tensorflow_serving.apis stubs (they import TF)."""
    imports, walls, rss = [], [], []
    for _ in range(starts):
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _OFFICIAL], capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return {"note": f"official stubs not importable: {done.stderr.strip()[-300:]}"}
        walls.append(time.monotonic() - began)
        _, seconds, mb = done.stdout.split()
        imports.append(float(seconds))
        rss.append(float(mb))
    return {
        "official_import_s": statistics.median(imports),
        "official_process_s": statistics.median(walls),
        "official_rss_mb": statistics.median(rss),
    }


def measure(backend: str, workdir: Path, starts: int, official_starts: int = 2) -> dict[str, Any]:
    """tfgate's figures over ``starts`` starts; the official stubs' (6 s each) over fewer."""
    return {**measure_tfgate(backend, workdir, starts), **measure_official(official_starts)}
