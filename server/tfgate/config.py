"""tfgate's configuration: one frozen, self-validating value, loaded once at start-up.

Each setting comes from, in order of precedence: a command-line flag, an environment variable
``TFGATE_<NAME>``, the TOML config file (``--config`` / ``TFGATE_CONFIG``), the default here.
The TOML file holds the server settings at top level and the retry policy in ``[retry]``::

    listen = "0.0.0.0:8080"
    backend = "tf-serving:8500"
    max_concurrency = 64

    [retry]
    max_attempts = 4

who may call what in ``[auth]`` and ``[clients.NAME]`` (tfgate.policy.config), and how often in
``[limits]`` (tfgate.policy.limits_config).

TLS settings may sit at top level under their full names (``tls_cert``, ``backend_tls_ca``) or
in a ``[tls]`` table without the prefix (``cert``, ``key``, ``client_ca``, ``reload_interval``,
``backend_ca``, ``backend_cert``, ``backend_key``, ``backend_server_name``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tfgate.errors import NEVER_RETRY, Code
from tfgate.policy.config import PolicyConfig, PolicyError, policy_of
from tfgate.policy.limits_config import LimitsConfig, limits_of

_BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# Settings that are tables of the file, not values a flag or variable can set.
_TABLES: Final = frozenset({"retry", "policy", "limits"})
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+|\*):(\d{1,5})$")


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""


def _check_host_port(name: str, value: str, *, allow_scheme: bool = False) -> None:
    if allow_scheme and "://" in value:
        if not value.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
            raise ConfigError(f"{name}: unsupported target scheme in {value!r}")
        return
    match = _HOST_PORT.match(value)
    if match is None or int(match.group(1)) > 65535:
        raise ConfigError(f"{name}: expected HOST:PORT, got {value!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed backend call is tried again (see tfgate.backends.upstream)."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    # RESOURCE_EXHAUSTED is retried only after a back-off, like every retry here.
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    # Retries may add at most this fraction of the calls of the last 10 s ...
    budget_ratio: float = 0.2
    # ... plus this many per second, so that light traffic can still retry.
    budget_min_per_second: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"retry.max_attempts: must be at least 1, got {self.max_attempts}")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ConfigError(
                "retry.initial_backoff and retry.max_backoff: need "
                f"0 < initial_backoff <= max_backoff, got {self.initial_backoff}, "
                f"{self.max_backoff}"
            )
        if not 0 <= self.budget_ratio <= 10:
            raise ConfigError(f"retry.budget_ratio: expected 0 to 10, got {self.budget_ratio}")
        if self.budget_min_per_second < 0:
            raise ConfigError(
                "retry.budget_min_per_second: must not be negative, got "
                f"{self.budget_min_per_second}"
            )
        for code in self.retryable_codes:
            if code not in Code.__members__:
                raise ConfigError(f"retry.retryable_codes: {code!r} is not a gRPC status code")
            if Code[code] in NEVER_RETRY:
                raise ConfigError(
                    f"retry.retryable_codes: {code} cannot succeed on a retry; remove it"
                )

    @functools.cached_property
    def codes(self) -> frozenset[Code]:
        return frozenset(Code[c] for c in self.retryable_codes)


@dataclass(frozen=True)
class Config:
    """Everything tfgate serve needs to know; built by ``load`` and passed in explicitly."""

    listen: str = "127.0.0.1:8080"
    # The HTTP/JSON front (TF Serving's REST API, tfgate.v1 as JSON, probes): HOST:PORT, or
    # empty for none.
    http_listen: str = ""
    # Prometheus metrics (tfgate.metrics), served at /metrics: on admin_listen when it is set
    # (HOST:PORT of a listener serving nothing else), else on http_listen.
    metrics: bool = True
    admin_listen: str = ""
    # TF Serving: HOST:PORT, a comma-separated list of replicas, or a dns:/// target whose
    # addresses are balanced round-robin.
    backend: str = "127.0.0.1:8500"
    # Backend calls in flight at once; callers beyond it wait for a slot within their deadline...
    max_concurrency: int = 64
    # ... but only this many at once, and for at most max_queue_wait seconds; the rest are
    # refused at once with RESOURCE_EXHAUSTED.
    max_queue: int = 512
    max_queue_wait: float = 5.0
    # Seconds a call waits, holding its slot, for a connection to a TF Serving that is down or
    # restarting (within its deadline) before it fails with UNAVAILABLE.
    wait_for_backend: float = 10.0
    # Seconds a call may take when its caller set no deadline.
    default_timeout: float = 30.0
    # How long a "latest" or label resolution (and its signature) is trusted before re-reading.
    metadata_ttl: float = 30.0
    # Seconds between backend health probes.
    health_interval: float = 2.0
    # Seconds in-flight calls get to finish on SIGTERM.
    grace_period: float = 10.0
    # Calls one HTTP/2 connection from a caller carries at once (its further calls wait in the
    # caller's channel); grpc's core holds at most twice as many calls that tfgate has not yet
    # taken in (tfgate.app). Raise it for a proxy that sends many callers' calls on one
    # connection.
    max_streams_per_connection: int = 100
    # Largest message tfgate accepts from callers and from TF Serving.
    max_message_bytes: int = 64 * 1024 * 1024
    # Most values one request may carry, over all its input tensors; and one answer of TF
    # Serving may hold, over all its outputs.
    max_tensor_elements: int = 16 * 1024 * 1024
    # Seconds between HTTP/2 keepalive pings to TF Serving while calls are open. TF Serving (like
    # every gRPC server) answers pings more often than every 5 minutes with GOAWAY
    # "too_many_pings" unless started with a lower grpc.http2.min_ping_interval_without_data_ms.
    keepalive_time: float = 300.0
    # Models whose availability grpc.health.v1 reports, as the service "model:NAME".
    health_models: tuple[str, ...] = ()
    # Also serve TF Serving's own PredictionService and ModelService.GetModelStatus, forwarded
    # as bytes, for clients written for TF Serving (see tfgate.fronts.passthrough).
    tf_serving_api: bool = True
    # "auto": uvloop when installed (it cuts grpc.aio's own cost per call), else asyncio's loop.
    event_loop: str = "auto"
    log_level: str = "INFO"
    # TLS on both listeners (tfgate.tls): PEM files of the certificate (chain) and its key; with
    # a client CA bundle, callers must present a certificate it signed (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Seconds between checks of those files for a new certificate (SIGHUP checks at once).
    tls_reload_interval: float = 5.0
    # TLS to TF Serving: on when a CA bundle is set; tfgate's own client certificate and key,
    # and the name expected in TF Serving's certificate when it is not the backend's host.
    backend_tls_ca: str = ""
    backend_tls_cert: str = ""
    backend_tls_key: str = ""
    backend_tls_server_name: str = ""
    # "text": one line per call, ``Predict model=... code=OK ms=...``; "json": one JSON object
    # per call (and per other log line), with its request id, sizes and attempts (tfgate.logs).
    log_format: str = "text"
    # Traces (tfgate.tracing): sent over OTLP/gRPC to this collector, http://HOST:PORT (plain
    # text) or https://HOST:PORT (TLS); empty: no tracing (a caller's traceparent still goes on
    # to TF Serving unchanged).
    otlp_endpoint: str = ""
    # The share of new traces recorded, 0 to 1; a call whose caller sent a traceparent follows
    # the caller's choice (its "sampled" flag).
    trace_sample_ratio: float = 1.0
    # The service.name the spans carry.
    service_name: str = "tfgate"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Who may call what: the file's [auth] and [clients.NAME] tables (tfgate.policy.config).
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # How often, and how much of max_concurrency: the file's [limits] table.
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __post_init__(self) -> None:
        _check_host_port("listen", self.listen)
        if self.http_listen:
            _check_host_port("http_listen", self.http_listen)
        if self.admin_listen:
            _check_host_port("admin_listen", self.admin_listen)
        if "://" in self.backend:
            _check_host_port("backend", self.backend, allow_scheme=True)
        else:
            if not self.backends:
                raise ConfigError("backend: required, got an empty target")
            for item in self.backends:
                _check_host_port("backend", item)
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency: must be at least 1, got {self.max_concurrency}")
        if self.max_streams_per_connection < 1:
            raise ConfigError(
                "max_streams_per_connection: must be at least 1, got "
                f"{self.max_streams_per_connection}"
            )
        if self.max_queue < 0:
            raise ConfigError(f"max_queue: must not be negative, got {self.max_queue}")
        if self.max_tensor_elements < 1:
            raise ConfigError(
                f"max_tensor_elements: must be at least 1, got {self.max_tensor_elements}"
            )
        for name in (
            "default_timeout",
            "metadata_ttl",
            "health_interval",
            "max_queue_wait",
            "wait_for_backend",
            "keepalive_time",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.grace_period < 0:
            raise ConfigError(f"grace_period: must not be negative, got {self.grace_period}")
        if self.max_message_bytes < 1024:
            raise ConfigError(
                f"max_message_bytes: must be at least 1024, got {self.max_message_bytes}"
            )
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(
                f"event_loop: expected auto, uvloop or asyncio, got {self.event_loop!r}"
            )
        if any(not m for m in self.health_models):
            raise ConfigError("health_models: a model name is empty")
        _check_tls(self)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"log_level: expected DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format: expected text or json, got {self.log_format!r}")
        _check_tracing(self)

    @property
    def backends(self) -> tuple[str, ...]:
        """The replicas named in ``backend`` (one item for a dns:/// target)."""
        return tuple(part.strip() for part in self.backend.split(",") if part.strip())


def _check_tracing(config: Config) -> None:
    if config.otlp_endpoint:
        scheme, _, rest = config.otlp_endpoint.partition("://")
        if scheme not in ("http", "https") or not rest:
            raise ConfigError(
                "otlp_endpoint: expected http://HOST:PORT or https://HOST:PORT, got "
                f"{config.otlp_endpoint!r}"
            )
        _check_host_port("otlp_endpoint", rest.rstrip("/"))
    if not 0 <= config.trace_sample_ratio <= 1:
        raise ConfigError(f"trace_sample_ratio: expected 0 to 1, got {config.trace_sample_ratio}")
    if not config.service_name.strip():
        raise ConfigError("service_name: must not be empty")


def _check_tls(config: Config) -> None:
    for name in (
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "backend_tls_ca",
        "backend_tls_cert",
        "backend_tls_key",
    ):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file: {path!r}")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key: set both or neither")
    if config.tls_client_ca and not config.tls_cert:
        raise ConfigError("tls_client_ca: mutual TLS needs tls_cert and tls_key as well")
    if config.policy.tls_identity and not config.tls_client_ca:
        raise ConfigError(
            "auth.tls_identity: needs tls_client_ca (mutual TLS), so that callers present a "
            "certificate it verified"
        )
    if config.tls_reload_interval <= 0:
        raise ConfigError(
            f"tls_reload_interval: must be positive, got {config.tls_reload_interval}"
        )
    if bool(config.backend_tls_cert) != bool(config.backend_tls_key):
        raise ConfigError("backend_tls_cert and backend_tls_key: set both or neither")
    if not config.backend_tls_ca:
        for name in ("backend_tls_cert", "backend_tls_server_name"):
            if getattr(config, name):
                raise ConfigError(f"{name}: TLS to TF Serving needs backend_tls_ca as well")


