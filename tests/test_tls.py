"""TLS on tfgate's listeners (gRPC and HTTP), mutual TLS and the caller's identity, certificates
replaced on disk, and TLS to TF Serving; with certificates made by the openssl command."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web

from tests.certs import SERVER_SANS, Authority, Leaf, authority
from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.test_grpcurl import grpcurl_binary
from tfgate import app, cli, tls
from tfgate.config import Config, ConfigError, load
from tfgate.healthcheck import ClientTls, check_health
from tfgate.policy.config import ClientRights, PolicyConfig
from tfgate.v1 import inference_pb2, inference_pb2_grpc

T = inference_pb2.Tensor
REQUEST = inference_pb2.PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0, 4.0])})
EXPECTED = [3.5, 5.0]  # version 2: x / 2 + 3


@dataclass(frozen=True)
class Pki:
    ca: Authority
    other_ca: Authority
    server: Leaf
    # A server certificate from the other CA, to replace ``server`` on disk.
    server_other: Leaf
    client: Leaf  # SANs URI:spiffe://tfgate.test/client-a, DNS:client-a.example
    client_cn: Leaf  # no SAN: the subject's CN only
    client_other: Leaf  # from the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = authority(folder, "ca"), authority(folder, "other-ca")
    return Pki(
        ca=ca,
        other_ca=other,
        server=ca.issue("server", "localhost", SERVER_SANS),
        server_other=other.issue("server-other", "localhost", SERVER_SANS),
        client=ca.issue(
            "client", "client-a-cn", ("URI:spiffe://tfgate.test/client-a", "DNS:client-a.example")
        ),
        client_cn=ca.issue("client-cn", "client-b"),
        client_other=other.issue("client-other", "client-a-cn", ("DNS:client-a.example",)),
    )


def served_files(pki: Pki, folder: Path) -> tuple[Path, Path]:
    """Copies of the server certificate and key that a test may replace."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    return cert, key


def secure(
    port: int, ca: Path, client: Leaf | None = None, name: str = "localhost"
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        ca.read_bytes(),
        client.key.read_bytes() if client else None,
        client.cert.read_bytes() if client else None,
    )
    options = [("grpc.ssl_target_name_override", name)]
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


async def predict(channel: grpc.aio.Channel, within: float = 5.0) -> list[float]:
    answer = await inference_pb2_grpc.InferenceServiceStub(channel).Predict(REQUEST, timeout=within)
    return list(answer.outputs["y"].floats)


