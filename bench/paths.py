"""The paths under test, each started as its own process(es) in front of one backend.

| path | what answers the load generator |
| --- | --- |
| direct | the backend itself (bench/backend.js) |
| nginx | nginx ``grpc_pass`` with a keep-alive upstream (bench/nginx.py) |
| passthrough | the bare grpc.aio pass-through (bench/passthrough.py) |
| tfgate | ``tfgate serve`` at log level WARNING, tfgate.v1.InferenceService/Predict |
| tfgate-info | the same at log level INFO: one access-log line per call |
| tfgate-tfs | tfgate's TF Serving pass-through (/tensorflow.serving.PredictionService/Predict) |
| tfgate-auth | tfgate with an API key, authorization and rate limits on (bench/access.py) |
| tfgate-jwt | the same with an HS256 JWT as the bearer token, cached after its first call |
| tfgate-nometrics | tfgate with ``metrics = false`` (bench/observe.py) |
| tfgate-traced | tfgate exporting its traces over OTLP/gRPC to bench/otlp_sink.py |
| tfgate-cached | tfgate with a response cache for half_plus_two: the same call, answered from it |
| tfgate-cached-bypass | the same server, every call with ``cache-control: no-cache`` (a miss) |
| tfgate-batched | tfgate with micro-batching for half_plus_two, a 2 ms window (bench/batch.py) |
| tfgate-iris | tfgate in front of the local model server on the iris SavedModel |
| tfgate-iris-batched | the same with micro-batching for iris |
| http-floor | the bare aiohttp + grpc.aio REST predict (bench/http_floor.py), over HTTP/1.1 |
| tfgate-http | ``tfgate serve --http-listen``: TF Serving's REST predict, over HTTP/1.1 |
| tfgate-http-v1 | the same server: tfgate.v1's JSON predict, over HTTP/1.1 |

tfgate-tfs is measured when the tfgate it starts answers TF Serving's Predict; a tfgate without
that API (UNIMPLEMENTED) gets rows that read "not built".
"""

from __future__ import annotations

import base64
import shutil
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import access, batch, cache, messages, nginx, observe, procs, startup
from tfgate import grpc_flags

HERE = Path(__file__).resolve().parent
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
DOMAIN_PREDICT = "/tfgate.v1.InferenceService/Predict"
# The HTTP paths' URL paths: TF Serving's REST predict, and tfgate.v1's JSON predict.
REST_PREDICT = f"/v1/models/{messages.MODEL}:predict"
V1_JSON_PREDICT = f"/tfgate/v1/models/{messages.MODEL}:predict"


@dataclass(frozen=True)
class Route:
    """A path under test: a gRPC method, or (``http``) the URL path of a JSON POST."""

    name: str
    method: str
    http: bool = False

    @property
    def domain(self) -> bool:
        """Whether it speaks tfgate.v1 (rather than TF Serving's API)."""
        return self.method in (DOMAIN_PREDICT, V1_JSON_PREDICT)


