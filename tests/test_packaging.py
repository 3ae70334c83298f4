"""`pip install .` gives a working `tfgate` with no TensorFlow, and claims no TF package names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("tfgate-*.whl")
    return found


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("tfgate-")}
    assert tops == {"tfgate"}
    for module in (
        "tfgate/cli.py",
        "tfgate/v1/inference_pb2.py",
        "tfgate/tfs/tensorflow_serving/apis/predict_pb2.py",
        "tfgate/tfs/tensorflow_serving/apis/prediction_service_pb2_grpc.py",
    ):
        assert module in names
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    )
    required = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert required, metadata
    assert not [r for r in required if r.lower().startswith("tensorflow")]


def test_installed_tfgate_runs_without_tensorflow(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert not (site / "tensorflow").exists()
    assert not (site / "tensorflow_serving").exists()
    # googleapis-common-protos is a build-time dependency: tfgate.v1's google.api.http options
    # come from gen/'s own tfgate.tfs.google.api.
    probe = (
        "import sys, tfgate.app, tfgate.cli, tfgate.v1.inference_pb2; "
        "assert 'tensorflow' not in sys.modules and 'tensorflow_serving' not in sys.modules; "
        "assert 'google.api' not in sys.modules; "
        "print('ok')"
    )
    done = subprocess.run(
        [str(python), "-c", probe], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr

    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("TFGATE_")}
    proc = subprocess.Popen(
        [
            str(env_dir / "bin" / "tfgate"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tfgate listening on 127.0.0.1:"), line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
