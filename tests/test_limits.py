"""tfgate.policy.limits and its config without a server: token buckets on an injected clock."""

from __future__ import annotations

import contextlib

import pytest

from tfgate.config import ConfigError, load
from tfgate.errors import RateLimited, ResourceExhausted, retry_after_ms, retry_after_seconds
from tfgate.policy.config import PolicyError
from tfgate.policy.limits import RateLimits
from tfgate.policy.limits_config import ClientLimits, LimitsConfig, Rate, limits_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(limits: RateLimits, client: str, model: str = "m") -> RateLimited:
    with pytest.raises(RateLimited) as info:
        limits.check(client, model)
    return info.value


def passes(limits: RateLimits, client: str, model: str = "m") -> int:
    """How many calls in a row pass, right now."""
    count = 0
    while count < 10_000:
        try:
            limits.check(client, model)
        except RateLimited:
            return count
        count += 1
    raise AssertionError("no limit reached")


def test_burst_then_rate_then_refill() -> None:
    clock = Clock()
    limits = RateLimits(LimitsConfig(rate=Rate(10, 5)), clock=clock)
    assert passes(limits, "-") == 5  # the burst at once
    error = refused(limits, "-")
    assert isinstance(error, ResourceExhausted)
    assert error.retry_after == pytest.approx(0.1)  # one token per 1/10 s
    assert error.message == "global rate limit of 10/s (burst 5) reached; retry after 0.1 s"
    clock.now += 0.05
    assert refused(limits, "-").retry_after == pytest.approx(0.05)
    clock.now += 0.05
    assert passes(limits, "-") == 1
    clock.now += 100  # a long pause refills to the burst, no further
    assert passes(limits, "-") == 5


def test_a_refused_call_takes_no_token() -> None:
    clock = Clock()
    config = LimitsConfig(rate=Rate(0.5, 3), client=Rate(1, 1))
    limits = RateLimits(config, ["a", "b"], clock=clock)
    assert passes(limits, "a") == 1
    assert 'client "a"' in refused(limits, "a").message
    # a's refusals took nothing from the global bucket: b still gets the rest of it.
    for _ in range(5):
        refused(limits, "a")
    assert passes(limits, "b") == 1
    assert passes(limits, "c") == 1  # the shared bucket of clients the config does not name
    error = refused(limits, "a")
    assert error.message.startswith("global rate limit")  # the limit furthest from a token
    assert error.retry_after == pytest.approx(2.0)


def test_clients_and_model_patterns() -> None:
    clock = Clock()
    reports = ClientLimits(Rate(100, 4), (("half_*", Rate(1, 2)), ("*", Rate(1, 3))))
    limits = RateLimits(LimitsConfig(clients={"reports": reports}), clock=clock)
    assert passes(limits, "reports", "half_plus_two") == 2
    # the pattern's bucket is shared by the models it matches
    error = refused(limits, "reports", "half_plus_three")
    assert error.message.startswith('rate limit for client "reports" on models "half_*" of 1/s')
    assert passes(limits, "reports", "iris") == 2  # "*": first match wins; client bucket: 4
    assert refused(limits, "reports", "iris").message.startswith(
        'rate limit for client "reports" of 100/s (burst 4)'
    )
    for _ in range(1000):  # no default client rate: others are not limited
        limits.check("other", "half_plus_two")


def test_bucket_count_is_fixed_by_the_config() -> None:
    clock = Clock()
    reports = ClientLimits(None, (("half_*", Rate(1, 1)),))
    config = LimitsConfig(rate=Rate(5, 5), client=Rate(1, 1), clients={"reports": reports})
    limits = RateLimits(config, ["reports", "batch"], clock=clock)
    # global + reports (default rate) + its pattern + batch + the shared one
    assert limits.buckets == 5
    for n in range(2000):
        with contextlib.suppress(RateLimited):
            limits.check(f"client-{n}", f"model-{n}")
        clock.now += 1
    assert limits.buckets == 5
    assert passes(limits, "client-x") == 1
    assert refused(limits, "-").message.startswith("rate limit for clients the config does not")


