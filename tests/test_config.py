"""Config: precedence flag > environment > file > default, and validation naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfgate import config
from tfgate.config import Config, ConfigError, RetryPolicy
from tfgate.errors import Code

NO_FLAGS: dict[str, object] = {"listen": None, "backend": None, "max_concurrency": None}


def test_defaults() -> None:
    loaded = config.load(NO_FLAGS, {})
    assert loaded == Config()
    assert loaded.retry.codes == {Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED}


def test_precedence(tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(
        'listen = "0.0.0.0:9000"\nbackend = "file:1"\nmax_concurrency = 5\n'
        "[retry]\nmax_attempts = 7\n"
    )
    env = {"TFGATE_BACKEND": "env:2", "TFGATE_MAX_CONCURRENCY": "6"}
    loaded = config.load({"max_concurrency": 9}, env, str(path))
    assert loaded.listen == "0.0.0.0:9000"  # file
    assert loaded.backend == "env:2"  # env beats file
    assert loaded.max_concurrency == 9  # flag beats env
    assert loaded.retry.max_attempts == 7


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("default_timeout = 2.5\n")
    assert config.load({}, {"TFGATE_CONFIG": str(path)}).default_timeout == 2.5


@pytest.mark.parametrize(
    ("flags", "env", "needle"),
    [
        ({"listen": "nohost"}, {}, "listen: expected HOST:PORT"),
        ({"backend": "h:99999"}, {}, "backend: expected HOST:PORT"),
        ({"max_concurrency": 0}, {}, "max_concurrency: must be at least 1"),
        ({}, {"TFGATE_MAX_CONCURRENCY": "lots"}, "max_concurrency (from environment)"),
        ({}, {"TFGATE_DEFAULT_TIMEOUT": "-1"}, "default_timeout: must be positive"),
        ({}, {"TFGATE_LOG_LEVEL": "LOUD"}, "log_level"),
    ],
)
def test_bad_settings_name_the_setting(flags, env, needle) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(flags, env)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nonsense = 1\n", "nonsense (from config file"),
        ("max_concurrency = 'many'\n", "max_concurrency (from config file"),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts: must be at least 1"),
        ("[retry]\nretryable_codes = ['INVALID_ARGUMENT']\n", "cannot succeed on a retry"),
        ("[retry]\nretryable_codes = ['NOPE']\n", "not a gRPC status code"),
        ("[retry]\ncolour = 1\n", "retry.colour"),
        ("listen = \n", "config file"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load({}, {}, str(path))
    assert needle in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file /nonexistent\.toml"):
        config.load({}, {}, "/nonexistent.toml")


def test_backend_targets() -> None:
    assert Config(backend="dns:///tf-serving:8500").backend.startswith("dns:")
    assert Config(backend="[::1]:8500").backend == "[::1]:8500"
    with pytest.raises(ConfigError, match="unsupported target scheme"):
        Config(backend="http://x:1")


def test_retry_policy_bounds() -> None:
    with pytest.raises(ConfigError, match="initial_backoff"):
        RetryPolicy(initial_backoff=2.0, max_backoff=1.0)
    assert RetryPolicy(retryable_codes=("UNAVAILABLE", "RESOURCE_EXHAUSTED")).codes == {
        Code.UNAVAILABLE,
        Code.RESOURCE_EXHAUSTED,
    }


def test_file_read_once_is_reused() -> None:
    # The CLI reads the file once and hands the parsed table to each reader (a pipe such as
    # --config <(...) could not be read twice).
    data = {"max_concurrency": 3, "models": {}}
    loaded = config.load({}, {}, "/not/read/again.toml", data)
    assert loaded.max_concurrency == 3
    assert data == {"max_concurrency": 3, "models": {}}  # not consumed either


def test_event_loop_choice() -> None:
    assert config.load({}, {"TFGATE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ConfigError, match="event_loop: expected auto, uvloop or asyncio"):
        config.load({}, {"TFGATE_EVENT_LOOP": "trio"})


def test_a_quoted_number_in_the_file_is_refused_naming_the_setting_and_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text('max_concurrency = "32"\n[retry]\nmax_backoff = "2"\n')
    with pytest.raises(ConfigError) as info:
        config.load({}, {}, str(path))
    assert "max_concurrency" in str(info.value) and str(path) in str(info.value)
    assert "'32'" in str(info.value)
    # Strings stay right for the environment and for flags, which are text by nature.
    assert config.load({}, {"TFGATE_MAX_CONCURRENCY": "32"}).max_concurrency == 32


def test_unknown_tfgate_variables_are_warned_about_with_the_closest_name() -> None:
    env = {"TFGATE_MAX_CONCURENCY": "32", "TFGATE_CONFIG": "x", "TFGATE_BACKEND": "h:1"}
    warnings = config.unknown_variables({**env, "HOME": "/root"})
    assert len(warnings) == 1
    assert "TFGATE_MAX_CONCURENCY" in warnings[0]
    assert "did you mean TFGATE_MAX_CONCURRENCY?" in warnings[0]


@pytest.mark.parametrize(
    ("flags", "env", "text", "where"),
    [
        ({"max_concurrency": 0}, {}, "", "(from command line)"),
        ({}, {"TFGATE_MAX_CONCURRENCY": "0"}, "", "(from environment variable TFGATE_MAX_"),
        ({}, {}, "max_concurrency = 0\n", "(from config file "),
        ({}, {}, "[retry]\nmax_attempts = 0\n", "(from config file "),
    ],
)
def test_an_out_of_range_value_says_where_it_came_from(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], text: str, where: str
) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(flags, env, str(path))
    assert where in str(info.value)
    if "file" in where:
        assert str(path) in str(info.value)


def test_a_misspelt_variable_is_warned_about_even_when_the_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tfgate import cli

    monkeypatch.setenv("TFGATE_MAX_CONCURENCY", "32")
    monkeypatch.setenv("TFGATE_MAX_CONCURRENCY", "0")  # refused: the typo may be why
    assert cli.main(["serve", "--backend", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean TFGATE_MAX_CONCURRENCY?" in err
    assert "configuration error: max_concurrency" in err


def test_streams_per_connection_set_the_servers_limits() -> None:
    from tfgate.app import server_options

    def options(config: Config) -> dict[str, int]:
        return dict(server_options(config))

    default = options(Config())
    assert default["grpc.max_concurrent_streams"] == 100
    assert default["grpc.http.overload_protection"] == 0
    assert default["grpc.server.max_pending_requests"] == 200
    assert default["grpc.server.max_pending_requests_hard_limit"] == 400
    wide = options(config.load({}, {"TFGATE_MAX_STREAMS_PER_CONNECTION": "1000"}))
    assert wide["grpc.max_concurrent_streams"] == 1000
    assert wide["grpc.server.max_pending_requests_hard_limit"] == 4000
    with pytest.raises(ConfigError, match="max_streams_per_connection: must be at least 1"):
        Config(max_streams_per_connection=0)


def test_log_format_from_the_file_the_environment_and_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text('log_format = "json"\n')
    assert config.load({}, {}).log_format == "text"
    assert config.load({}, {}, str(path)).log_format == "json"
    assert config.load({}, {"TFGATE_LOG_FORMAT": "text"}, str(path)).log_format == "text"
    env = {"TFGATE_LOG_FORMAT": "text"}
    assert config.load({"log_format": "json"}, env, str(path)).log_format == "json"
    with pytest.raises(ConfigError) as info:
        config.load({}, {"TFGATE_LOG_FORMAT": "xml"})
    assert str(info.value) == (
        "log_format: expected text or json, got 'xml' (from environment variable TFGATE_LOG_FORMAT)"
    )
