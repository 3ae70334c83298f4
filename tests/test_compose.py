"""docker-compose.yml and the Dockerfile: real TF Serving serves the same models and model config
as the local model server, at the pinned release, and tfgate is wired to it. No engine needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.model_server_fixtures import ROOT
from tests.test_grpcurl import grpcurl_binary
from tfgate.config import load, read_file
from tfgate.plans.config import load as load_sections
from tfgate.policy.keys import digest, load_keys

SERVING = "tensorflow-serving"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` arguments as {name: value}."""
    out: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            out[name] = value if sep else (args[i + 1] if i + 1 < len(args) else "")
    return out


def pinned_tf_serving() -> str:
    text = (ROOT / "requirements" / "tfserving.txt").read_text()
    match = re.search(r"^tensorflow-serving-api==(\S+)\s*$", text, re.MULTILINE)
    assert match, "requirements/tfserving.txt pins tensorflow-serving-api"
    return match.group(1)


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Short-syntax volumes as {container path: (host path, mode)}."""
    out = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_services(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"tfgate", SERVING}


def test_image_is_the_pinned_release(compose: dict[str, Any]) -> None:
    image = services(compose)[SERVING]["image"]
    assert image == f"tensorflow/serving:{pinned_tf_serving()}"


def test_models_are_mounted_read_only(compose: dict[str, Any]) -> None:
    assert mounts(services(compose)[SERVING])["/models"] == ("./models", "ro")


def test_model_config_is_the_mounted_models_config(compose: dict[str, Any]) -> None:
    serving = services(compose)[SERVING]
    assert serving["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
    config = PurePosixPath(flags(serving["command"])["model_config_file"])
    assert config == PurePosixPath("/models/models.config")
    source, _ = mounts(serving)[str(config.parent)]
    host_file = ROOT / source / config.name
    assert host_file == ROOT / "models" / "models.config"
    assert host_file.is_file()


def test_model_base_paths_are_inside_the_mount(compose: dict[str, Any]) -> None:
    text = (ROOT / "models" / "models.config").read_text()
    base_paths = re.findall(r'^\s*base_path:\s*"([^"]+)"', text, re.MULTILINE)
    assert base_paths
    source, _ = mounts(services(compose)[SERVING])["/models"]
    for base_path in base_paths:
        relative = PurePosixPath(base_path).relative_to("/models")
        assert (ROOT / source / relative).is_dir(), base_path


def test_ports(compose: dict[str, Any]) -> None:
    serving = services(compose)[SERVING]
    serving_flags = flags(serving["command"])
    assert (serving_flags["port"], serving_flags["rest_api_port"]) == ("8500", "8501")
    assert serving_flags["enable_grpc_healthcheck_service"] == "true"
    tfgate = services(compose)["tfgate"]
    listen = flags(tfgate["command"])["listen"]
    assert listen == "0.0.0.0:8080"
    http = flags(tfgate["command"])["http-listen"]
    assert http == "0.0.0.0:8081"
    assert tfgate["ports"] == [
        f"8080:{listen.rsplit(':', 1)[1]}",
        f"8081:{http.rsplit(':', 1)[1]}",
    ]


def test_tfgate_backend_is_the_serving_grpc_port(compose: dict[str, Any]) -> None:
    serving_port = flags(services(compose)[SERVING]["command"])["port"]
    tfgate = services(compose)["tfgate"]
    assert tfgate["command"][0] == "serve"
    assert flags(tfgate["command"])["backend"] == f"{SERVING}:{serving_port}"


def test_health_gates_start_up(compose: dict[str, Any]) -> None:
    serving = services(compose)[SERVING]
    tfgate = services(compose)["tfgate"]
    assert "8501" in " ".join(serving["healthcheck"]["test"])
    assert tfgate["healthcheck"]["test"][:2] == ["CMD", "tfgate"]
    assert tfgate["depends_on"] == {SERVING: {"condition": "service_healthy"}}
    assert tfgate["build"] == "."


def test_dockerfile_runs_tfgate_without_tensorflow() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    runtime = dockerfile.split("\nFROM ")[-1]
    assert re.search(r"^USER (?!root)\S+", runtime, re.MULTILINE)
    assert "HEALTHCHECK" in runtime
    assert "tensorflow" not in runtime.lower().replace("tensorflow-serving:8500", "")
    assert "[local]" not in dockerfile


def test_the_image_gets_nothing_of_the_local_model_server() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert "server/tfgate/" in sources
    assert not [s for s in sources if s.rstrip("/") == "server" or "model_server" in s]
    # The build context holds the gateway's half of server/ only.
    admitted = [
        line[1:].strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert [a for a in admitted if a.startswith("server")] == ["server/tfgate/"]


def test_docker_compose_can_parse_it() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_tfgate_gets_the_preprocessing_config_and_its_files(compose: dict[str, Any]) -> None:
    tfgate = services(compose)["tfgate"]
    config = PurePosixPath(flags(tfgate["command"])["config"])
    mounted = mounts(tfgate)
    assert mounted[str(config.parent)] == ("./config", "ro")
    # config/tfgate.toml names its files relative to itself (../models/...): the models folder
    # must sit beside the config folder in the container too.
    assert mounted[str(config.parent.parent / "models")] == ("./models", "ro")
    assert "../models/" in (ROOT / "config" / config.name).read_text()


# -- docker-compose.secure.yml: TLS and an API key file as a secret -----------------------------

SECURE = ROOT / "docker-compose.secure.yml"
SCRIPT = ROOT / "scripts" / "compose_secrets.sh"
SECRETS = "./deploy/secrets/"
# What scripts/compose_secrets.sh writes, and nothing else.
SECRET_FILES = {"ca.pem", "ca.key", "tls.crt", "tls.key", "demo.key", "keys.toml", "tfgate.toml"}


@pytest.fixture(scope="module")
def secure() -> dict[str, Any]:
    loaded = yaml.safe_load(SECURE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def secret_mounts(override: dict[str, Any]) -> dict[str, str]:
    """The tfgate service's secrets as {path in the container: file on the host}; compose
    mounts each at /run/secrets/NAME."""
    files = override["secrets"]
    out = {}
    for name in services(override)["tfgate"]["secrets"]:
        assert isinstance(name, str), name
        out[f"/run/secrets/{name}"] = files[name]["file"]
    return out


def config_mount(override: dict[str, Any]) -> tuple[str, str]:
    """(host file, container path) of the config the secure tfgate reads."""
    tfgate = services(override)["tfgate"]
    target = flags(tfgate["command"])["config"]
    [bind] = [v for v in tfgate["volumes"] if isinstance(v, dict) and v["target"] == target]
    assert bind["type"] == "bind" and bind["read_only"] is True
    return bind["source"], target


def test_the_override_changes_tfgate_only(compose: dict[str, Any], secure: dict[str, Any]) -> None:
    assert set(services(secure)) == {"tfgate"}
    plain, tls = services(compose)["tfgate"]["command"], services(secure)["tfgate"]["command"]
    # The same listeners and backend, another config file.
    assert {k: v for k, v in flags(tls).items() if k != "config"} == {
        k: v for k, v in flags(plain).items() if k != "config"
    }
    assert flags(tls)["config"] != flags(plain)["config"]
    # The plain stack stays open: no secrets, no TLS, no key.
    assert "secrets" not in compose and "secrets" not in services(compose)["tfgate"]
    assert "environment" not in services(compose)["tfgate"]
    assert "[auth]" not in (ROOT / "config" / "tfgate.toml").read_text()


def test_every_secret_is_a_file_under_deploy_secrets(secure: dict[str, Any]) -> None:
    mounted = secret_mounts(secure)
    assert set(secure["secrets"]) == {p.rsplit("/", 1)[1] for p in mounted}
    for host in [*mounted.values(), config_mount(secure)[0]]:
        assert host.startswith(SECRETS), host
        assert host[len(SECRETS) :] in SECRET_FILES, host


def test_tls_and_the_key_file_are_the_mounted_secrets(secure: dict[str, Any]) -> None:
    tfgate = services(secure)["tfgate"]
    mounted = secret_mounts(secure)
    environment = tfgate["environment"]
    assert mounted[environment["TFGATE_TLS_CERT"]] == SECRETS + "tls.crt"
    assert mounted[environment["TFGATE_TLS_KEY"]] == SECRETS + "tls.key"
    auth = tomllib.loads((ROOT / "config" / "auth.toml").read_text())["auth"]
    assert auth["enabled"] is True
    assert mounted[auth["keys_file"]] == SECRETS + "keys.toml"
    health = tfgate["healthcheck"]["test"]
    assert health[:3] == ["CMD", "tfgate", "healthcheck"]
    assert mounted[flags(health)["tls-ca"]] == SECRETS + "ca.pem"


def test_the_secure_config_sits_beside_the_models(
    compose: dict[str, Any], secure: dict[str, Any]
) -> None:
    # config/tfgate.toml names its files as ../models/...: from the secure config's folder
    # that must be the models mount of docker-compose.yml.
    source, target = config_mount(secure)
    assert source == SECRETS + "tfgate.toml"
    models = PurePosixPath(target).parent.parent / "models"
    assert mounts(services(compose)["tfgate"])[str(models)] == ("./models", "ro")


def test_docker_compose_merges_the_override() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "-f", str(SECURE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    tfgate = yaml.safe_load(result.stdout)["services"]["tfgate"]
    assert flags(tfgate["command"])["config"] == "/srv/tfgate/secure/tfgate.toml"
    assert {s["source"] for s in tfgate["secrets"]} == {
        "tfgate_tls_cert", "tfgate_tls_key", "tfgate_ca", "tfgate_keys"
    }  # fmt: skip
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in tfgate["volumes"]]
    assert sorted(targets) == [
        "/srv/tfgate/config", "/srv/tfgate/models", "/srv/tfgate/secure/tfgate.toml"
    ]  # fmt: skip
    assert "--tls-ca" in tfgate["healthcheck"]["test"]
    assert tfgate["depends_on"] == {SERVING: {"condition": "service_healthy"}}


def test_deploy_secrets_is_ignored_by_git() -> None:
    paths = [f"deploy/secrets/{name}" for name in sorted(SECRET_FILES)]
    done = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.stdout.split() == paths, done.stderr


@dataclass(frozen=True)
class Made:
    """What scripts/compose_secrets.sh wrote into ``folder``, and what it printed."""

    folder: Path
    printed: str

    def key(self) -> str:
        return (self.folder / "demo.key").read_text()


def make_secrets(folder: Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), str(folder)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    return Made(folder, make_secrets(folder))


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )


def verify(folder: Path) -> subprocess.CompletedProcess[str]:
    """openssl's check that the CA in ``folder`` signed its tls.crt."""
    return openssl("verify", "-CAfile", str(folder / "ca.pem"), str(folder / "tls.crt"))