async def refused(channel: grpc.aio.Channel) -> str:
    """The details of the UNAVAILABLE a call on ``channel`` fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await predict(channel, within=3.0)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    return info.value.details() or ""


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def curl(*args: str) -> tuple[int, str]:
    return await run("curl", "-sS", "--max-time", "10", *args)


async def tls_gateway(
    start_gateway: StartGateway, backend: FakeTFServing, cert: Path, key: Path, **settings: Any
) -> Running:
    return await start_gateway(
        backend.target,
        http_listen="127.0.0.1:0",
        tls_cert=str(cert),
        tls_key=str(key),
        **settings,
    )


# -- configuration ----------------------------------------------------------------------------


def test_config_refuses_incomplete_or_missing_files(pki: Pki, tmp_path: Path) -> None:
    cert, key = str(pki.server.cert), str(pki.server.key)
    with pytest.raises(ConfigError, match="tls_cert and tls_key: set both"):
        Config(tls_key=key)
    with pytest.raises(ConfigError, match="tls_cert and tls_key: set both"):
        Config(tls_cert=cert)
    with pytest.raises(ConfigError, match="tls_key: no such file"):
        Config(tls_cert=cert, tls_key=str(tmp_path / "absent.key"))
    with pytest.raises(ConfigError, match="tls_client_ca: mutual TLS needs tls_cert"):
        Config(tls_client_ca=str(pki.ca.cert))
    with pytest.raises(ConfigError, match=r"backend_tls_server_name: .* needs backend_tls_ca"):
        Config(backend_tls_server_name="tfs.internal")
    with pytest.raises(ConfigError, match="backend_tls_cert and backend_tls_key"):
        Config(backend_tls_ca=str(pki.ca.cert), backend_tls_cert=cert)
    with pytest.raises(ConfigError, match="tls_reload_interval: must be positive"):
        Config(tls_cert=cert, tls_key=key, tls_reload_interval=0)


def test_config_tls_table_and_environment(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(
        f'[tls]\ncert = "{pki.server.cert}"\nkey = "{pki.server.key}"\n'
        f'backend_ca = "{pki.ca.cert}"\nbackend_server_name = "tfs.internal"\n'
    )
    config = load({}, {"TFGATE_TLS_CLIENT_CA": str(pki.ca.cert)}, str(path))
    assert config.tls_cert == str(pki.server.cert) and config.tls_key == str(pki.server.key)
    assert config.tls_client_ca == str(pki.ca.cert)
    assert config.backend_tls_ca == str(pki.ca.cert)
    assert config.backend_tls_server_name == "tfs.internal"
    path.write_text('[tls]\ncertificate = "x"\n')
    with pytest.raises(ConfigError, match=r"tls.certificate .*unknown setting"):
        load({}, {}, str(path))
    path.write_text(f'tls_cert = "{pki.server.cert}"\n[tls]\ncert = "{pki.server.cert}"\n')
    with pytest.raises(ConfigError, match="tls_cert is set both"):
        load({}, {}, str(path))


def test_a_key_that_does_not_fit_is_refused_at_start(pki: Pki, tmp_path: Path) -> None:
    config = Config(tls_cert=str(pki.server.cert), tls_key=str(pki.client.key))
    with pytest.raises(ConfigError, match=r"tls_cert, tls_key: .* not a PEM certificate"):
        app.Gateway(config)
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    config = Config(backend_tls_ca=str(garbage))
    with pytest.raises(ConfigError, match=r"backend_tls_ca: .* not a PEM CA bundle"):
        app.Gateway(config)


# -- the listeners ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_listeners_refuse_plain_text_and_serve_tls(
    pki: Pki, tmp_path: Path, backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    cert, key = served_files(pki, tmp_path)
    gw = await tls_gateway(start_gateway, backend, cert, key)
    port, http_port = gw.gateway.port, gw.gateway.http_port

    plain = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await refused(plain)
    finally:
        await plain.close()
    channel = secure(port, pki.ca.cert)
    try:
        assert await predict(channel) == EXPECTED
    finally:
        await channel.close()

    status, out = await curl(f"http://127.0.0.1:{http_port}/healthz")
    assert status != 0 and '"status":"ok"' not in out
    status, out = await curl("--cacert", str(pki.ca.cert), f"https://127.0.0.1:{http_port}/healthz")
    assert status == 0 and out == '{"status":"ok"}', out
    status, out = await curl(
        "--cacert",
        str(pki.ca.cert),
        "-d",
        '{"instances": [1.0, 4.0]}',
        f"https://localhost:{http_port}/v1/models/half_plus_two:predict",
    )
    assert status == 0 and '"predictions"' in out and "3.5" in out, out
    # A client that trusts another CA does not get through.
    status, out = await curl(
        "--cacert", str(pki.other_ca.cert), f"https://127.0.0.1:{http_port}/healthz"
    )
    assert status != 0 and "certificate" in out.lower(), out

    grpcurl = grpcurl_binary()
    data = '{"model": "half_plus_two", "inputs": {"x": {"floats": [1, 4]}}}'
    method = "tfgate.v1.InferenceService/Predict"
    target = f"127.0.0.1:{port}"
    status, out = await run(grpcurl, "-plaintext", "-max-time", "5", "-d", data, target, method)
    assert status != 0 and "3.5" not in out
    status, out = await run(
        grpcurl, "-cacert", str(pki.ca.cert), "-max-time", "10", "-d", data, target, method
    )
    assert status == 0 and "3.5" in out, out

    ok, line = await asyncio.to_thread(check_health, target, 3.0, tls=ClientTls(str(pki.ca.cert)))
    assert ok, line
    ok, line = await asyncio.to_thread(check_health, target, 3.0)
    assert not ok and "UNAVAILABLE" in line


@pytest.mark.asyncio
async def test_mutual_tls_on_the_gateway(
    pki: Pki, tmp_path: Path, backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    cert, key = served_files(pki, tmp_path)
    gw = await tls_gateway(start_gateway, backend, cert, key, tls_client_ca=str(pki.ca.cert))
    port, http_port = gw.gateway.port, gw.gateway.http_port

    for client in (None, pki.client_other):
        channel = secure(port, pki.ca.cert, client)
        try:
            await refused(channel)
        finally:
            await channel.close()
    channel = secure(port, pki.ca.cert, pki.client)
    try:
        assert await predict(channel) == EXPECTED
    finally:
        await channel.close()

    url = f"https://127.0.0.1:{http_port}/healthz"
    ca = ("--cacert", str(pki.ca.cert))
    status, out = await curl(*ca, url)
    assert status != 0 and '"status":"ok"' not in out
    other = pki.client_other
    status, out = await curl(*ca, "--cert", str(other.cert), "--key", str(other.key), url)
    assert status != 0 and '"status":"ok"' not in out
    good = pki.client
    status, out = await curl(*ca, "--cert", str(good.cert), "--key", str(good.key), url)
    assert status == 0 and out == '{"status":"ok"}', out

    target = f"127.0.0.1:{port}"
    ok, line = await asyncio.to_thread(check_health, target, 3.0, tls=ClientTls(str(pki.ca.cert)))
    assert not ok
    good_tls = ClientTls(str(pki.ca.cert), str(good.cert), str(good.key))
    ok, line = await asyncio.to_thread(check_health, target, 3.0, tls=good_tls)
    assert ok, line


# -- the caller's identity --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_certificate_names_the_client_for_the_gate(
    pki: Pki,
    tmp_path: Path,
    backend: FakeTFServing,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With [auth] tls_identity, a verified certificate's name is the client on both listeners:
    client-a's section grants half_plus_two; client-b (a certificate with only a CN) has none."""
    cert, key = served_files(pki, tmp_path)
    rights = {"spiffe://tfgate.test/client-a": ClientRights(models=("half_plus_two",))}
    policy = PolicyConfig(True, tls_identity=True, clients=rights)
    gw = await tls_gateway(
        start_gateway, backend, cert, key, tls_client_ca=str(pki.ca.cert), policy=policy
    )
    port, http_port = gw.gateway.port, gw.gateway.http_port
    caplog.set_level(logging.INFO, "tfgate.access")

    channel = secure(port, pki.ca.cert, pki.client)
    try:
        assert await predict(channel) == EXPECTED
    finally:
        await channel.close()
    channel = secure(port, pki.ca.cert, pki.client_cn)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await predict(channel)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "client-b" in (info.value.details() or "")
    finally:
        await channel.close()

    url = f"https://127.0.0.1:{http_port}/v1/models/half_plus_two:predict"
    body = ("-d", '{"instances": [1.0, 4.0]}', "--cacert", str(pki.ca.cert))
    for leaf, want in ((pki.client, '"predictions"'), (pki.client_cn, "may not call")):
        status, out = await curl(*body, "--cert", str(leaf.cert), "--key", str(leaf.key), url)
        assert status == 0 and want in out, out
    logged = [r.getMessage() for r in caplog.records if r.name == "tfgate.access"]
    assert sum("client=spiffe://tfgate.test/client-a" in line for line in logged) == 2, logged
    assert sum("client=client-b" in line for line in logged) == 2, logged


