"""The ``[auth]`` and ``[clients.NAME]`` tables of the config file, as one frozen, validated value.

    [auth]
    enabled = true                # off by default; when on, every call must pass
    keys_file = "/run/secrets/tfgate-keys.toml"
    tls_identity = false          # a verified client certificate names the client

    [clients.reports]
    models = ["half_*", "iris"]   # fnmatch patterns, case-sensitive
    methods = ["Predict", "GetModel", "tfserving"]

No I/O here: the keys file is read by tfgate.policy.keys when the gateway starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# The methods a client may be granted: tfgate.v1's two, and TF Serving's own API (its gRPC
# services forwarded, and its REST routes under /v1/).
METHODS: Final = ("Predict", "GetModel", "tfserving")


class PolicyError(ValueError):
    """A setting of [auth] or [clients.NAME] is wrong; the message names it."""


@dataclass(frozen=True)
class ClientRights:
    """What one client may call: ``methods`` on models matching one of ``models``."""

    models: tuple[str, ...] = ()
    methods: tuple[str, ...] = METHODS


@dataclass(frozen=True)
class PolicyConfig:
    enabled: bool = False
    keys_file: str = ""
    tls_identity: bool = False
    clients: Mapping[str, ClientRights] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled and not self.keys_file and not self.tls_identity:
            raise PolicyError(
                "auth.keys_file: required when auth.enabled is true (or set auth.tls_identity)"
            )


def _strings(name: str, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise PolicyError(f"{name}: expected a list of non-empty strings, got {raw!r}")
    return tuple(raw)


def _rights(name: str, table: object) -> ClientRights:
    if not isinstance(table, dict):
        raise PolicyError(f"clients.{name}: must be a table")
    unknown = set(table) - {"models", "methods"}
    if unknown:
        raise PolicyError(f"clients.{name}.{sorted(unknown)[0]}: unknown setting")
    models = _strings(f"clients.{name}.models", table.get("models", []))
    methods = _strings(f"clients.{name}.methods", table.get("methods", list(METHODS)))
    for method in methods:
        if method not in METHODS:
            raise PolicyError(
                f"clients.{name}.methods: {method!r} is not one of {', '.join(METHODS)}"
            )
    return ClientRights(models, methods)


def policy_of(auth: object, clients: object) -> PolicyConfig:
    """The policy the ``[auth]`` and ``[clients]`` tables (absent: empty) describe."""
    if not isinstance(auth, dict):
        raise PolicyError("[auth] must be a table")
    if not isinstance(clients, dict):
        raise PolicyError("[clients] must be a table of [clients.NAME] tables")
    kinds = {"enabled": bool, "keys_file": str, "tls_identity": bool}
    for key, value in auth.items():
        if key not in kinds:
            raise PolicyError(f"auth.{key}: unknown setting")
        if not isinstance(value, kinds[key]):
            raise PolicyError(f"auth.{key}: expected {kinds[key].__name__}, got {value!r}")
    rights = {name: _rights(name, table) for name, table in clients.items()}
    return PolicyConfig(clients=rights, **auth)