# The [tls] table's keys, and the settings they stand for.
_TLS_TABLE: Final = {
    "cert": "tls_cert",
    "key": "tls_key",
    "client_ca": "tls_client_ca",
    "reload_interval": "tls_reload_interval",
    "backend_ca": "backend_tls_ca",
    "backend_cert": "backend_tls_cert",
    "backend_key": "backend_tls_key",
    "backend_server_name": "backend_tls_server_name",
}


def _tls_table(table: object, path: str) -> dict[str, object]:
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [tls] must be a table")
    out: dict[str, object] = {}
    for key, value in table.items():
        name = _TLS_TABLE.get(key.replace("-", "_"))
        if name is None:
            raise ConfigError(f"tls.{key} (from config file {path}): unknown setting")
        out[name] = value
    return out


def _coerce(name: str, kind: Any, raw: object, source: str) -> object:
    """``raw`` as the type of field ``name``; strings from env and flags are parsed, while the
    file's TOML values must already have the setting's type (``"32"`` is not a number)."""
    typed = kind not in ("str", str, "tuple[str, ...]")
    if typed and isinstance(raw, str) and source.startswith("config file"):
        raise ConfigError(
            f"{name} (from {source}): expected {kind}, got the string {raw!r}; "
            "write it without quotes"
        )
    try:
        if kind in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
                return _BOOLS[raw.strip().lower()]
            raise ValueError(raw)
        if kind in ("int", int):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw) if isinstance(raw, str) else _exact(int, raw)
        if kind in ("float", float):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw) if isinstance(raw, (str, int, float)) else _exact(float, raw)
        if kind in ("tuple[str, ...]",):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return tuple(raw)
            raise ValueError(raw)
        return _exact(str, raw)
    except ValueError:
        raise ConfigError(f"{name} (from {source}): cannot read {raw!r} as {kind}") from None


