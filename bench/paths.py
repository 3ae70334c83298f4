"""The paths under test, each started as its own process(es) in front of one backend.

| path | what answers the load generator |
| --- | --- |
| direct | the backend itself (bench/backend.js) |
| nginx | nginx ``grpc_pass`` with a keep-alive upstream (bench/nginx.py) |
| passthrough | the bare grpc.aio pass-through (bench/passthrough.py) |
| tfgate | ``tfgate serve`` at log level WARNING, tfgate.v1.InferenceService/Predict |
| tfgate-info | the same at log level INFO: one access-log line per call |
| tfgate-tfs | tfgate's TF Serving pass-through (/tensorflow.serving.PredictionService/Predict) |

tfgate-tfs is measured when the tfgate it starts answers TF Serving's Predict; a tfgate without
that API (UNIMPLEMENTED) gets rows that read "not built".
"""

from __future__ import annotations

import base64
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import messages, nginx, procs, startup

HERE = Path(__file__).resolve().parent
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
DOMAIN_PREDICT = "/tfgate.v1.InferenceService/Predict"


@dataclass(frozen=True)
class Route:
    name: str
    method: str

    @property
    def domain(self) -> bool:
        return self.method == DOMAIN_PREDICT


PATHS = {
    p.name: p
    for p in (
        Route("direct", TFS_PREDICT),
        Route("nginx", TFS_PREDICT),
        Route("passthrough", TFS_PREDICT),
        Route("tfgate", DOMAIN_PREDICT),
        Route("tfgate-info", DOMAIN_PREDICT),
        Route("tfgate-tfs", TFS_PREDICT),
    )
}


def start_backend(workdir: Path, cpu: str | None) -> procs.Proc:
    node = shutil.which("node") or "node"
    metadata = base64.b64encode(messages.metadata_response()).decode()
    status = base64.b64encode(messages.status_response()).decode()
    args = [node, str(HERE / "backend.js"), "0", metadata, status]
    return procs.start_server("backend", args, workdir, cpu)


def start_python_backend(workdir: Path, cpu: str | None) -> procs.Proc:
    """The grpc.aio backend (bench/backend.py): slower; for comparison only."""
    args = [sys.executable, "-m", "bench.backend"]
    return procs.start_server("backend-py", args, workdir, cpu)


def start_passthrough(
    backend: str, workdir: Path, cpu: str | None, uvloop: bool = False, workers: int = 1
) -> procs.Proc:
    """The bare pass-through; with ``workers`` > 1, that many processes on one SO_REUSEPORT port."""
    args = [sys.executable, "-m", "bench.passthrough", "--backend", backend]
    args += ["--uvloop"] if uvloop else []
    name = "passthrough" + ("-uvloop" if uvloop else "") + (f"-x{workers}" if workers > 1 else "")
    first = procs.start_server(name, args, workdir, cpu)
    try:
        for i in range(1, workers):
            listen = ["--listen", f"127.0.0.1:{first.port}"]
            first.popens += procs.start_server(f"{name}-{i}", [*args, *listen], workdir, cpu).popens
    except BaseException:
        first.stop()
        raise
    return first


def start_tfgate(backend: str, workdir: Path, cpu: str | None, log_level: str) -> procs.Proc:
    args = startup.tfgate_args("127.0.0.1:0", backend, log_level)
    proc = procs.start_server(
        f"tfgate-{log_level.lower()}", args, workdir, cpu, env=procs.clean_env(),
        pattern=r"tfgate listening on \S+:(\d+)",
    )  # fmt: skip
    try:
        startup.wait_serving(f"127.0.0.1:{proc.port}")
    except BaseException:
        proc.stop()
        raise
    return proc


def start(name: str, backend: procs.Proc, workdir: Path, cpu: str | None) -> procs.Proc | None:
    """Starts path ``name`` in front of ``backend``; None for ``direct`` (nothing in between)."""
    target = f"127.0.0.1:{backend.port}"
    if name == "direct":
        return None
    if name == "nginx":
        return nginx.start(target, workdir, cpu)
    if name == "passthrough":
        return start_passthrough(target, workdir, cpu)
    if name in ("tfgate", "tfgate-tfs"):
        return start_tfgate(target, workdir, cpu, "WARNING")
    if name == "tfgate-info":
        return start_tfgate(target, workdir, cpu, "INFO")
    raise ValueError(f"no path {name}")