def test_the_script_writes_its_files_only(made: Made) -> None:
    assert {p.name for p in made.folder.iterdir()} == SECRET_FILES
    assert stat.S_IMODE(made.folder.stat().st_mode) == 0o700
    # What tfgate reads in its container (as another user) is readable; the keys are not.
    for name in SECRET_FILES:
        mode = stat.S_IMODE((made.folder / name).stat().st_mode)
        assert mode == (0o600 if name in ("ca.key", "demo.key") else 0o644), (name, oct(mode))


def test_the_certificate_is_for_the_names_callers_dial(made: Made) -> None:
    verified = verify(made.folder)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    sans = openssl("x509", "-in", str(made.folder / "tls.crt"), "-noout", "-ext", "subjectAltName")
    names = {n.strip() for n in sans.stdout.splitlines()[1].split(",")}
    assert names == {"DNS:localhost", "IP Address:127.0.0.1", "DNS:tfgate"}


def test_the_key_file_holds_the_digest_tfgate_computes(made: Made) -> None:
    key = made.key()
    assert re.fullmatch(r"[0-9a-f]{64}", key), "32 random bytes as hex, no newline"
    keys = tomllib.loads((made.folder / "keys.toml").read_text())["keys"]
    assert keys == {"demo": {"sha256": [digest(key).hex()]}}
    hashed = subprocess.run(
        [sys.executable, "-m", "tfgate", "hash-key"],
        input=key,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert keys["demo"]["sha256"] == [hashed.stdout.strip()]
    table = load_keys(str(made.folder / "keys.toml"))
    assert table.client_of(key) == "demo"
    assert table.client_of(key[:-1]) is None
    assert key not in made.printed


def test_the_script_keeps_what_exists(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    assert "made" in make_secrets(folder)
    before = {name: (folder / name).read_bytes() for name in SECRET_FILES}
    again = make_secrets(folder)
    assert "made" not in again
    assert {name: (folder / name).read_bytes() for name in SECRET_FILES} == before
    # A certificate that does not fit its key is issued again, by the same CA, for the same key
    # file contents; the CA and the API key stay.
    (folder / "tls.key").write_bytes(before["ca.key"])
    assert "made" in make_secrets(folder)
    assert (folder / "tls.crt").read_bytes() != before["tls.crt"]
    for kept in ("ca.pem", "ca.key", "demo.key", "keys.toml"):
        assert (folder / kept).read_bytes() == before[kept], kept
    assert verify(folder).returncode == 0


def test_deployment_md_shows_the_commands_the_script_prints(tmp_path: Path) -> None:
    # Run from a folder of its own, the script shows its paths as deploy/secrets/..., as
    # `make compose-secrets` does from the repository.
    printed = make_secrets(tmp_path / "deploy" / "secrets", cwd=tmp_path)
    calls = printed.split("Call it as the client demo", 1)[1].split("\n", 1)[1].strip("\n")
    assert "deploy/secrets/ca.pem" in calls
    commands = "\n".join(line.removeprefix("  ") for line in calls.splitlines())
    doc = (ROOT / "docs" / "deployment.md").read_text()
    section = doc.split("## The secure stack", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert commands in section
    assert "make compose-secrets" in section
    assert "docker compose -f docker-compose.yml -f docker-compose.secure.yml up" in section


@dataclass(frozen=True)
class Container:
    """The secure tfgate's files as its container sees them, laid out under ``root``: a path
    in the container is ``root`` + that path."""

    root: Path
    config: Path

    def path(self, inside: str) -> str:
        assert inside.startswith("/"), inside
        return str(self.root / inside.lstrip("/"))


def container_layout(
    made: Made, compose: dict[str, Any], secure: dict[str, Any], root: Path, local: bool
) -> Container:
    """The mounts of both compose files under ``root``; with ``local``, the config's paths to
    secrets are rewritten to their places under ``root``, so that a tfgate outside a container
    finds them."""
    for target, (source, _) in mounts(services(compose)["tfgate"]).items():
        (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / target.lstrip("/")).symlink_to(ROOT / source)
    for inside, host in secret_mounts(secure).items():
        (root / inside.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(made.folder / PurePosixPath(host).name, root / inside.lstrip("/"))
    source, target = config_mount(secure)
    config = root / target.lstrip("/")
    config.parent.mkdir(parents=True, exist_ok=True)
    text = (made.folder / PurePosixPath(source).name).read_text()
    if local:
        text = text.replace('"/run/secrets/', f'"{root}/run/secrets/')
    config.write_text(text)  # a copy, not a link: the plans resolve paths from its folder
    return Container(root, config)


def test_the_secure_config_is_the_demo_config_with_auth(
    made: Made, compose: dict[str, Any], secure: dict[str, Any], tmp_path: Path
) -> None:
    text = (made.folder / "tfgate.toml").read_text()
    assert (ROOT / "config" / "tfgate.toml").read_text() in text
    assert (ROOT / "config" / "auth.toml").read_text() in text
    container = container_layout(made, compose, secure, tmp_path, local=False)
    settings = load({}, {}, str(container.config))
    assert settings.policy.enabled is True
    assert settings.policy.keys_file in secret_mounts(secure)
    assert secret_mounts(secure)[settings.policy.keys_file] == SECRETS + "keys.toml"
    assert settings.policy.clients["demo"].models == ("half_plus_two", "sentiment", "iris")
    # The preprocessing sections load from where the stack mounts the file.
    sections = load_sections(str(container.config), read_file(str(container.config)))
    assert set(sections) == {"sentiment", "iris"}


def tfgate_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TFGATE_")}


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """(HTTP status, headers, body) of a curl call; status 0 when curl itself failed."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-D", "-", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return 0, {}, done.stderr.decode()
    # Bytes, not text: text mode would turn the header block's CRLFs into newlines.
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@dataclass
class Started:
    process: subprocess.Popen[str]
    grpc_port: int
    http_port: int


def start_secure(container: Container, secure: dict[str, Any], backend: str, log: Path) -> Started:
    """``tfgate serve`` as the override starts it, with its ports on 127.0.0.1:0, ``backend``
    for TF Serving, and the container's paths under ``container.root``."""
    tfgate = services(secure)["tfgate"]
    env = {**tfgate_env(), **{k: container.path(v) for k, v in tfgate["environment"].items()}}
    command = [sys.executable, "-m", "tfgate", *tfgate["command"]]
    for flag, local in (
        ("--listen", "127.0.0.1:0"),
        ("--http-listen", "127.0.0.1:0"),
        ("--backend", backend),
        ("--config", container.path(flags(tfgate["command"])["config"])),
    ):
        command[command.index(flag) + 1] = local
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert process.stdout is not None
    listening, http = process.stdout.readline(), process.stdout.readline()
    if not listening.startswith("tfgate listening on 127.0.0.1:"):
        stop(process)
        pytest.fail(f"tfgate did not start:\n{log.read_text()}")
    return Started(
        process,
        int(listening.split()[3].rsplit(":", 1)[1]),
        int(http.split()[-1].rsplit(":", 1)[1]),
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


def test_the_secure_stack_short_of_docker(
    made: Made,
    compose: dict[str, Any],
    secure: dict[str, Any],
    model_server: str,
    tmp_path: Path,
) -> None:
    """tfgate started as the override starts it, on the files the script made, in front of
    the local model server: TLS on both listeners, and the demo key or a 401."""
    container = container_layout(made, compose, secure, tmp_path / "container", local=True)
    log = tmp_path / "tfgate.log"
    started = start_secure(container, secure, model_server, log)
    try:
        ca = str(made.folder / "ca.pem")
        url = f"https://localhost:{started.http_port}"
        bearer = f"authorization: Bearer {made.key()}"
        hp2 = ["-d", '{"instances": [1.0, 2.0, 5.0]}', f"{url}/v1/models/half_plus_two:predict"]

        status, _, body = curl("--cacert", ca, "-H", bearer, *hp2)
        assert (status, json.loads(body)) == (200, {"predictions": [3.5, 4.0, 5.5]}), body
        status, headers, body = curl("--cacert", ca, *hp2)
        assert (status, json.loads(body)) == (401, {"error": "missing"}), body
        assert headers["www-authenticate"].startswith("Bearer"), headers
        status, _, body = curl("--cacert", ca, "-H", "x-api-key: not-the-key", *hp2)
        assert (status, json.loads(body)) == (401, {"error": "invalid"}), body
        # The preprocessing of the joined config: text in, labels out, with the key.
        status, _, body = curl(
            "--cacert", ca, "-H", bearer, "-d", '{"instances": ["A great movie, I loved it!"]}',
            f"https://127.0.0.1:{started.http_port}/v1/models/sentiment:predict",
        )  # fmt: skip
        assert status == 200, body
        assert json.loads(body)["predictions"][0]["label"][0] == "positive", body
        # TLS only: plain text gets no answer.
        status, _, body = curl(f"http://127.0.0.1:{started.http_port}/healthz")
        assert status == 0, body

        check_grpc_without_a_key(ca, started.grpc_port)
        check_the_healthcheck(container, secure, started.grpc_port)
        check_the_printed_commands(made, started)
        assert made.key() not in log.read_text()
    finally:
        stop(started.process)


def check_grpc_without_a_key(ca: str, port: int) -> None:
    """Over gRPC: reflection answers without a key (over TLS), Predict does not."""

    def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [grpcurl_binary(), "-cacert", ca, "-max-time", "10", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    listed = grpcurl(f"localhost:{port}", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tfgate.v1.InferenceService" in listed.stdout.split()
    data = '{"model": "half_plus_two", "inputs": {"x": {"floats": [1]}}}'
    refused = grpcurl("-d", data, f"localhost:{port}", "tfgate.v1.InferenceService/Predict")
    assert refused.returncode != 0
    assert "Code: Unauthenticated" in refused.stderr and "Message: missing" in refused.stderr, (
        refused.stderr
    )
    plain = subprocess.run(
        [grpcurl_binary(), "-plaintext", "-max-time", "5", f"127.0.0.1:{port}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert plain.returncode != 0, plain.stdout


def check_the_healthcheck(container: Container, secure: dict[str, Any], port: int) -> None:
    """The override's healthcheck, with its paths in the container, passes."""
    test = services(secure)["tfgate"]["healthcheck"]["test"]
    health = [container.path(a) if a.startswith("/") else a for a in test]
    health[health.index("--target") + 1] = f"127.0.0.1:{port}"
    checked = subprocess.run(
        [sys.executable, "-m", "tfgate", *health[2:]],
        env=tfgate_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith(": SERVING"), checked.stdout


def check_the_printed_commands(made: Made, started: Started) -> None:
    """The curl and grpcurl calls the script printed work, on this gateway's ports."""
    printed = made.printed.split("Call it as the client demo", 1)[1].split("\n", 1)[1]
    printed = printed.replace("grpcurl ", f"{grpcurl_binary()} ", 1)
    printed = printed.replace(":8081/", f":{started.http_port}/")
    printed = printed.replace(":8080 ", f":{started.grpc_port} ")
    ran = subprocess.run(
        ["bash", "-euc", printed], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # curl's answer, then grpcurl's (curl ends with no newline).
    http_answer, end = json.JSONDecoder().raw_decode(ran.stdout)
    assert http_answer == {"predictions": [3.5, 4.0, 5.5]}, ran.stdout
    assert json.loads(ran.stdout[end:])["outputs"]["y"]["floats"] == [3.5, 4, 5.5]
