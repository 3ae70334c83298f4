"""``tfgate model-server`` as a process: its flags, its start-up checks, its exit status."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.model_server_fixtures import ROOT, run_model_server, start_model_server
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MODELS = ROOT / "models"

HALF_PLUS_TWO = """
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "%(base_path)s"
    model_platform: "tensorflow"
    %(extra)s
  }
}
"""


def test_help_is_fast_and_names_the_flags() -> None:
    result = run_model_server("--help", timeout=20)
    assert result.returncode == 0
    for flag in ("--model-config", "--models-root", "--port", "--host"):
        assert flag in result.stdout
    assert "--enable-serialization-as-tensor-content" in result.stdout


def test_tfgate_model_server_hands_over_to_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tfgate", "model-server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tfgate model-server")
    assert "--model-config" in result.stdout


# A module set to None in sys.modules is one importlib cannot find, as if not installed.
@pytest.mark.parametrize("missing", ["tfgate_model_server", "tensorflow", "tensorflow_serving"])
def test_tfgate_model_server_without_the_package_or_tensorflow(missing: str) -> None:
    probe = (
        f"import sys; sys.modules[{missing!r}] = None; from tfgate.cli import main; "
        "sys.exit(main(['model-server', '--help']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert f"tfgate: model-server needs {missing}:" in result.stderr
    assert "pip install -e '.[local]'" in result.stderr


def write_config(tmp_path: Path, base_path: str = "/models/half_plus_two", extra: str = "") -> Path:
    path = tmp_path / "models.config"
    path.write_text(HALF_PLUS_TWO % {"base_path": base_path, "extra": extra})
    return path


@pytest.mark.parametrize(
    ("base_path", "extra", "message"),
    [
        pytest.param(
            "half_plus_two",
            "",
            "Expected model half_plus_two to have an absolute path or URI; got "
            "base_path()=half_plus_two",
            id="relative-base-path",
        ),
        pytest.param(
            "/models/nope",
            "",
            "Could not find base path",
            id="missing-base-path",
        ),
        pytest.param(
            "/models/half_plus_two",
            'version_labels { key: "stable" value: 1 }',
            "Request to assign label to version 1 of model half_plus_two, which is not "
            "currently available for inference",
            id="label-on-unserved-version",
        ),
        pytest.param(
            "/models/half_plus_two",
            'model_platform: "tensorflow"',
            'should not have multiple "model_platform" fields',
            id="unparsable",
        ),
        pytest.param(
            "gs://bucket/half_plus_two",
            "",
            "only local paths are supported",
            id="uri",
        ),
    ],
)
def test_refuses_bad_configs(tmp_path: Path, base_path: str, extra: str, message: str) -> None:
    # The latest-version default serves only version 2 of half_plus_two.
    config = write_config(tmp_path, base_path, extra)
    result = run_model_server("--model-config", str(config), "--models-root", str(MODELS))
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_refuses_duplicate_models_and_other_platforms(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    entry = 'config { name: "m" base_path: "/models/iris" model_platform: "%s" }'
    config.write_text(f"model_config_list {{ {entry % 'tensorflow'} {entry % 'tensorflow'} }}")
    result = run_model_server("--model-config", str(config), "--models-root", str(MODELS))
    assert result.returncode == 1
    assert "Illegal to list model m multiple times in config list" in result.stderr

    config.write_text(f"model_config_list {{ {entry % 'pytorch'} }}")
    result = run_model_server("--model-config", str(config), "--models-root", str(MODELS))
    assert result.returncode == 1
    assert "PlatformConfigMap has no entry for platform pytorch" in result.stderr


def test_refuses_a_missing_config_file(tmp_path: Path) -> None:
    result = run_model_server("--model-config", str(tmp_path / "nope.config"))
    assert result.returncode == 1
    assert "Cannot read model config file" in result.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_tensor_content_flag_and_clean_stop(tmp_path: Path, stop_signal: signal.Signals) -> None:
    server = start_model_server(tmp_path / "stderr.log", "--enable-serialization-as-tensor-content")
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        x = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
        x.tensor_shape.dim.add().size = 2
        request.inputs["x"].CopyFrom(x)
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            y = stub.Predict(request, timeout=10).outputs["y"]
        assert list(y.float_val) == []
        assert np.frombuffer(y.tensor_content, dtype="<f4").tolist() == [3.5, 4.0]

        server.process.send_signal(stop_signal)
        assert server.process.wait(15) == 0, server.log_tail()
    finally:
        server.stop()
