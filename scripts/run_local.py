"""`make run`: the local model server and tfgate in front of it, until Ctrl-C or SIGTERM.

    make run                                  # model server on 8500, tfgate on 8080 (HTTP 8081)
    TFGATE_BACKEND=host:port make run         # tfgate in front of an existing TF Serving

A port that is taken is replaced by a free one below 32768 (never one from the kernel's
ephemeral range), and the commands printed at start-up use the ports chosen. On Ctrl-C or
SIGTERM the children are stopped in turn: SIGTERM to the PID, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tfgate.healthcheck import health_status

ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIG = ROOT / "models" / "models.config"
# tfgate's own config: the preprocessing of the demo models (text in, labels out).
DEMO_CONFIG = ROOT / "config" / "tfgate.toml"
HOST = "127.0.0.1"
MODEL_SERVER_PORT = 8500
GATEWAY_PORT = 8080
HTTP_PORT = 8081
# Linux hands out ephemeral ports from 32768 up: a fixed port there could be taken at any time.
EPHEMERAL_START = 32768
STARTUP_TIMEOUT = 180.0
STOP_GRACE = 10.0


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else the first free port above it below 32768."""
    for port in range(preferred, EPHEMERAL_START):
        if port_is_free(port):
            return port
    raise SystemExit(f"run_local: no free port in {preferred}..{EPHEMERAL_START - 1}")


class Stack:
    """The child processes this script started, stopped in reverse order by PID."""

    def __init__(self, stop: threading.Event) -> None:
        self.children: list[tuple[str, subprocess.Popen[str]]] = []
        self.stop = stop

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        print(f"run_local: starting {name}: {' '.join(command)}", flush=True)
        # A session of its own: Ctrl-C reaches this script only, which stops the children
        # in order (the gateway before its backend).
        process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, start_new_session=True)
        self.children.append((name, process))
        return process

    def wait_until_answers(self, name: str, process: subprocess.Popen[str], target: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while health_status(target, 1.0) is None:
            if process.poll() is not None:
                raise SystemExit(f"run_local: {name} exited with status {process.returncode}")
            if self.stop.is_set():
                raise SystemExit(0)
            if time.monotonic() > deadline:
                raise SystemExit(f"run_local: {name} did not answer on {target}")
            time.sleep(0.2)

    def exited(self) -> str | None:
        for name, process in self.children:
            if process.poll() is not None:
                return f"{name} exited with status {process.returncode}"
        return None

    def stop_all(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    print(f"run_local: {name} ignored SIGTERM; killing it", flush=True)
                    process.kill()
                    process.wait()


def start_model_server(stack: Stack) -> str:
    port = choose_port(MODEL_SERVER_PORT)
    command = [
        sys.executable, "-m", "tfgate_model_server",
        "--model-config", str(MODEL_CONFIG), "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    process = stack.start("model server", command, env=env)
    target = f"{HOST}:{port}"
    stack.wait_until_answers("the model server", process, target)
    return target


def print_commands(gateway: str, http: str) -> None:
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    call = f"{grpcurl} -plaintext"
    predict = '{"model":"half_plus_two","inputs":{"x":{"floats":[1,2,5]}}}'
    canary = '{"model":"half_plus_two","version_label":"canary","inputs":{"x":{"floats":[1,2,5]}}}'
    get_model = '{"model":"half_plus_two"}'
    sentiment = (
        '{"model":"sentiment","inputs":{"text":{"strings":'
        '["A great movie, I loved it!","Boring plot and awful acting."]}}}'
    )
    iris = '{"model":"iris","inputs":{"measurements":{"floats":[5.1,3.5,1.4,0.2,6.7,3.0,5.6,2.3]}}}'
    service = "tfgate.v1.InferenceService"
    print(
        f"""
tfgate is listening on {gateway}. Try:

  {call} {gateway} list
  {call} {gateway} describe {service}
  {call} -d '{predict}' {gateway} {service}/Predict
  {call} -d '{canary}' {gateway} {service}/Predict
  {call} -d '{get_model}' {gateway} {service}/GetModel
  {call} -d '{sentiment}' {gateway} {service}/Predict
  {call} -d '{iris}' {gateway} {service}/Predict

and over HTTP (TF Serving's REST API, and tfgate.v1 as JSON):

  curl -d '{{"instances": [1, 2, 5]}}' http://{http}/v1/models/half_plus_two:predict
  curl http://{http}/v1/models/half_plus_two
  curl -d '{{"inputs": {{"x": {{"floats": [1, 2, 5]}}}}}}' http://{http}/tfgate/v1/models/half_plus_two:predict
  curl http://{http}/readyz

The status page: http://{http}/ (open it in a browser)
Prometheus metrics: http://{http}/metrics

Ctrl-C stops everything.
""",
        flush=True,
    )


def main() -> int:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = Stack(stop)
    try:
        backend = os.environ.get("TFGATE_BACKEND", "").strip()
        if backend:
            print(
                f"run_local: TFGATE_BACKEND={backend}; not starting the local model server",
                flush=True,
            )
        else:
            backend = start_model_server(stack)
        gateway = f"{HOST}:{choose_port(GATEWAY_PORT)}"
        http = f"{HOST}:{choose_port(HTTP_PORT)}"
        gateway_process = stack.start(
            "tfgate",
            [
                sys.executable,
                "-m",
                "tfgate",
                "serve",
                "--listen",
                gateway,
                "--http-listen",
                http,
                "--backend",
                backend,
                "--config",
                str(DEMO_CONFIG),
            ],
        )
        stack.wait_until_answers("tfgate", gateway_process, gateway)
        print_commands(gateway, http)
        while not stop.wait(0.5):
            problem = stack.exited()
            if problem:
                print(f"run_local: {problem}; stopping", flush=True)
                return 1
        return 0
    finally:
        stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