def test_retry_after_in_whole_units() -> None:
    assert [retry_after_seconds(x) for x in (0.0001, 0.99, 1.0, 1.01, 7.5)] == [1, 1, 1, 2, 8]
    assert [retry_after_ms(x) for x in (0.0001, 0.02, 0.0201, 1.5)] == [1, 20, 21, 1500]


def test_config_of_the_table() -> None:
    config = limits_of(
        {
            "rate": 1000,
            "burst": 2000,
            "client_rate": 100,
            "client_share": 0.5,
            "redis": "unix:///run/redis.sock",
            "clients": {
                "reports": {
                    "rate": 10,
                    "burst": 20,
                    "models": {"half_*": {"rate": 5, "burst": 5}, "iris": {"rate": 0.5}},
                }
            },
        }
    )
    assert config.rate == Rate(1000, 2000)
    assert config.client == Rate(100, 100)  # burst absent: the rate
    assert config.client_share == 0.5
    assert (config.redis, config.redis_timeout) == ("unix:///run/redis.sock", 0.05)
    assert config.clients["reports"] == ClientLimits(
        Rate(10, 20), (("half_*", Rate(5, 5)), ("iris", Rate(0.5, 1)))
    )
    assert config.rate_limited
    assert not limits_of({}).rate_limited
    assert not limits_of({"client_share": 0.25}).rate_limited


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rate": 0}, "limits.rate: must be positive"),
        ({"rate": "10"}, "limits.rate: expected a number"),
        ({"rate": True}, "limits.rate: expected a number"),
        ({"rate": 10, "burst": 0.5}, "limits.burst: must be at least 1"),
        ({"burst": 10}, "limits.burst: needs rate as well"),
        ({"client_burst": 10}, "limits.client_burst: needs client_rate as well"),
        ({"client_share": 0}, "limits.client_share: expected a fraction"),
        ({"client_share": 1.5}, "limits.client_share: expected a fraction"),
        ({"rates": 1}, "limits.rates: unknown setting"),
        (
            {"redis": "http://x:s3cret@h"},
            "limits.redis: expected a redis://, rediss:// or unix:// URL$",
        ),
        ({"redis": 6379}, "limits.redis: expected a string"),
        ({"redis_timeout": 0}, "limits.redis_timeout: expected seconds above 0"),
        ({"clients": []}, "limits.clients: must be a table"),
        ({"clients": {"a": {"rat": 1}}}, "limits.clients.a.rat: unknown setting"),
        ({"clients": {"a": {"rate": -1}}}, "limits.clients.a.rate: must be positive"),
        ({"clients": {"a": {"models": ["x"]}}}, "limits.clients.a.models: must be a table"),
        ({"clients": {"a": {"models": {"x": {}}}}}, 'limits.clients.a.models."x".rate: required'),
        (
            {"clients": {"a": {"models": {"x": {"rate": 1, "burst": 0}}}}},
            'limits.clients.a.models."x".burst: must be at least 1',
        ),
    ],
)
def test_bad_settings_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace(".", r"\.").replace("*", r"\*")):
        limits_of(table)


def test_the_config_file_reads_limits() -> None:
    data = {"max_concurrency": 8, "limits": {"rate": 5, "clients": {"a": {"rate": 2}}}}
    config = load({}, {}, "tfgate.toml", file_data=data)
    assert config.limits.rate == Rate(5, 5)
    assert config.limits.clients["a"] == ClientLimits(Rate(2, 2))
    assert load({}, {}, None).limits == LimitsConfig()
    with pytest.raises(ConfigError, match=r"^limits\.rate: must be positive.*tfgate\.toml"):
        load({}, {}, "tfgate.toml", file_data={"limits": {"rate": -1}})
    with pytest.raises(ConfigError, match="unknown setting"):
        load({"limits": "x"}, {}, None)  # a table of the file, not a flag