def _exact(kind: type, raw: object) -> object:
    if not isinstance(raw, kind):
        raise ValueError(raw)
    return raw


def _settings(
    cls: type, values: Mapping[str, object], source: str, prefix: str = ""
) -> dict[str, object]:
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, object] = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in known or name in _TABLES:
            raise ConfigError(f"{prefix}{key} (from {source}): unknown setting")
        out[name] = _coerce(prefix + name, known[name].type, raw, source)
    return out


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``TFGATE_*`` variable that names no setting (a typo is otherwise
    silently ignored), with the closest known name."""
    known = {
        f"TFGATE_{f.name.upper()}" for f in dataclasses.fields(Config) if f.name not in _TABLES
    }
    known.add("TFGATE_CONFIG")
    warnings = []
    for var in sorted(environ):
        if var.startswith("TFGATE_") and var not in known:
            close = difflib.get_close_matches(var, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"environment variable {var} names no setting and is ignored{hint}")
    return warnings


def config_path(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """The config file named by ``--config``, else by ``TFGATE_CONFIG``, if any."""
    return flag or environ.get("TFGATE_CONFIG") or None


def read_file(path: str) -> dict[str, Any]:
    """The parsed TOML config file; read once, then handed to each part that needs it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def load(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    config_file: str | None = None,
    file_data: Mapping[str, Any] | None = None,
) -> Config:
    """Builds the Config from flags (None: not given), ``TFGATE_*`` variables and the file.

    ``file_data`` is the file already read by ``read_file``; without it the file is read here.
    """
    file_top: dict[str, object] = {}
    file_retry: dict[str, object] = {}
    policy = PolicyConfig()
    limits = LimitsConfig()
    path = config_path(config_file, environ)
    if path:
        data = dict(read_file(path) if file_data is None else file_data)
        retry_table = data.pop("retry", {})
        if not isinstance(retry_table, dict):
            raise ConfigError(f"config file {path}: [retry] must be a table")
        data.pop("models", None)  # per-model sections are read by their own module
        try:
            policy = policy_of(data.pop("auth", {}), data.pop("clients", {}))
            limits = limits_of(data.pop("limits", {}))
        except PolicyError as exc:
            raise ConfigError(f"{exc} (from config file {path})") from None
        for name, value in _tls_table(data.pop("tls", {}), path).items():
            if name in data:
                raise ConfigError(
                    f"config file {path}: {name} is set both at top level and in [tls]"
                )
            data[name] = value
        file_top = _settings(Config, data, f"config file {path}")
        file_retry = _settings(RetryPolicy, retry_table, f"config file {path}", "retry.")

    env_top = {
        f.name: environ[var]
        for f in dataclasses.fields(Config)
        if (var := f"TFGATE_{f.name.upper()}") in environ and f.name not in _TABLES
    }
    given = {k: v for k, v in flags.items() if v is not None}
    merged = {
        **file_top,
        **_settings(Config, env_top, "environment"),
        **_settings(Config, given, "command line"),
    }
    # Where each setting came from, for a value that parses but is out of range.
    sources = {name: f"config file {path}" for name in file_top}
    sources |= {f"retry.{name}": f"config file {path}" for name in file_retry}
    sources |= {name: f"environment variable TFGATE_{name.upper()}" for name in env_top}
    sources |= {name.replace("-", "_"): "command line" for name in given}
    try:
        retry = RetryPolicy(**file_retry)  # type: ignore[arg-type]
        return Config(**merged, retry=retry, policy=policy, limits=limits)  # type: ignore[arg-type]
    except ConfigError as exc:
        setting = str(exc).split(":", 1)[0].split(" ", 1)[0]
        if setting in sources:
            raise ConfigError(f"{exc} (from {sources[setting]})") from None
        raise
    except TypeError as exc:  # pragma: no cover - _settings rejects unknown keys first
        raise ConfigError(str(exc)) from None


