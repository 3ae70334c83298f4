"""What micro-batching buys: tfgate gathering concurrent Predicts for 2 ms into one backend call.

Paths (bench/run.py ``measure_batch``), each ``tfgate serve``:

- ``tfgate-batched``: a ``[models.half_plus_two.batching]`` table (``max_batch_size = 32``
  rows, ``max_delay = 2`` ms), next to the bare pass-through and tfgate without it, in
  alternating rounds, small requests (4 rows each: a batch holds up to 8 calls). The bench
  backend answers a Predict of N rows with N rows, and its metadata gives x and y a first
  dimension of -1, which is what lets tfgate batch them (bench/messages.py, bench/backend.js).
  Its /metrics after the rounds give the ``tfgate_batch_size`` histogram (calls per backend
  Predict, 1 for a call sent alone), hence the mean batch size (bench/report.py
  ``batch_counts``); a tfgate without it reads "not available".
- ``tfgate-iris`` and ``tfgate-iris-batched``: the same without and with a batching table for
  ``iris``, in front of the local model server (``tfgate model-server`` on models/, a real
  SavedModel run by TensorFlow) instead of the bench backend; one flower per call. The model
  server is not pinned (pinned to one CPU next to h2load its TensorFlow threads starve), so it
  shares tfgate's CPU too.

A tfgate that refuses the batching table (a release without micro-batching) is found out by
starting it once (``unavailable``); its paths are then left out with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench import procs
from tfgate.v1 import inference_pb2

MAX_BATCH_SIZE = 32
MAX_DELAY_MS = 2
REAL_MODEL = "iris"
REAL_CONC = 16
ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIG = ROOT / "models" / "models.config"
# One flower: sepal length and width, petal length and width (cm), as iris's "features" row.
FLOWER = (5.1, 3.5, 1.4, 0.2)
_MODEL_SERVER_LINE = r"model-server listening on \S+:(\d+)"


def config_text(model: str) -> str:
    return (
        f"[models.{model}.batching]\nmax_batch_size = {MAX_BATCH_SIZE}\n"
        f"max_delay = {MAX_DELAY_MS}\n"
    )


def write_config(workdir: Path, model: str) -> Path:
    """The config file batching ``model``, written into ``workdir``."""
    directory = workdir / f"tfgate-batched-{model}"
    directory.mkdir(exist_ok=True)
    config = directory / "tfgate.toml"
    config.write_text(config_text(model))
    return config


def unavailable(log: str) -> str:
    """Why a tfgate that exited at start-up with ``log`` cannot batch ("" when its log does not
    show a refused batching table)."""
    for line in log.splitlines():
        if "configuration error" in line and "batching" in line:
            return line.strip()
    return ""


def start_model_server(workdir: Path, cpu: str | None) -> procs.Proc:
    """The local model server over models/ (TensorFlow: this venv's Python), on ``cpu``."""
    args = [sys.executable, "-m", "tfgate_model_server", "--model-config", str(MODEL_CONFIG)]
    args += ["--host", "127.0.0.1", "--port", "0"]
    env = {**procs.clean_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return procs.start_server(
        "model-server", args, workdir, cpu, env=env, pattern=_MODEL_SERVER_LINE, timeout=180.0
    )


def iris_request() -> bytes:
    """tfgate.v1's Predict of one flower to iris (no preprocessing: its ``features`` input)."""
    request = inference_pb2.PredictRequest(model=REAL_MODEL)
    request.inputs["features"].floats.extend(FLOWER)
    return request.SerializeToString()


def check_iris(data: bytes) -> None:
    """Raises ValueError unless ``data`` is iris's answer for one flower: 3 probabilities."""
    response = inference_pb2.PredictResponse.FromString(data)
    if response.model != REAL_MODEL or "probabilities" not in response.outputs:
        raise ValueError(f"unexpected answer: model={response.model!r} {list(response.outputs)}")
    p = np.array(response.outputs["probabilities"].floats, dtype=np.float64)
    if p.shape != (3,) or not np.all(p >= 0) or not abs(p.sum() - 1.0) < 1e-4:
        raise ValueError(f"iris: not 3 probabilities of one flower: {p.tolist()}")
