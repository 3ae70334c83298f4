"""The ``[auth]`` and ``[clients.NAME]`` tables of the config file, as one frozen, validated value.

    [auth]
    enabled = true                # off by default; when on, every call must pass
    keys_file = "/run/secrets/tfgate-keys.toml"
    tls_identity = false          # a verified client certificate names the client
    open = ["health", "reflection", "probes"]   # what needs no credentials (the default)

    [auth.jwt]                    # optional: bearer tokens that are JWTs (tfgate.policy.jwt)
    jwks_file = "/run/secrets/jwks.json"
    audience = "tfgate"

    [clients.reports]
    models = ["half_*", "iris"]   # fnmatch patterns, case-sensitive
    methods = ["Predict", "GetModel", "tfserving"]

No I/O here: the keys file is read by tfgate.policy.keys, the JWKS by tfgate.policy.jwt, when
the gateway starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# The methods a client may be granted: tfgate.v1's two, and TF Serving's own API (its gRPC
# services forwarded, and its REST routes under /v1/).
METHODS: Final = ("Predict", "GetModel", "tfserving")
# What stays open to callers without credentials when auth is on, unless ``[auth] open`` leaves
# it out: the gRPC health service, server reflection, and the HTTP probes /healthz and /readyz.
OPEN_SERVICES: Final = ("health", "reflection", "probes")


class PolicyError(ValueError):
    """A setting of [auth] or [clients.NAME] is wrong; the message names it."""


# The algorithms tfgate verifies, each with the one key type (JWK "kty") that may verify it.
KEY_TYPES: Final[Mapping[str, str]] = {"RS256": "RSA", "ES256": "EC", "HS256": "oct"}
# Where the JWT settings come from in the config file, for the messages.
PREFIX: Final = "auth.jwt."


@dataclass(frozen=True)
class JwtSettings:
    """How JWTs are verified (the ``[auth.jwt]`` table). HS256 secrets come from the JWKS file."""

    jwks_file: str = ""
    jwks_url: str = ""
    issuer: str = ""  # "" leaves "iss" unchecked
    # "" leaves "aud" unchecked only for tokens without one: PyJWT refuses a token that names
    # an audience when none is expected.
    audience: str = ""
    client_claim: str = "sub"
    leeway: float = 30.0
    algorithms: tuple[str, ...] = ("RS256", "ES256", "HS256")
    jwks_refresh: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))  # from a TOML list
        if not self.jwks_file and not self.jwks_url:
            raise PolicyError(f"{PREFIX}jwks_file, {PREFIX}jwks_url: need one or both")
        if self.jwks_url and not self.jwks_url.startswith(("https://", "http://")):
            raise PolicyError(
                f"{PREFIX}jwks_url: expected an http:// or https:// URL, got {self.jwks_url!r}"
            )
        if not self.algorithms:
            raise PolicyError(f"{PREFIX}algorithms: must name at least one algorithm")
        for name in self.algorithms:
            if name.lower() == "none":
                raise PolicyError(
                    f"{PREFIX}algorithms: 'none' is refused: an unsigned token proves nothing"
                )
            if name not in KEY_TYPES:
                raise PolicyError(
                    f"{PREFIX}algorithms: unknown algorithm {name!r}; "
                    f"tfgate verifies {', '.join(KEY_TYPES)}"
                )
        if not self.client_claim:
            raise PolicyError(f"{PREFIX}client_claim: must not be empty")
        if not 0 <= self.leeway <= 600:
            raise PolicyError(f"{PREFIX}leeway: expected 0 to 600 seconds, got {self.leeway}")
        if not self.jwks_refresh >= 1:
            raise PolicyError(
                f"{PREFIX}jwks_refresh: expected at least 1 second, got {self.jwks_refresh}"
            )


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
    jwt: JwtSettings | None = None  # [auth.jwt]: bearer tokens that are JWTs
    open: tuple[str, ...] = OPEN_SERVICES  # of OPEN_SERVICES: the rest needs credentials too

    def __post_init__(self) -> None:
        object.__setattr__(self, "open", tuple(self.open))  # from a TOML list
        for name in self.open:
            if name not in OPEN_SERVICES:
                raise PolicyError(f"auth.open: {name!r} is not one of {', '.join(OPEN_SERVICES)}")
        if self.enabled and not (self.keys_file or self.tls_identity or self.jwt):
            raise PolicyError(
                "auth.keys_file: required when auth.enabled is true (or set auth.tls_identity, "
                "or an [auth.jwt] table)"
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
    auth = dict(auth)
    jwt = _jwt_settings(auth.pop("jwt")) if "jwt" in auth else None
    _check_kinds(
        "auth.", auth, {"enabled": bool, "keys_file": str, "tls_identity": bool, "open": list}
    )
    if "open" in auth:
        auth["open"] = _strings("auth.open", auth["open"])
    rights = {name: _rights(name, table) for name, table in clients.items()}
    return PolicyConfig(clients=rights, jwt=jwt, **auth)


def _check_kinds(prefix: str, table: Mapping[str, object], kinds: Mapping[str, type]) -> None:
    for key, value in table.items():
        if key not in kinds:
            raise PolicyError(f"{prefix}{key}: unknown setting")
        kind = kinds[key]
        # A TOML integer is a fine number of seconds; a bool is no number.
        fits = isinstance(value, kind) or (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        )
        if not fits or (kind is not bool and isinstance(value, bool)):
            raise PolicyError(f"{prefix}{key}: expected {kind.__name__}, got {value!r}")


_JWT_KINDS: Final[Mapping[str, type]] = {
    "jwks_file": str,
    "jwks_url": str,
    "issuer": str,
    "audience": str,
    "client_claim": str,
    "leeway": float,
    "algorithms": list,
    "jwks_refresh": float,
}


def _jwt_settings(table: object) -> JwtSettings:
    if not isinstance(table, dict):
        raise PolicyError("auth.jwt: must be a table ([auth.jwt])")
    _check_kinds(PREFIX, table, _JWT_KINDS)
    if "algorithms" in table:
        table = {**table, "algorithms": _strings(f"{PREFIX}algorithms", table["algorithms"])}
    return JwtSettings(**table)