def model_tables(
    path: str | None, data: Mapping[str, Any], name: str, settings: tuple[str, ...]
) -> dict[str, tuple[Mapping[str, object], str]]:
    """Each ``[models.MODEL.<name>]`` table of the config file at ``path`` (as read_file parsed
    it into ``data``), by model, with the words that place it in a message. ConfigError when one
    is not a table or holds a setting not in ``settings``."""
    models = data.get("models", {})
    if not isinstance(models, dict):
        return {}  # tfgate.plans.config refuses it, in its words
    found: dict[str, tuple[Mapping[str, object], str]] = {}
    for model, section in models.items():
        if not isinstance(section, dict) or name not in section:
            continue
        table = section[name]
        where = f"config file {path}: [models.{model}.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table (settings: {', '.join(settings)})")
        unknown = sorted(set(table) - set(settings))
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting '{unknown[0]}' (settings: {', '.join(settings)})"
            )
        found[model] = (table, where)
    return found


def number_of(value: object, what: str, *, whole: bool = False) -> int | float:
    """``value`` as a TOML number (a whole one, with ``whole``); ConfigError names ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what}: must be a number, got {value!r}")
    if whole and not isinstance(value, int):
        raise ConfigError(f"{what}: must be a whole number, got {value!r}")
    return value
