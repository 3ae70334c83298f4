"""The local model server (``tfgate model-server``) for tests: a subprocess on 127.0.0.1:0.

The ``model_server`` fixture starts one server over models/ for the whole session and yields
its "127.0.0.1:PORT". The ``conformance`` fixture builds the models of TF Serving's own tests
(scripts/export_models.py --conformance) into a temporary directory, serves them with a
model server of its own, and starts ``tfgate serve`` with default settings in front of it.
Import a fixture into tests/conftest.py, or into a test module, to use it. The model server
imports TensorFlow and the official TF Serving protos, which is why it never runs inside the
pytest process (tfgate's stubs register the same proto names).

Without TensorFlow installed the tests that need it fail when $CI is set, and are skipped
otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIG = ROOT / "models" / "models.config"
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
LISTENING = "model-server listening on "
TFGATE_LISTENING = "tfgate listening on "


def require_tensorflow() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        reason = "TensorFlow is not installed (pip install -e '.[local]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the model server tests")
        pytest.skip(reason)


def model_server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfgate_model_server", *args]


def run_model_server(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs the model server to completion, e.g. with a config it must refuse."""
    return subprocess.run(
        model_server_command(*args),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ModelServer:
    """A running server subprocess (a model server, or tfgate) that this test session started."""

    process: subprocess.Popen[str]
    target: str
    log: Path

    def stop(self) -> int:
        """SIGTERM to our child's PID, then SIGKILL if it does not exit; its exit status."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    return self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            return self.process.wait(STOP_TIMEOUT)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_model_server(log: Path, *args: str, config: Path = MODEL_CONFIG) -> ModelServer:
    """Starts ``tfgate model-server`` on 127.0.0.1:0 over ``config`` and waits for its port."""
    require_tensorflow()
    command = model_server_command(
        "--model-config", str(config), "--host", "127.0.0.1", "--port", "0", *args
    )
    return _start(command, log, LISTENING, "the model server")


def start_tfgate(log: Path, backend: str) -> ModelServer:
    """Starts ``tfgate serve`` on 127.0.0.1:0 with default settings in front of ``backend``."""
    command = [sys.executable, "-m", "tfgate", "serve", "--listen", "127.0.0.1:0"]
    command += ["--backend", backend]
    env = {k: v for k, v in _env().items() if not k.startswith("TFGATE_")}
    server = _start(command, log, TFGATE_LISTENING, "tfgate", env)
    server.target = server.target.split()[0]  # "HOST:PORT (backend ...)"
    return server


def _start(
    command: list[str], log: Path, listening: str, what: str, env: dict[str, str] | None = None
) -> ModelServer:
    # stderr goes to a file: a pipe nobody reads would fill up and stall the server.
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env if env is not None else _env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    server = ModelServer(process, "", log)
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        server.stop()
        pytest.fail(f"{what} did not start in {STARTUP_TIMEOUT}s:\n{server.log_tail()}")
    if not line.startswith(listening):
        server.stop()
        pytest.fail(f"{what} did not start ({line!r}):\n{server.log_tail()}")
    server.target = line[len(listening) :].strip()
    return server


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


_RUNNING = pytest.StashKey[ModelServer]()


@pytest.fixture(scope="session")
def model_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One model server over models/ for the session; yields "127.0.0.1:PORT"."""
    # Test modules may import this fixture besides conftest; each import is a fixture of its
    # own to pytest, and all of them share the one server.
    stash = request.config.stash
    if _RUNNING in stash:
        yield stash[_RUNNING].target
        return
    server = start_model_server(tmp_path_factory.mktemp("model-server") / "stderr.log")
    stash[_RUNNING] = server
    try:
        yield server.target
    finally:
        del stash[_RUNNING]
        server.stop()


@dataclass(frozen=True)
class Conformance:
    """The models of TF Serving's tests, served by the local model server and by tfgate."""

    models: Path  # what scripts/export_models.py --conformance built
    targets: dict[str, str]  # "model-server" and "tfgate" -> "127.0.0.1:PORT"


@pytest.fixture(scope="session")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conformance]:
    """Builds the conformance models, serves them, and puts tfgate (default settings) in front."""
    require_tensorflow()
    tmp = tmp_path_factory.mktemp("conformance")
    models = tmp / "models"
    built = subprocess.run(
        [sys.executable, "scripts/export_models.py", "--conformance", str(models)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, (
        f"exporting the conformance models failed:\n{built.stderr[-4000:]}"
    )
    server = start_model_server(tmp / "model-server.log", config=models / "models.config")
    try:
        gateway = start_tfgate(tmp / "tfgate.log", server.target)
        try:
            yield Conformance(models, {"model-server": server.target, "tfgate": gateway.target})
        finally:
            gateway.stop()
    finally:
        server.stop()
