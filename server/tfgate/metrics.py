"""Prometheus metrics: what tfgate counts, with labels a caller cannot multiply.

Every gateway has a registry of its own (not prometheus_client's global one), so that several
can run in one process; it also holds the process metrics. The fronts report each finished
call through its access-log Record (tfgate.calls), the one place every front passes, so that
calls are counted alike on all of them; the backend client reports attempts and retries. What
tfgate already keeps as state (calls in flight and waiting, calls shed, the retry budget's
refusals, replica and model health, whether the rate limits are shared) is read when Prometheus
scrapes, and costs a call nothing.

Labels are bounded. A model is named as it is once TF Serving has shown it knows it (a call
for it succeeded, or its metadata was read); until then it is ``<unknown>``, so that a caller
sending random names adds one series, not one per name. A version is named only on a call
that succeeded (TF Serving's answer named it), a method only when it is one tfgate serves, a
client only when the config names it (``<other>`` otherwise). The children of each label set
are bound once and kept in a dict: a call pays a dict look-up, not ``labels()``.

With ``metrics = false`` the gateway gets ``Metrics`` itself, whose methods do nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tfgate.errors import Code, RateLimited, Unauthenticated

if TYPE_CHECKING:
    from tfgate.backends.upstream import Upstream
    from tfgate.calls import Call, Record
    from tfgate.config import Config
    from tfgate.policy.limits_redis import SharedLimits

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
UNKNOWN: Final = "<unknown>"  # a model TF Serving has not shown it knows
OTHER: Final = "<other>"  # a method tfgate does not serve, a client the config does not name
# Call durations: 1 ms to 30 s.
CALL_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Preprocessing (tfgate.plans): 50 us to 1 s.
PREPROCESS_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# Calls per batch (tfgate.batcher): 1 to max_batch_size's usual range.
BATCH_SIZES: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The methods the fronts name (tfgate.fronts.*): tfgate.v1's, TF Serving's REST verbs, and the
# paths of TF Serving's gRPC API forwarded.
_TFS_GRPC: Final = {
    "tensorflow.serving.PredictionService": (
        "Predict",
        "GetModelMetadata",
        "Classify",
        "Regress",
        "MultiInference",
    ),
    "tensorflow.serving.ModelService": ("GetModelStatus",),
}
METHODS: Final = frozenset(
    {"Predict", "GetModel", "Classify", "Regress", "GetModelStatus", "GetModelMetadata"}
    | {f"/{service}/{name}" for service, names in _TFS_GRPC.items() for name in names}
)


class Metrics:
    """What the core reports, doing nothing: the gateway's metrics when ``metrics = false``."""

    enabled = False
    # What else hears of every call that ends (tfgate.status' window, set by tfgate.app on the
    # gateway's own Metrics, never on NO_METRICS): none unless the status page is on.
    observers: tuple[Callable[[Record], None], ...] = ()

    def called(self, record: Record) -> None:
        """A call ended (``record.code``, ``record.ms``)."""

    def refused(self, exc: BaseException, call: Call) -> None:
        """A call ended with ``exc``: counted when the gate refused it."""

    def attempt(self, replica: str, code: Code) -> None:
        """TF Serving at ``replica`` answered an attempt with ``code``."""

    def retried(self) -> None:
        """A backend call is being tried again."""

    def preprocessed(self, model: str, seconds: float) -> None:
        """A Predict's plan prepared its request in ``seconds``."""

    def knows(self, model: str) -> None:
        """TF Serving has shown it serves ``model`` (its metadata was read)."""

    def cache_hit(self, model: str) -> None:
        """``model``'s response cache (tfgate.cache) answered a Predict."""

    def cache_missed(self, model: str) -> None:
        """``model``'s response cache sent a Predict on to the backend (a miss or a bypass)."""

    def cache_evicted(self, model: str, count: int) -> None:
        """``model``'s response cache dropped ``count`` answers to stay within its max_bytes."""

    def cache_bytes(self, model: str, size: int) -> None:
        """``model``'s response cache now holds ``size`` bytes."""

    def batch_sent(self, model: str, calls: int) -> None:
        """``model``'s batcher (tfgate.batcher) sent a batch of ``calls`` calls (1: alone)."""

    def unbatchable(self, model: str) -> None:
        """``model``'s answers proved it cannot be batched: its calls now go one by one."""

    def watch(
        self,
        upstream: Upstream,
        available: Mapping[str, bool],
        shared: SharedLimits | None = None,
    ) -> None:
        """Reads the state tfgate keeps anyway, at each scrape."""


NO_METRICS: Final = Metrics()

_CallChildren = tuple[Any, Any]  # prometheus_client's Counter and Histogram children


