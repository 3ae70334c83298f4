"""The ``[limits]`` table of the config file, as one frozen, validated value::

    [limits]
    rate = 1000            # every call together, per second (absent: no global limit)
    burst = 2000           # calls allowed at once above the rate (absent: the rate, at least 1)
    client_rate = 100      # each client's own limit, unless its section says otherwise
    client_burst = 200
    client_share = 0.5     # a client holds at most this fraction of max_concurrency (1.0: off)
    redis = "redis://redis:6379/0"   # share the buckets between replicas (absent: each its own)
    redis_timeout = 0.05   # seconds Redis may take before a call is counted locally instead

    [limits.clients.reports]      # one client's own limits, by the name [clients.NAME] gives it
    rate = 10
    burst = 20
    models = { "half_*" = { rate = 5, burst = 5 } }   # fnmatch patterns; the first match counts

A rate is calls per second; a bucket holds at most ``burst`` calls and refills at ``rate``
(tfgate.policy.limits). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from tfgate.policy.config import PolicyError

_TOP: Final = (
    "rate",
    "burst",
    "client_rate",
    "client_burst",
    "client_share",
    "redis",
    "redis_timeout",
    "clients",
)
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class Rate:
    """``rate`` calls per second, ``burst`` of them at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise PolicyError(f"rate: must be positive, got {self.rate}")
        if not self.burst >= 1:
            raise PolicyError(f"burst: must be at least 1, got {self.burst}")


@dataclass(frozen=True)
class ClientLimits:
    """One client's limits: its own rate (None: [limits] client_rate), and per model pattern."""

    rate: Rate | None = None
    models: tuple[tuple[str, Rate], ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    rate: Rate | None = None  # all calls together
    client: Rate | None = None  # each client's, unless its section names its own
    client_share: float = 1.0
    clients: Mapping[str, ClientLimits] = field(default_factory=dict)
    redis: str = ""  # a Redis URL: the buckets are shared by every tfgate using it
    redis_timeout: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.client_share <= 1:
            raise PolicyError(
                f"limits.client_share: expected a fraction above 0 and at most 1, got "
                f"{self.client_share}"
            )
        if self.redis and not self.redis.startswith(_REDIS_SCHEMES):
            raise PolicyError(
                # not quoted: a URL may hold a password
                "limits.redis: expected a redis://, rediss:// or unix:// URL"
            )
        if not 0 < self.redis_timeout <= 10:
            raise PolicyError(
                f"limits.redis_timeout: expected seconds above 0, at most 10, got "
                f"{self.redis_timeout}"
            )

    @property
    def rate_limited(self) -> bool:
        """Whether any rate limit is set (else no call pays for them)."""
        return (
            self.rate is not None
            or self.client is not None
            or any(c.rate is not None or c.models for c in self.clients.values())
        )


def _number(name: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PolicyError(f"{name}: expected a number, got {raw!r}")
    return float(raw)


def _rate(name: str, rate: object, burst: object, burst_name: str) -> Rate | None:
    """The Rate of settings ``name`` and ``burst_name`` (absent: None; burst alone is wrong)."""
    if rate is None:
        if burst is not None:
            raise PolicyError(f"{burst_name}: needs {name.rsplit('.', 1)[-1]} as well")
        return None
    value = _number(name, rate)
    if not value > 0:
        raise PolicyError(f"{name}: must be positive, got {rate!r}")
    size = max(value, 1.0) if burst is None else _number(burst_name, burst)
    if not size >= 1:
        raise PolicyError(f"{burst_name}: must be at least 1, got {burst!r}")
    return Rate(value, size)


def _table(name: str, raw: object, known: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise PolicyError(f"{name}: must be a table")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise PolicyError(f"{name}.{unknown[0]}: unknown setting")
    return raw


def _client(name: str, raw: object) -> ClientLimits:
    where = f"limits.clients.{name}"
    table = _table(where, raw, ("rate", "burst", "models"))
    rate = _rate(f"{where}.rate", table.get("rate"), table.get("burst"), f"{where}.burst")
    models_raw = table.get("models", {})
    if not isinstance(models_raw, dict):
        raise PolicyError(f"{where}.models: must be a table of pattern = {{ rate, burst }}")
    models = []
    for pattern, limit in models_raw.items():
        at = f'{where}.models."{pattern}"'
        if not pattern:
            raise PolicyError(f"{where}.models: a pattern is empty")
        entry = _table(at, limit, ("rate", "burst"))
        if "rate" not in entry:
            raise PolicyError(f"{at}.rate: required")
        model_rate = _rate(f"{at}.rate", entry["rate"], entry.get("burst"), f"{at}.burst")
        assert model_rate is not None
        models.append((pattern, model_rate))
    return ClientLimits(rate, tuple(models))


def limits_of(table: object) -> LimitsConfig:
    """The limits the ``[limits]`` table (absent: empty) describes; PolicyError names the
    setting that is wrong."""
    top = _table("limits", table, _TOP)
    share = top.get("client_share", 1.0)
    clients = top.get("clients", {})
    if not isinstance(clients, dict):
        raise PolicyError("limits.clients: must be a table of [limits.clients.NAME] tables")
    return LimitsConfig(
        rate=_rate("limits.rate", top.get("rate"), top.get("burst"), "limits.burst"),
        client=_rate(
            "limits.client_rate",
            top.get("client_rate"),
            top.get("client_burst"),
            "limits.client_burst",
        ),
        client_share=_number("limits.client_share", share),
        clients={name: _client(name, raw) for name, raw in clients.items()},
        redis=_text("limits.redis", top.get("redis", "")),
        redis_timeout=_number("limits.redis_timeout", top.get("redis_timeout", 0.05)),
    )


def _text(name: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise PolicyError(f"{name}: expected a string, got {raw!r}")
    return raw
