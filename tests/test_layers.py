"""The request core knows no transport: neither it nor anything it imports loads grpc, aiohttp
or redis.

The fronts (tfgate.fronts.*) and the backend implementation (tfgate.backends.upstream) are the
only places that speak a protocol; everything the core is made of is imported here in a fresh
interpreter, and the transports must not have been loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "server" / "tfgate"
CORE = (
    "tfgate.inference",
    "tfgate.domain",
    "tfgate.calls",
    "tfgate.errors",
    "tfgate.config",
    "tfgate.catalog",
    "tfgate.translate",
    "tfgate.tensors",
    "tfgate.signatures",
    "tfgate.plans.plan",
    "tfgate.plans.bind",
    "tfgate.plans.config",
    "tfgate.plans.steps",
    "tfgate.backends.base",
    "tfgate.fronts.v1",
    "tfgate.policy.jwt",
    "tfgate.policy.gate",
    "tfgate.policy.limits",
)
TRANSPORTS = ("grpc", "aiohttp", "redis")


def loaded_after(modules: tuple[str, ...]) -> list[str]:
    probe = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(' '.join(t for t in {TRANSPORTS!r} if t in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_the_core_loads_no_transport() -> None:
    assert loaded_after(CORE) == []


def test_the_probe_sees_a_transport_when_one_is_loaded() -> None:
    assert loaded_after(("tfgate.fronts.grpc",)) == ["grpc"]
    assert "aiohttp" in loaded_after(("tfgate.fronts.http.app",))
    assert loaded_after(("tfgate.policy.limits_redis",)) == ["redis"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_fronts_and_the_upstream_client_import_a_transport() -> None:
    speaking = sorted(
        str(path.relative_to(SERVER))
        for path in SERVER.rglob("*.py")
        if _imports(path) & set(TRANSPORTS)
    )
    # tls.py: the listeners' credentials and the peer's certificate, at the edge like the fronts.
    allowed = (
        "fronts/",
        "backends/upstream.py",
        "backends/retry.py",
        "policy/jwks_fetch.py",  # the JWT verifier's JWKS URL, loaded only when one is set
        "policy/limits_redis.py",  # rate limits shared through Redis, loaded only when set
        "app.py",
        "healthcheck.py",
        "tls.py",
    )
    assert speaking and all(p.startswith(allowed) for p in speaking), speaking