class Exported(Metrics):
    """tfgate's metrics in a registry of their own; ``exposition`` is what /metrics answers."""

    enabled = True

    def __init__(self, clients: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._clients = frozenset(clients)
        self._models: set[str] = set()
        self._calls = Counter(
            "tfgate_calls",
            "Calls answered, by front, method, model, version and gRPC code.",
            ("front", "method", "model", "version", "code"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "tfgate_call_duration_seconds",
            "Time from a call's arrival to its answer, by front, method and model.",
            ("front", "method", "model"),
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self._attempts = Counter(
            "tfgate_backend_attempts",
            "Calls sent to TF Serving (each retry is one more), by replica and the code it "
            "answered.",
            ("replica", "code"),
            registry=self.registry,
        )
        self._retries = Counter(
            "tfgate_retries", "Backend calls tried again.", registry=self.registry
        )
        self._preprocess = Histogram(
            "tfgate_preprocess_duration_seconds",
            "Time a Predict's preprocessing took, by model.",
            ("model",),
            buckets=PREPROCESS_BUCKETS,
            registry=self.registry,
        )
        self._auth_failures = Counter(
            "tfgate_auth_failures",
            "Calls refused UNAUTHENTICATED, by reason (missing, invalid, expired).",
            ("reason",),
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "tfgate_rate_limited",
            "Calls refused by a rate limit, by client (<other> for clients the config does "
            "not name).",
            ("client",),
            registry=self.registry,
        )
        # Only models with a [models.NAME.cache] table have a cache: the label set is the config's.
        self._cache_hits = Counter(
            "tfgate_cache_hits",
            "Predicts answered by the model's response cache, by model.",
            ("model",),
            registry=self.registry,
        )
        self._cache_misses = Counter(
            "tfgate_cache_misses",
            "Predicts the model's response cache sent on to TF Serving (misses, and calls "
            "with cache-control: no-cache), by model.",
            ("model",),
            registry=self.registry,
        )
        self._cache_evictions = Counter(
            "tfgate_cache_evictions",
            "Answers the model's response cache dropped to stay within its max_bytes, by model.",
            ("model",),
            registry=self.registry,
        )
        self._cache_bytes = Gauge(
            "tfgate_cache_bytes",
            "Bytes the model's response cache holds (at most its max_bytes), by model.",
            ("model",),
            registry=self.registry,
        )
        # Only models with a [models.NAME.batching] table batch: the label set is the config's.
        self._batch_size = Histogram(
            "tfgate_batch_size",
            "Calls per backend Predict sent by the model's batcher (1: a call the window "
            "found alone), by model.",
            ("model",),
            buckets=BATCH_SIZES,
            registry=self.registry,
        )
        self._unbatchable = Gauge(
            "tfgate_batching_unbatchable",
            "1 once the model's answers proved it cannot be batched (an output's first "
            "dimension is not the batch's): its calls go one by one.",
            ("model",),
            registry=self.registry,
        )
        for reason in Unauthenticated.REASONS:
            self._auth_failures.labels(reason)  # each reason is exported from the start, at 0
        self._bound: dict[tuple[str, str, str, object, Code], _CallChildren] = {}
        self._by_attempt: dict[tuple[str, Code], Any] = {}
        self._by_model: dict[str, Any] = {}
        self._by_cache: dict[str, tuple[Any, Any, Any, Any]] = {}
        self._by_batcher: dict[str, Any] = {}
        self._state: _State | None = None

    def called(self, record: Record) -> None:
        model = record.model
        code = record.code
        if code is Code.OK and model != "-":
            self._models.add(model)  # TF Serving answered for it
            version = record.version
        else:
            version = ""
        if model not in self._models:
            model = UNKNOWN if model != "-" else ""
        method = record.method if record.method in METHODS else OTHER
        front = record.call.front
        key = (front, method, model, version, code)
        children = self._bound.get(key)
        if children is None:
            children = self._bound[key] = self._bind(key)
        calls, durations = children
        calls.inc()
        durations.observe(record.ms / 1000.0)

    def _bind(self, key: tuple[str, str, str, object, Code]) -> _CallChildren:
        front, method, model, version, code = key
        shown = "" if version in ("", "-", 0) else str(version)
        return (
            self._calls.labels(front, method, model, shown, code.name),
            self._durations.labels(front, method, model),
        )

    def refused(self, exc: BaseException, call: Call) -> None:
        if isinstance(exc, Unauthenticated):
            self._auth_failures.labels(exc.reason).inc()
        elif isinstance(exc, RateLimited):
            client = call.client if call.client in self._clients else OTHER
            self._rate_limited.labels(client).inc()

    def attempt(self, replica: str, code: Code) -> None:
        key = (replica, code)
        child = self._by_attempt.get(key)
        if child is None:  # replicas are the config's, codes the enum's: bounded
            child = self._by_attempt[key] = self._attempts.labels(replica, code.name)
        child.inc()

    def retried(self) -> None:
        self._retries.inc()

    def preprocessed(self, model: str, seconds: float) -> None:
        child = self._by_model.get(model)
        if child is None:
            # The plan is bound to metadata TF Serving gave for ``model``: it knows it.
            self._models.add(model)
            child = self._by_model[model] = self._preprocess.labels(model)
        child.observe(seconds)

    def knows(self, model: str) -> None:
        if model:
            self._models.add(model)

    def _cache(self, model: str) -> tuple[Any, Any, Any, Any]:
        children = self._by_cache.get(model)
        if children is None:
            children = self._by_cache[model] = (
                self._cache_hits.labels(model),
                self._cache_misses.labels(model),
                self._cache_evictions.labels(model),
                self._cache_bytes.labels(model),
            )
        return children

    def cache_hit(self, model: str) -> None:
        self._cache(model)[0].inc()

    def cache_missed(self, model: str) -> None:
        self._cache(model)[1].inc()

    def cache_evicted(self, model: str, count: int) -> None:
        self._cache(model)[2].inc(count)

    def cache_bytes(self, model: str, size: int) -> None:
        self._cache(model)[3].set(size)

    def batch_sent(self, model: str, calls: int) -> None:
        child = self._by_batcher.get(model)
        if child is None:
            child = self._by_batcher[model] = self._batch_size.labels(model)
        child.observe(calls)

    def unbatchable(self, model: str) -> None:
        self._unbatchable.labels(model).set(1)

    def watch(
        self,
        upstream: Upstream,
        available: Mapping[str, bool],
        shared: SharedLimits | None = None,
    ) -> None:
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = _State(upstream, available, shared)
        self.registry.register(self._state)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (the body of /metrics)."""
        return generate_latest(self.registry)

    def names(self) -> frozenset[str]:
        """Every sample name this registry exports (``_total``, ``_bucket`` ... included)."""
        sampled = {s.name for family in self.registry.collect() for s in family.samples}
        return frozenset(sampled | set(self._declared()))

    def _declared(self) -> Iterator[str]:
        # Families with labels but no child yet export no sample; their names still count.
        for family in self.registry.collect():
            if family.type == "counter":
                yield f"{family.name}_total"
            elif family.type == "histogram":
                yield from (f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
            else:
                yield family.name


class _State(Collector):
    """The gauges and counters read at scrape time from what tfgate keeps anyway."""

    def __init__(
        self,
        upstream: Upstream,
        available: Mapping[str, bool],
        shared: SharedLimits | None,
    ) -> None:
        self._upstream = upstream
        self._available = available
        self._shared = shared

    def collect(self) -> Iterable[Metric]:
        upstream = self._upstream
        limiter = upstream.limiter
        yield GaugeMetricFamily(
            "tfgate_backend_in_flight",
            "Backend calls in flight (at most max_concurrency).",
            value=limiter.in_flight,
        )
        yield GaugeMetricFamily(
            "tfgate_backend_waiting",
            "Callers waiting for a backend call slot (at most max_queue).",
            value=limiter.waiting,
        )
        yield CounterMetricFamily(
            "tfgate_shed",
            "Calls refused RESOURCE_EXHAUSTED because the backend call slots and their queue "
            "were full.",
            value=limiter.shed,
        )
        yield CounterMetricFamily(
            "tfgate_retry_budget_refusals",
            "Retries refused because the retry budget was spent.",
            value=upstream.budget.refused,
        )
        up = GaugeMetricFamily(
            "tfgate_backend_up",
            "Whether the replica answered the last health probe (1) or not (0).",
            labels=("replica",),
        )
        for replica in upstream.replicas:
            up.add_metric((replica.target,), 1.0 if replica.up else 0.0)
        yield up
        models = GaugeMetricFamily(
            "tfgate_model_available",
            "Whether some version of the model (a health_models entry) is AVAILABLE.",
            labels=("model",),
        )
        for model, is_available in self._available.items():
            models.add_metric((model,), 1.0 if is_available else 0.0)
        yield models
        if self._shared is not None:
            yield GaugeMetricFamily(
                "tfgate_rate_limits_shared",
                "Whether the rate limits are counted in Redis (1) or, while it does not "
                "answer, by this tfgate alone (0).",
                value=1.0 if self._shared.shared else 0.0,
            )


def metrics_for(config: Config) -> Metrics:
    """The gateway's metrics: exported unless ``metrics = false``."""
    if not config.metrics:
        return Metrics()  # its own: tfgate.app may give it observers
    clients = set(config.policy.clients) | set(config.limits.clients)
    return Exported(clients)