PATHS = {
    p.name: p
    for p in (
        Route("direct", TFS_PREDICT),
        Route("nginx", TFS_PREDICT),
        Route("passthrough", TFS_PREDICT),
        Route("tfgate", DOMAIN_PREDICT),
        Route("tfgate-info", DOMAIN_PREDICT),
        Route("tfgate-tfs", TFS_PREDICT),
        Route("tfgate-auth", DOMAIN_PREDICT),
        Route("tfgate-jwt", DOMAIN_PREDICT),
        Route("tfgate-nometrics", DOMAIN_PREDICT),
        Route("tfgate-traced", DOMAIN_PREDICT),
        Route("tfgate-cached", DOMAIN_PREDICT),
        Route("tfgate-cached-bypass", DOMAIN_PREDICT),
        Route("tfgate-batched", DOMAIN_PREDICT),
        Route("tfgate-iris", DOMAIN_PREDICT),
        Route("tfgate-iris-batched", DOMAIN_PREDICT),
        Route("http-floor", REST_PREDICT, http=True),
        Route("tfgate-http", REST_PREDICT, http=True),
        Route("tfgate-http-v1", V1_JSON_PREDICT, http=True),
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
    env = as_tfgate_runs_grpc()
    first = procs.start_server(name, args, workdir, cpu, env=env)
    try:
        for i in range(1, workers):
            listen = ["--listen", f"127.0.0.1:{first.port}"]
            more = procs.start_server(f"{name}-{i}", [*args, *listen], workdir, cpu, env=env)
            first.popens += more.popens
    except BaseException:
        first.stop()
        raise
    return first


def start_http_floor(backend: str, workdir: Path, cpu: str | None) -> procs.Proc:
    """The bare HTTP floor (bench/http_floor.py); its port is the HTTP one."""
    args = [sys.executable, "-m", "bench.http_floor", "--backend", backend]
    return procs.start_server("http-floor", args, workdir, cpu, env=as_tfgate_runs_grpc())


def as_tfgate_runs_grpc() -> dict[str, str]:
    """procs.clean_env with the grpc experiments tfgate sets for itself (tfgate.grpc_flags): the
    floors run grpc as tfgate does, so that a ratio to them measures tfgate's own code."""
    env = procs.clean_env()
    grpc_flags.set_default(env)
    return env


_GRPC_LINE = r"tfgate listening on \S+:(\d+)"
_HTTP_LINE = r"tfgate HTTP on \S+:(\d+)"
_METRICS_LINE = r"tfgate metrics on (\S+)"


def start_tfgate(
    backend: str,
    workdir: Path,
    cpu: str | None,
    log_level: str,
    *,
    http: bool = False,
    config: Path | None = None,
    name: str = "",
    flags: Sequence[str] = (),
    admin: bool = False,
) -> procs.Proc:
    """``tfgate serve``, SERVING once started; with ``http``, also the HTTP front, whose port is
    then the Proc's (it prints that line after the gRPC one); with ``config``, that file; and
    ``flags`` besides. With ``admin``, an admin listener too, whose /metrics URL is the Proc's
    ``extra["metrics"]`` (read with ``metrics_text``; nothing scrapes it during a run)."""
    args = startup.tfgate_args("127.0.0.1:0", backend, log_level)
    args += ["--http-listen", "127.0.0.1:0"] if http else []
    args += ["--admin-listen", "127.0.0.1:0"] if admin else []
    args += ["--config", str(config)] if config is not None else []
    args += flags
    name = name or f"tfgate-{log_level.lower()}" + ("-http" if http else "")
    proc = procs.start_server(
        name, args, workdir, cpu,
        env=procs.clean_env(), pattern=_HTTP_LINE if http else _GRPC_LINE,
    )  # fmt: skip
    try:
        grpc_port = procs.wait_for_line(proc.popens[0], proc.log, _GRPC_LINE).group(1)
        if admin:
            url = procs.wait_for_line(proc.popens[0], proc.log, _METRICS_LINE).group(1)
            proc.extra["metrics"] = url
        startup.wait_serving(f"127.0.0.1:{grpc_port}")
    except BaseException:
        proc.stop()
        raise
    return proc


def start_traced(backend: str, workdir: Path, cpu: str | None) -> procs.Proc:
    """tfgate exporting its spans to a trace sink of its own, which runs on the other CPU (the
    backend's and the load generator's) and is stopped with it."""
    why = observe.tracing_unavailable()
    if why:
        raise RuntimeError(f"tfgate-traced: {why}")
    other = None if cpu is None else ("0" if cpu != "0" else "1")
    sink = observe.start_sink(workdir, other)
    try:
        flags = (observe.OTLP_FLAG, observe.endpoint(sink))
        proc = start_tfgate(backend, workdir, cpu, "WARNING", name="tfgate-traced", flags=flags)
    except BaseException:
        sink.stop()
        raise
    proc.companions.append(sink)
    return proc


# What every call of a path carries besides its server's credentials.
_PATH_HEADERS = {"tfgate-cached-bypass": cache.NO_CACHE}


def headers_of(proc: procs.Proc | None, name: str = "") -> tuple[tuple[str, str], ...]:
    """The metadata every call to ``proc``'s path (``name``) carries (its credentials, and
    what the path adds), if any."""
    if proc is None:
        return ()
    headers: tuple[tuple[str, str], ...] = proc.extra.get("headers", ())  # type: ignore[assignment]
    return headers + _PATH_HEADERS.get(name, ())


def metrics_text(proc: procs.Proc) -> str:
    """What ``proc`` (a tfgate started with ``admin``) serves at /metrics now."""
    url = proc.extra.get("metrics")
    if not isinstance(url, str):
        raise RuntimeError(f"{proc.name} was started without an admin listener")
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
    return text


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
        observe.check_metrics(None, on=True)
        return start_tfgate(target, workdir, cpu, "WARNING")
    if name == "tfgate-nometrics":
        config = observe.write_config(workdir)
        observe.check_metrics(config, on=False)
        return start_tfgate(target, workdir, cpu, "WARNING", config=config, name=name)
    if name == "tfgate-traced":
        return start_traced(target, workdir, cpu)
    if name in ("tfgate-cached", "tfgate-cached-bypass"):
        config = cache.write_config(workdir)
        return start_tfgate(target, workdir, cpu, "WARNING", config=config, name=name, admin=True)
    if name == "tfgate-batched":
        config = batch.write_config(workdir, messages.MODEL)
        return start_tfgate(target, workdir, cpu, "WARNING", config=config, name=name, admin=True)
    if name == "tfgate-iris":
        return start_tfgate(target, workdir, cpu, "WARNING", name=name)
    if name == "tfgate-iris-batched":
        config = batch.write_config(workdir, batch.REAL_MODEL)
        return start_tfgate(target, workdir, cpu, "WARNING", config=config, name=name, admin=True)
    if name == "tfgate-info":
        return start_tfgate(target, workdir, cpu, "INFO")
    if name == "http-floor":
        return start_http_floor(target, workdir, cpu)
    if name in ("tfgate-http", "tfgate-http-v1"):
        return start_tfgate(target, workdir, cpu, "WARNING", http=True)
    if name in access.PATHS:
        made = access.write_config(name, workdir)
        proc = start_tfgate(target, workdir, cpu, "WARNING", config=made.config, name=name)
        proc.extra["headers"] = made.headers
        try:
            access.check_enforced(f"127.0.0.1:{proc.port}", PATHS[name].method)
        except BaseException:
            proc.stop()
            raise
        return proc
    raise ValueError(f"no path {name}")
