"""What the status page shows, gathered from the running parts; no transport, no HTML.

The models: TF Serving has no call that lists the models it serves, so the page shows those
tfgate knows of: the config file's [models.NAME] sections, ``health_models``, and every model
TF Serving has described to tfgate or answered a call for (tfgate.catalog, tfgate.status).
Each is described as GetModel would (its versions and their states, its signatures), without
the gate and within ``within`` seconds; labels are the ones callers have named, with the
version each last resolved to, since TF Serving's API cannot list them either.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import math
import time
from dataclasses import dataclass, field
from typing import Final

from tfgate.backends.upstream import Upstream
from tfgate.calls import Call
from tfgate.config import Config
from tfgate.errors import GatewayError
from tfgate.inference import Inference
from tfgate.status import OTHER, ModelStats, Window
from tfgate.v1 import inference_pb2

DEFAULT_SIGNATURE: Final = "serving_default"


def version() -> str:
    try:
        return importlib.metadata.version("tfgate")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - always installed
        return "unknown"


@dataclass(frozen=True)
class ReplicaView:
    target: str
    state: str  # grpc's connectivity state of its channel: READY, CONNECTING, IDLE, ...


@dataclass
class ModelView:
    name: str
    sources: list[str]  # where the name comes from: "config", "health_models", "calls"
    model: inference_pb2.Model | None = None  # None when it could not be described
    error: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    stats: ModelStats | None = None


@dataclass
class Overview:
    version: str
    settings: list[tuple[str, str]]
    backend_up: bool
    replicas: list[ReplicaView]
    load: list[tuple[str, str]]  # backend calls in flight, waiting, shed, retries refused
    models: list[ModelView]
    other: ModelStats | None  # calls to models without a row (tfgate.status.OTHER)


def settings(config: Config) -> list[tuple[str, str]]:
    """The settings a person looking at the page wants first."""
    retry = config.retry
    return [
        ("backend", config.backend),
        ("max_concurrency", str(config.max_concurrency)),
        ("max_queue", f"{config.max_queue} (waiting at most {config.max_queue_wait:g} s)"),
        ("default_timeout", f"{config.default_timeout:g} s"),
        ("retry", f"at most {retry.max_attempts} attempts on {', '.join(retry.retryable_codes)}"),
        (
            "retry budget",
            f"{retry.budget_ratio:.0%} of the calls of the last 10 s "
            f"+ {retry.budget_min_per_second:g}/s",
        ),
        ("auth", "on" if config.policy.enabled else "off"),
        ("tf_serving_api", "on" if config.tf_serving_api else "off"),
    ]


def _sources(config: Config, inference: Inference, window: Window) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for source, names in (
        ("config", inference.plans.configured),
        ("health_models", config.health_models),
        ("calls", [*inference.catalog.models(), *window.models]),
    ):
        for name in names:
            if source not in found.setdefault(name, []):
                found[name].append(source)
    return found


async def _describe(view: ModelView, inference: Inference, within: float) -> None:
    call = Call("status", "GetModel", time.monotonic() + within)
    try:
        view.model = await inference.describe(view.name, 0, "", call)
    except GatewayError as exc:
        view.error = exc.message


async def overview(
    config: Config,
    upstream: Upstream,
    inference: Inference,
    window: Window,
    backend_up: bool,
    *,
    within: float = 2.0,
) -> Overview:
    """The page's view; each model is described within ``within`` seconds."""
    stats = window.stats()
    views = [
        ModelView(name, sources, labels=inference.catalog.labels(name), stats=stats.get(name))
        for name, sources in _sources(config, inference, window).items()
    ]
    await asyncio.gather(*(_describe(view, inference, within) for view in views))
    limiter, budget = upstream.limiter, upstream.budget
    return Overview(
        version=version(),
        settings=settings(config),
        backend_up=backend_up,
        replicas=[
            ReplicaView(r.target, r.channel.get_state(try_to_connect=False).name)
            for r in upstream.replicas
        ],
        load=[
            ("backend calls in flight", f"{limiter.in_flight} of {limiter.limit}"),
            ("callers waiting", f"{limiter.waiting} of {limiter.max_queue}"),
            ("calls shed since start", str(limiter.shed)),
            ("retries refused by the budget since start", str(budget.refused)),
        ],
        models=views,
        other=stats.get(OTHER),
    )


def example(model: inference_pb2.Model) -> str:
    """A Predict body for ``model``'s default signature (its domain one when configured): one
    value of the right kind per element, unknown dimensions taken as 1 (2 for a vector)."""
    signatures = model.domain_signatures or model.signatures
    name = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in signatures else next(iter(signatures), "")
    inputs: dict[str, object] = {}
    body: dict[str, object] = {"inputs": inputs}
    if not name:
        return json.dumps(body)
    if name != DEFAULT_SIGNATURE:
        body = {"signature": name, "inputs": inputs}
    for key, spec in sorted(signatures[name].inputs.items()):
        dims = [2] if spec.unknown_rank or list(spec.shape) == [-1] else list(spec.shape)
        dims = [d if d >= 0 else 1 for d in dims]
        count = math.prod(dims)
        kind, value = _KINDS.get(spec.dtype, ("floats", None))
        values = [value if value is not None else i + 1 for i in range(min(count, 16))]
        tensor: dict[str, object] = {kind: values}
        if len(dims) != 1 and count <= 16:
            tensor = {"shape": dims, kind: values}
        inputs[key] = tensor
    return json.dumps(body)


_KINDS: Final[dict[str, tuple[str, object]]] = {
    "string": ("strings", "text"),
    "bool": ("bools", True),
    **{t: ("ints", 1) for t in ("int8", "int16", "int32", "int64", "uint8", "uint16")},
}