def test_tls_identity_needs_a_client_ca() -> None:
    with pytest.raises(ConfigError, match=r"auth\.tls_identity: needs tls_client_ca"):
        Config(backend="127.0.0.1:1", policy=PolicyConfig(True, tls_identity=True))


class _Certs:
    """tls.Certificates for a server certificate and the client CA."""

    @staticmethod
    def make(pki: Pki, folder: Path, mutual: bool = True) -> tls.Certificates:
        cert, key = served_files(pki, folder)
        return tls.Certificates(
            Config(
                tls_cert=str(cert),
                tls_key=str(key),
                tls_client_ca=str(pki.ca.cert) if mutual else "",
            )
        )


@pytest_asyncio.fixture
async def identity_server(pki: Pki, tmp_path: Path) -> AsyncIterator[int]:
    """A gRPC server whose one method answers tls.peer_identity_grpc as bytes."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return (tls.peer_identity_grpc(context) or "<none>").encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Ask": grpc.unary_unary_rpc_method_handler(who)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", _Certs.make(pki, tmp_path).grpc_credentials())
    await server.start()
    yield port
    await server.stop(0)


@pytest.mark.asyncio
async def test_peer_identity_grpc(pki: Pki, identity_server: int) -> None:
    for client, expected in (
        (pki.client, "spiffe://tfgate.test/client-a"),
        (pki.client_cn, "client-b"),
    ):
        channel = secure(identity_server, pki.ca.cert, client)
        try:
            ask: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/test.Who/Ask"
            )
            answer = await ask(b"", timeout=5)
        finally:
            await channel.close()
        assert answer == expected.encode()


@pytest.mark.asyncio
async def test_peer_identity_http(pki: Pki, tmp_path: Path) -> None:
    async def who(request: web.Request) -> web.Response:
        return web.Response(text=tls.peer_identity_http(request) or "<none>")

    application = web.Application()
    application.router.add_get("/who", who)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=_Certs.make(pki, tmp_path).http_context()
    )
    await site.start()
    port = runner.addresses[0][1]
    try:
        for client, expected in (
            (pki.client, "spiffe://tfgate.test/client-a"),
            (pki.client_cn, "client-b"),
        ):
            status, out = await curl(
                "--cacert", str(pki.ca.cert), "--cert", str(client.cert), "--key",
                str(client.key), f"https://localhost:{port}/who",
            )  # fmt: skip
            assert status == 0 and out == expected, out
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_no_identity_without_client_certificate(pki: Pki, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def who(request: web.Request) -> web.Response:
        seen.append(tls.peer_identity_http(request))
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_get("/who", who)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    context = _Certs.make(pki, tmp_path, mutual=False).http_context()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        status, out = await curl(
            "--cacert", str(pki.ca.cert), f"https://localhost:{runner.addresses[0][1]}/who"
        )
        assert status == 0 and out == "ok", out
    finally:
        await runner.cleanup()
    assert seen == [None]


# -- certificates replaced on disk ------------------------------------------------------------


@pytest.mark.asyncio
async def test_replaced_certificate_is_served_without_dropping_calls(
    pki: Pki, tmp_path: Path, backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    cert, key = served_files(pki, tmp_path)
    gw = await tls_gateway(start_gateway, backend, cert, key, tls_reload_interval=0.1)
    port, http_port = gw.gateway.port, gw.gateway.http_port
    backend.delay = 1.0
    old = secure(port, pki.ca.cert)
    await old.channel_ready()
    http_old = ssl.create_default_context(cafile=str(pki.ca.cert))
    session = aiohttp.ClientSession()
    try:
        url = f"https://localhost:{http_port}/v1/models/half_plus_two:predict"
        grpc_call = asyncio.ensure_future(predict(old))
        http_call = asyncio.ensure_future(
            session.post(url, data=b'{"instances": [1.0, 4.0]}', ssl=http_old)
        )
        await asyncio.sleep(0.3)  # both calls are now waiting on TF Serving
        # Swapped the way a certificate manager does: new files renamed over the old ones.
        shutil.copy(pki.server_other.cert, tmp_path / "new.crt")
        shutil.copy(pki.server_other.key, tmp_path / "new.key")
        os.replace(tmp_path / "new.key", key)
        os.replace(tmp_path / "new.crt", cert)
        assert gw.gateway.certificates is not None
        for _ in range(50):
            if gw.gateway.certificates.generation:
                break
            await asyncio.sleep(0.05)
        assert gw.gateway.certificates.generation == 1
        assert await grpc_call == EXPECTED
        response = await http_call
        assert response.status == 200 and "3.5" in await response.text()
        response.release()
    finally:
        await session.close()
        await old.close()
    backend.delay = 0.0

    fresh = secure(port, pki.other_ca.cert)
    stale = secure(port, pki.ca.cert)
    try:
        assert await predict(fresh) == EXPECTED
        await refused(stale)
    finally:
        await fresh.close()
        await stale.close()
    status, out = await curl(
        "--cacert", str(pki.other_ca.cert), f"https://localhost:{http_port}/healthz"
    )
    assert status == 0 and out == '{"status":"ok"}', out
    status, out = await curl("--cacert", str(pki.ca.cert), f"https://localhost:{http_port}/healthz")
    assert status != 0


@pytest.mark.asyncio
async def test_bad_new_certificate_is_refused_and_the_old_one_stays(
    pki: Pki,
    tmp_path: Path,
    backend: FakeTFServing,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key = served_files(pki, tmp_path)
    gw = await tls_gateway(start_gateway, backend, cert, key, tls_reload_interval=3600)
    certificates = gw.gateway.certificates
    assert certificates is not None
    shutil.copy(pki.client.key, key)  # a key that does not fit the certificate
    with caplog.at_level(logging.WARNING, logger="tfgate.tls"):
        assert certificates.reload() is False
        assert certificates.reload() is False  # the same bad files: no second line
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert "tls_key" in refusals[0].getMessage()
    assert certificates.generation == 0
    channel = secure(gw.gateway.port, pki.ca.cert)
    try:
        assert await predict(channel) == EXPECTED
    finally:
        await channel.close()
    status, out = await curl(
        "--cacert", str(pki.ca.cert), f"https://localhost:{gw.gateway.http_port}/healthz"
    )
    assert status == 0, out
    shutil.copy(pki.server.key, key)  # fixed: unchanged material, still the old certificate
    assert certificates.reload() is True


@pytest.mark.asyncio
async def test_sighup_reloads_the_certificate(
    pki: Pki, tmp_path: Path, backend: FakeTFServing, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = served_files(pki, tmp_path)
    config = Config(
        listen="127.0.0.1:0",
        backend=backend.target,
        tls_cert=str(cert),
        tls_key=str(key),
        tls_reload_interval=3600,  # only the signal can make it re-read
        grace_period=0,
    )
    serving = asyncio.ensure_future(app.serve(config))
    port = 0
    for _ in range(100):
        out = capsys.readouterr().out
        if "listening on" in out:
            port = int(out.split("listening on ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
            break
        await asyncio.sleep(0.05)
    assert port
    try:
        shutil.copy(pki.server_other.cert, cert)
        shutil.copy(pki.server_other.key, key)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        fresh = secure(port, pki.other_ca.cert)
        try:
            assert await predict(fresh) == EXPECTED
        finally:
            await fresh.close()
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(serving, 10) == 0


# -- TLS to TF Serving ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def tls_backend(pki: Pki) -> AsyncIterator[FakeTFServing]:
    """The fake TF Serving on TLS, with a certificate for tfs.internal only, requiring a client
    certificate from the CA."""
    leaf = pki.ca.issue("tfs", "tfs.internal", ("DNS:tfs.internal",))
    credentials = grpc.ssl_server_credentials(
        [(leaf.key.read_bytes(), leaf.cert.read_bytes())],
        root_certificates=pki.ca.cert.read_bytes(),
        require_client_auth=True,
    )
    fake = FakeTFServing()
    await fake.start(credentials=credentials)
    yield fake
    await fake.stop()


@pytest.mark.asyncio
async def test_tls_to_tf_serving(
    pki: Pki, tls_backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        tls_backend.target,
        backend_tls_ca=str(pki.ca.cert),
        backend_tls_cert=str(pki.client.cert),
        backend_tls_key=str(pki.client.key),
        backend_tls_server_name="tfs.internal",
    )
    answer = await gw.stub.Predict(REQUEST, timeout=10)
    assert list(answer.outputs["y"].floats) == EXPECTED
    assert tls_backend.calls["Predict"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("wrong", ["ca", "name", "client"])
async def test_tls_to_tf_serving_fails_naming_the_backend(
    pki: Pki, tls_backend: FakeTFServing, start_gateway: StartGateway, wrong: str
) -> None:
    settings = {
        "backend_tls_ca": str(pki.other_ca.cert if wrong == "ca" else pki.ca.cert),
        "backend_tls_server_name": "localhost" if wrong == "name" else "tfs.internal",
        "backend_tls_cert": str((pki.client_other if wrong == "client" else pki.client).cert),
        "backend_tls_key": str((pki.client_other if wrong == "client" else pki.client).key),
    }
    gw = await start_gateway(tls_backend.target, wait_for_backend=0.5, **settings)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.Predict(REQUEST, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    assert tls_backend.target in details and "TLS handshake" in details, details
    assert tls_backend.calls["Predict"] == 0


# -- the documented example -------------------------------------------------------------------


def _security_md_commands() -> str:
    text = (Path(__file__).parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("### A worked example with openssl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.asyncio
async def test_security_md_example_works(
    tmp_path: Path, backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    status, out = await run("bash", "-euc", f"cd {tmp_path}\n{_security_md_commands()}")
    assert status == 0, out
    gw = await tls_gateway(
        start_gateway,
        backend,
        tmp_path / "tls.crt",
        tmp_path / "tls.key",
        tls_client_ca=str(tmp_path / "ca.pem"),
    )
    client = Leaf(tmp_path / "client.crt", tmp_path / "client.key")
    status, out = await curl(
        "--cacert", str(tmp_path / "ca.pem"), "--cert", str(client.cert), "--key",
        str(client.key), "-d", '{"instances": [1.0, 4.0]}',
        f"https://localhost:{gw.gateway.http_port}/v1/models/half_plus_two:predict",
    )  # fmt: skip
    assert status == 0 and "3.5" in out, out
    status, out = await curl(f"http://127.0.0.1:{gw.gateway.http_port}/healthz")
    assert status == 52 and "Empty reply" in out, out  # as security.md says
    target = f"127.0.0.1:{gw.gateway.port}"
    tls_flags = ["--tls-ca", str(tmp_path / "ca.pem")]
    mutual = [*tls_flags, "--tls-cert", str(client.cert), "--tls-key", str(client.key)]
    assert await asyncio.to_thread(cli.main, ["healthcheck", "--target", target, *mutual]) == 0
    assert await asyncio.to_thread(cli.main, ["healthcheck", "--target", target, *tls_flags]) == 1
    with pytest.raises(SystemExit) as info:
        cli.main(["healthcheck", "--target", target, "--tls-cert", str(client.cert)])
    assert info.value.code == 2


@pytest.mark.asyncio
async def test_replaced_client_ca_applies_to_new_connections(
    pki: Pki, tmp_path: Path, backend: FakeTFServing, start_gateway: StartGateway
) -> None:
    cert, key = served_files(pki, tmp_path)
    client_ca = tmp_path / "clients.pem"
    shutil.copy(pki.ca.cert, client_ca)
    gw = await tls_gateway(
        start_gateway, backend, cert, key, tls_client_ca=str(client_ca), tls_reload_interval=3600
    )
    shutil.copy(pki.other_ca.cert, client_ca)  # the old CA is no longer trusted for callers
    assert gw.gateway.certificates is not None and gw.gateway.certificates.reload()
    url = f"https://localhost:{gw.gateway.http_port}/healthz"
    for client, accepted in ((pki.client, False), (pki.client_other, True)):
        status, out = await curl(
            "--cacert", str(pki.ca.cert), "--cert", str(client.cert), "--key", str(client.key), url
        )
        assert (status == 0 and out == '{"status":"ok"}') is accepted, out
        channel = secure(gw.gateway.port, pki.ca.cert, client)
        try:
            if accepted:
                assert await predict(channel) == EXPECTED
            else:
                await refused(channel)
        finally:
            await channel.close()
