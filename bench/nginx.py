"""nginx as a gRPC proxy (``grpc_pass``): the C baseline for a gateway hop.

One nginx process of its own (``master_process off``, one worker's work in that single process,
so its CPU time is all in one PID), with its prefix, config, logs and temp files in the run's
temporary directory. Backend connections are kept alive and reused: without an ``upstream``
``keepalive`` pool nginx opens a new backend connection per call and looks far worse than it is.
"""

from __future__ import annotations

from pathlib import Path

from bench import procs

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 64m;
    # Large requests stay in memory instead of a temp file.
    client_body_buffer_size 1m;
    # Default 1000 requests per client connection, then nginx closes it.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 1024;
    upstream backend {{
        server {backend};
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://backend;
            grpc_buffer_size 1m;
        }}
    }}
}}
"""


def start(backend: str, workdir: Path, cpu: str | None = None) -> procs.Proc:
    log = procs.fresh_log(workdir, "nginx")
    prefix = workdir / log.stem
    prefix.mkdir()
    port = procs.free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(prefix=prefix, backend=backend, listen=f"127.0.0.1:{port}"))
    args = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    popen = procs.spawn(args, log, cpu)
    proc = procs.Proc("nginx", [popen], log, port)
    procs.wait_for_port(popen, port)
    return proc
