"""The ``tfgate`` program runs grpc with tfgate.grpc_flags' experiments: set before grpc is first
imported, and seen at work, unless the environment already names experiments of its own.

What grpc does is seen in its own tcp trace: its polling engine (the experiments off) logs from
tcp_server_posix.cc, tcp_client_posix.cc and tcp_posix.cc, its EventEngine from endpoint.cc
(and, from 1.84, posix_endpoint.cc).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.fake_tfserving import FakeTFServing
from tests.test_gateway import hp2
from tests.test_lifecycle import end
from tfgate import grpc_flags
from tfgate.v1 import inference_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
EVENT_ENGINE = re.compile(r"[\s_]endpoint\.cc:\d+\]")  # a line of the EventEngine's endpoint


def _environment(**extra: str) -> dict[str, str]:
    """This environment without grpc's or tfgate's settings, grpc's tcp trace on, and ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "TFGATE_"))}
    return {**clean, "GRPC_TRACE": "tcp", "GRPC_VERBOSITY": "debug", **extra}


def _start(backend: str, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``python -m tfgate serve`` in front of ``backend`` in ``env``, its stderr (with grpc's
    trace) in ``log``; with the address it listens on."""
    serve = ["serve", "--listen", "127.0.0.1:0", "--backend", backend, "--log-level", "WARNING"]
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tfgate", *serve],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("tfgate listening on 127.0.0.1:"):
        end(proc)
        raise AssertionError(line)
    return proc, line.split()[3]


async def _serve_one_call(backend: str, log: Path, env: dict[str, str]) -> str:
    """tfgate (_start) answering one Predict, so that its channel to ``backend`` connects too;
    its stderr."""
    proc, target = _start(backend, log, env)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            answer = await inference_pb2_grpc.InferenceServiceStub(channel).Predict(
                hp2(), timeout=10
            )
        assert list(answer.outputs["y"].floats) == [3.5, 4.0, 5.5]
    finally:
        end(proc)
    return _read(log)


def _read(path: Path) -> str:
    return path.read_text()


@pytest.mark.asyncio
async def test_tfgate_serve_runs_grpc_on_its_polling_engine(
    backend: FakeTFServing, tmp_path: Path
) -> None:
    trace = await _serve_one_call(backend.target, tmp_path / "tfgate.log", _environment())
    assert "tcp_server_posix.cc" in trace  # the listener
    assert "tcp_client_posix.cc" in trace  # the channel to TF Serving
    assert not EVENT_ENGINE.search(trace)
    assert "Unknown experiment" not in trace  # every name is one the installed grpc has


@pytest.mark.asyncio
async def test_experiments_the_environment_names_win_even_none(
    backend: FakeTFServing, tmp_path: Path
) -> None:
    env = _environment(GRPC_EXPERIMENTS="")  # grpc's own defaults: the EventEngine
    trace = await _serve_one_call(backend.target, tmp_path / "tfgate.log", env)
    assert EVENT_ENGINE.search(trace)
    assert "tcp_server_posix.cc" not in trace
    assert "tcp_client_posix.cc" not in trace


def test_the_program_imports_no_grpc_before_it_sets_the_flags() -> None:
    # What runs before run(): the module python -m tfgate and the console script import.
    found = subprocess.run(
        [sys.executable, "-c", "import sys, tfgate.cli; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('grpc', 'grpc_health', 'google')))"],
        env=_environment(), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert found == "[]"
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="tfgate")
    assert script.value == "tfgate.cli:run"
    assert (ROOT / "server/tfgate/__main__.py").read_text().count("run()") == 1


def test_set_default_fills_in_only_a_missing_variable() -> None:
    empty: dict[str, str] = {}
    grpc_flags.set_default(empty)
    assert empty == {"GRPC_EXPERIMENTS": grpc_flags.EXPERIMENTS}
    users = {"GRPC_EXPERIMENTS": "", "PATH": "/bin"}
    grpc_flags.set_default(users)
    assert users == {"GRPC_EXPERIMENTS": "", "PATH": "/bin"}
