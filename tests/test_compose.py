"""docker-compose.yml and the Dockerfile: real TF Serving serves the same models and model config
as the local model server, at the pinned release, and tfgate is wired to it. No engine needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.model_server_fixtures import ROOT

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
