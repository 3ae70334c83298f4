"""Authentication and authorization on every front, end to end: tfgate with [auth] on, in
front of the fake TF Serving, whose call counts prove that a refused call never reached it."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import Answer, call
from tests.log_secrets import remember
from tests.test_passthrough import tf_predict
from tfgate.policy.config import ClientRights, PolicyConfig
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tfgate.v1 import inference_pb2 as v1

pytestmark = pytest.mark.asyncio

# A fresh key per run: a test finding one in a log cannot have found a constant.
ALPHA = remember(secrets.token_urlsafe(24))
BETA = remember(secrets.token_urlsafe(24))
UNKNOWN = remember(secrets.token_urlsafe(24))
SECRETS = (ALPHA, BETA, UNKNOWN)
# client alpha may call anything on half_*; beta all but GetModel on echo.
CLIENTS = {
    "alpha": ClientRights(("half_*",)),
    "beta": ClientRights(("echo",), ("Predict", "tfserving")),
}
BAD = {  # what a caller presents -> the reason it is refused with
    "missing": {},
    "malformed": {"authorization": f"Token {ALPHA}"},
    "unknown": {"authorization": f"Bearer {UNKNOWN}"},
    "unknown x-api-key": {"x-api-key": UNKNOWN},
}
REASON = {"missing": "missing", "malformed": "invalid", "unknown": "invalid"}
REASON["unknown x-api-key"] = "invalid"


def keys_file(path: Path) -> str:
    lines = []
    for client, key in (("alpha", ALPHA), ("beta", BETA)):
        lines += [f"[keys.{client}]", f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"']
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest_asyncio.fixture
async def gw(backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path) -> Running:
    policy = PolicyConfig(True, keys_file(tmp_path / "keys.toml"), clients=CLIENTS)
    return await start_gateway(backend.target, http_listen="127.0.0.1:0", policy=policy)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> object:
    """Every test here: no log line of the run holds a key."""
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    text = "\n".join(record.getMessage() for record in records)
    assert records  # the gateway's own lines at least: a capture that saw nothing proves nothing
    for key in SECRETS:
        assert key not in text


def backend_calls(backend: FakeTFServing) -> int:
    return sum(backend.calls.values())


def v1_predict(model: str = "half_plus_two") -> v1.PredictRequest:
    request = v1.PredictRequest(model=model)
    request.inputs["x"].floats.extend([1.0, 2.0])
    return request


Grpc = Callable[[Running, tuple[tuple[str, str], ...]], Awaitable[object]]


async def _v1(gw: Running, metadata: tuple[tuple[str, str], ...]) -> object:
    return await gw.stub.Predict(v1_predict(), metadata=metadata, timeout=5)


async def _tfs_predict(gw: Running, metadata: tuple[tuple[str, str], ...]) -> object:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    return await stub.Predict(tf_predict(), metadata=metadata, timeout=5)


async def _tfs_status(gw: Running, metadata: tuple[tuple[str, str], ...]) -> object:
    stub = model_service_pb2_grpc.ModelServiceStub(gw.channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    return await stub.GetModelStatus(request, metadata=metadata, timeout=5)


GRPC: dict[str, Grpc] = {"v1": _v1, "tfs-predict": _tfs_predict, "tfs-status": _tfs_status}


@pytest.mark.parametrize("method", sorted(GRPC))
async def test_grpc_refuses_bad_credentials(
    gw: Running, backend: FakeTFServing, method: str
) -> None:
    before = backend_calls(backend)
    for name, presented in BAD.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await GRPC[method](gw, tuple(presented.items()))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert refused.value.details() == REASON[name], name
    assert backend_calls(backend) == before
    for good in ((("authorization", f"Bearer {ALPHA}"),), (("x-api-key", ALPHA),)):
        await GRPC[method](gw, good)
    assert backend_calls(backend) > before


@dataclass
class Route:
    method: str
    path: str
    body: str | None = None


HTTP = {
    "tfs-predict": Route("POST", "/v1/models/half_plus_two:predict", '{"instances": [1, 2]}'),
    "tfs-status": Route("GET", "/v1/models/half_plus_two"),
    "tfs-metadata": Route("GET", "/v1/models/half_plus_two/metadata"),
    "tfs-classify": Route("POST", "/v1/models/half_plus_two:classify", '{"examples": []}'),
    "v1-predict": Route("POST", "/tfgate/v1/models/half_plus_two:predict", '{"inputs": {}}'),
    "v1-get-model": Route("GET", "/tfgate/v1/models/half_plus_two"),
}


async def http_call(gw: Running, route: Route, headers: dict[str, str]) -> Answer:
    return await call(gw, route.method, route.path, route.body, headers)


@pytest.mark.parametrize("name", sorted(HTTP))
async def test_http_refuses_bad_credentials(gw: Running, backend: FakeTFServing, name: str) -> None:
    route = HTTP[name]
    before = backend_calls(backend)
    for bad, presented in BAD.items():
        answer = await http_call(gw, route, presented)
        assert answer.status == 401, bad
        assert answer.headers["WWW-Authenticate"].startswith("Bearer"), bad
        if route.path.startswith("/v1/"):
            assert answer.json() == {"error": REASON[bad]}  # TF Serving's error body
        else:
            assert answer.json() == {
                "code": 16,
                "status": "UNAUTHENTICATED",
                "message": REASON[bad],
                "details": [],
            }
    assert backend_calls(backend) == before


async def test_http_good_keys_pass(gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    predict = HTTP["tfs-predict"]
    for headers in ({"Authorization": f"Bearer {ALPHA}"}, {"X-API-Key": ALPHA}):
        answer = await http_call(gw, predict, headers)
        assert answer.status == 200, answer.body
        assert answer.json() == {"predictions": [3.5, 4.0]}  # the latest version: x / 2 + 3
    answer = await http_call(gw, HTTP["v1-get-model"], {"Authorization": f"Bearer {ALPHA}"})
    assert answer.status == 200 and answer.json()["name"] == "half_plus_two"
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert lines and all(" client=alpha " in line for line in lines)


@pytest.mark.parametrize("name", sorted(HTTP))
async def test_http_another_clients_model_is_forbidden(
    gw: Running, backend: FakeTFServing, name: str
) -> None:
    before = backend_calls(backend)
    answer = await http_call(gw, HTTP[name], {"Authorization": f"Bearer {BETA}"})
    assert answer.status == 403
    body = answer.json()
    message = body["error"] if HTTP[name].path.startswith("/v1/") else body["message"]
    assert "on model 'half_plus_two'" in message
    assert "WWW-Authenticate" not in answer.headers
    assert backend_calls(backend) == before


async def test_grpc_another_clients_model_is_forbidden(
    gw: Running, backend: FakeTFServing, caplog: pytest.LogCaptureFixture
) -> None:
    beta = (("authorization", f"Bearer {BETA}"),)
    before = backend_calls(backend)
    for method in sorted(GRPC):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await GRPC[method](gw, beta)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
        assert "on model 'half_plus_two'" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # beta's own model, a method not granted
        await gw.stub.GetModel(v1.GetModelRequest(model="echo"), metadata=beta, timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "client beta may not call GetModel on model 'echo'"
    assert backend_calls(backend) == before
    lines = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert all("code=PERMISSION_DENIED" in line and " client=beta " in line for line in lines)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "echo"
    models = model_service_pb2_grpc.ModelServiceStub(gw.channel)
    await models.GetModelStatus(status, metadata=beta, timeout=5)  # beta's own model passes
    assert backend_calls(backend) > before


async def test_multi_inference_needs_every_model(gw: Running, backend: FakeTFServing) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(gw.channel)
    request = inference_pb2.MultiInferenceRequest()
    for name in ("echo", "half_plus_two"):
        request.tasks.add().model_spec.name = name
    before = backend_calls(backend)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.MultiInference(request, metadata=(("x-api-key", BETA),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'half_plus_two'" in (refused.value.details() or "")
    assert backend_calls(backend) == before


async def test_a_second_model_spec_cannot_smuggle_a_model(
    gw: Running, backend: FakeTFServing
) -> None:
    """protobuf merges a repeated ModelSpec and TF Serving reads the last name: the gate reads
    them all."""
    allowed = b"\x0a\x06\x0a\x04echo"  # model_spec { name: "echo" }
    forged = allowed + tf_predict("half_plus_two").SerializeToString()
    predict: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = gw.channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict"
    )
    before = backend_calls(backend)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await predict(forged, metadata=(("x-api-key", BETA),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert backend_calls(backend) == before


async def test_probes_and_health_stay_open(gw: Running) -> None:
    """(Reflection too: tests/test_auth_clients.py lists the services with grpcurl.)"""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for path in ("/healthz", "/readyz"):
        answer = await call(gw, "GET", path)
        assert answer.status in (200, 503) and "WWW-Authenticate" not in answer.headers
    health = health_pb2_grpc.HealthStub(gw.channel)
    answer = await health.Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert answer.status in (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )


@pytest.mark.parametrize("closed", ["health", "reflection", "probes"])
async def test_open_services_can_be_closed(
    backend: FakeTFServing, start_gateway: StartGateway, tmp_path: Path, closed: str
) -> None:
    """``[auth] open`` without a service: its callers need a key too; the others stay open."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    open_ = tuple(s for s in ("health", "reflection", "probes") if s != closed)
    policy = PolicyConfig(True, keys_file(tmp_path / "keys.toml"), clients=CLIENTS, open=open_)
    gw = await start_gateway(backend.target, http_listen="127.0.0.1:0", policy=policy)
    good = (("authorization", f"Bearer {ALPHA}"),)

    async def health(metadata: tuple[tuple[str, str], ...]) -> object:
        stub = health_pb2_grpc.HealthStub(gw.channel)
        request = health_pb2.HealthCheckRequest()
        return await stub.Check(request, metadata=metadata, timeout=5)  # type: ignore[attr-defined]

    async def reflection(metadata: tuple[tuple[str, str], ...]) -> object:
        stub = reflection_pb2_grpc.ServerReflectionStub(gw.channel)  # type: ignore[arg-type]
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=5)  # type: ignore[operator]
        return [answer async for answer in answers]

    async def probes(metadata: tuple[tuple[str, str], ...]) -> object:
        answer = await call(gw, "GET", "/healthz", headers=dict(metadata))
        if answer.status == 401:
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tfgate"'
            raise PermissionError(answer.body.decode())
        assert answer.status == 200, answer.body
        return answer

    services = {"health": health, "reflection": reflection, "probes": probes}
    for name, ask in services.items():
        if name != closed:
            await ask(())  # open: no key needed
            continue
        for bad, reason in (((), "missing"), ((("authorization", "Bearer nope-nope"),), "invalid")):
            with pytest.raises((grpc.aio.AioRpcError, PermissionError)) as info:
                await ask(bad)
            if isinstance(info.value, grpc.aio.AioRpcError):
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert info.value.details() == reason
            else:
                assert reason in str(info.value)
        await ask(good)


async def test_auth_is_off_by_default(backend: FakeTFServing, start_gateway: StartGateway) -> None:
    open_gw = await start_gateway(backend.target)
    assert not open_gw.gateway.config.policy.enabled
    answer = await open_gw.stub.Predict(v1_predict(), timeout=5)
    assert answer.model == "half_plus_two"
