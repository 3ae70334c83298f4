"""Real clients with a key: curl against the HTTP routes, grpcurl against tfgate.v1 and the
forwarded TF Serving API (reflection, like health, stays open)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import base_url
from tests.test_auth import ALPHA, BETA, CLIENTS, keys_file
from tests.test_grpcurl import grpcurl_binary
from tests.test_http_docs import curl_binary
from tfgate.policy.config import PolicyConfig
from tfgate.policy.keys import parse_keys

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def gw(backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path) -> Running:
    policy = PolicyConfig(True, keys_file(tmp_path / "keys.toml"), clients=CLIENTS)
    return await start_gateway(backend.target, http_listen="127.0.0.1:0", policy=policy)


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def curl(gw: Running, path: str, *flags: str) -> tuple[int, dict[str, str], str]:
    """curl -i: the status, the headers (lower-cased names) and the body."""
    code, out, err = await run(curl_binary(), "-sS", "-i", *flags, base_url(gw) + path)
    assert code == 0, err
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_curl_with_and_without_a_key(gw: Running, backend: FakeTFServing) -> None:
    path, body = "/v1/models/half_plus_two:predict", '{"instances": [1, 2]}'
    status, headers, answer = await curl(gw, path, "-d", body)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert json.loads(answer) == {"error": "missing"}
    assert backend.calls["Predict"] == 0
    status, _, answer = await curl(gw, path, "-H", f"Authorization: Bearer {ALPHA}", "-d", body)
    assert status == 200 and json.loads(answer) == {"predictions": [3.5, 4.0]}
    status, _, answer = await curl(gw, path, "-H", f"x-api-key: {BETA}", "-d", body)
    assert status == 403
    assert (
        json.loads(answer)["error"] == "client beta may not call tfserving on model 'half_plus_two'"
    )
    v1_path = "/tfgate/v1/models/half_plus_two:predict"
    v1_body = '{"inputs": {"x": {"floats": [1, 2]}}}'
    status, _, answer = await curl(gw, v1_path, "-H", "Authorization: Bearer nope", "-d", v1_body)
    assert status == 401 and json.loads(answer)["status"] == "UNAUTHENTICATED"
    status, _, answer = await curl(
        gw, v1_path, "-H", f"Authorization: Bearer {ALPHA}", "-d", v1_body
    )
    assert status == 200 and json.loads(answer)["outputs"]["y"]["floats"] == [3.5, 4.0]
    assert backend.calls["Predict"] == 2
    status, _, _ = await curl(gw, "/healthz")
    assert status == 200


async def grpcurl(gw: Running, *args: str) -> tuple[int, str, str]:
    return await run(grpcurl_binary(), "-plaintext", "-max-time", "10", *args)


async def test_grpcurl_with_and_without_a_key(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = await grpcurl(gw, gw.target, "list")  # reflection needs no key
    assert code == 0 and "tfgate.v1.InferenceService" in out.split(), err
    body = json.dumps({"model": "half_plus_two", "inputs": {"x": {"floats": [1, 2]}}})
    method = "tfgate.v1.InferenceService/Predict"
    code, out, err = await grpcurl(gw, "-d", body, gw.target, method)
    assert code != 0 and "Code: Unauthenticated" in err and "Message: missing" in err
    code, out, err = await grpcurl(
        gw, "-H", f"authorization: Bearer {BETA}", "-d", body, gw.target, method
    )
    assert code != 0 and "Code: PermissionDenied" in err
    assert "may not call Predict on model 'half_plus_two'" in err
    assert backend.calls["Predict"] == 0
    code, out, err = await grpcurl(
        gw, "-H", f"authorization: Bearer {ALPHA}", "-d", body, gw.target, method
    )
    assert code == 0, err
    assert json.loads(out)["outputs"]["y"]["floats"] == [3.5, 4]
    tfs = json.dumps({"modelSpec": {"name": "half_plus_two"}})
    status = "tensorflow.serving.ModelService/GetModelStatus"
    code, out, err = await grpcurl(gw, "-H", f"x-api-key: {ALPHA}", "-d", tfs, gw.target, status)
    assert code == 0 and "AVAILABLE" in out, err
    code, out, err = await grpcurl(gw, "-d", tfs, gw.target, status)
    assert code != 0 and "Code: Unauthenticated" in err
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "client=alpha" in logged and "client=beta" in logged
    assert ALPHA not in logged and BETA not in logged


ROOT = Path(__file__).resolve().parent.parent


async def test_the_documented_digest_is_the_keys() -> None:
    """The README's `tfgate hash-key` line prints what it shows, and docs/security.md's key file
    names that key's client."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^echo -n (\S+) \| tfgate hash-key +# ([0-9a-f]{64})$", readme, re.M)
    assert line is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tfgate",
        "hash-key",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(line.group(1).encode()), 30)
    assert proc.returncode == 0 and out.decode().strip() == line.group(2)
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(# /run/secrets.*?)```", security, re.S)
    assert block is not None
    assert parse_keys(block.group(1), "docs/security.md").client_of(line.group(1)) == "reports"
