"""The ``tfgate`` command: ``serve``, ``model-server``, ``healthcheck`` and ``hash-key``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tfgate import grpc_flags

if TYPE_CHECKING:
    from tfgate.batcher import BatchingConfig
    from tfgate.cache import CacheConfig
    from tfgate.config import Config
    from tfgate.healthcheck import ClientTls
    from tfgate.plans.plan import Plans


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description=(
            "Run the gateway. Each flag may also come from TFGATE_<FLAG> in the environment "
            "(e.g. TFGATE_MAX_CONCURRENCY) or from the TOML config file; a flag wins over the "
            "environment, which wins over the file."
        ),
    )
    serve.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:8080)")
    serve.add_argument("--http-listen", help="HOST:PORT for the HTTP/JSON front (default: none)")
    serve.add_argument(
        "--admin-listen", help="HOST:PORT serving /metrics alone (default: on --http-listen)"
    )
    serve.add_argument("--backend", help="TF Serving's gRPC HOST:PORT (default 127.0.0.1:8500)")
    serve.add_argument("--max-concurrency", type=int, help="backend calls in flight (default 64)")
    serve.add_argument("--config", help="TOML config file (or TFGATE_CONFIG)")
    serve.add_argument(
        "--default-timeout", type=float, help="seconds, for callers without a deadline"
    )
    serve.add_argument(
        "--wait-for-backend",
        type=float,
        help="seconds a call waits for TF Serving to come back when it is down (default 10)",
    )
    serve.add_argument("--grace-period", type=float, help="seconds in-flight calls get on SIGTERM")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument("--tls-cert", help="PEM certificate: both listeners serve TLS only")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", help="PEM CA bundle: callers need a certificate it signed (mTLS)"
    )
    serve.add_argument("--log-format", help="text (default) or json: one JSON object per line")
    serve.add_argument(
        "--otlp-endpoint", help="http(s)://HOST:PORT of an OTLP/gRPC collector: traces on"
    )


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where chosen (or, for "auto", installed); else asyncio's own."""
    if choice == "asyncio":
        return None
    from tfgate.config import ConfigError

    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def _plans(path: str | None, file_data: Mapping[str, Any]) -> Plans:
    """The plans, with the config file's [models.NAME] sections; without any, the preprocessing
    modules (and their start-up time) are not even imported."""
    from tfgate.plans.plan import Plans

    if "models" not in file_data:
        return Plans()
    from tfgate.plans import config as pipeline_config

    return Plans(pipeline_config.load(path, file_data))


def _model_tables(
    path: str | None, file_data: Mapping[str, Any]
) -> tuple[dict[str, CacheConfig], dict[str, BatchingConfig]]:
    """The config file's [models.NAME.cache] (tfgate.cache) and [models.NAME.batching]
    (tfgate.batcher) tables; without any [models.NAME], neither module is imported."""
    if "models" not in file_data:
        return {}, {}
    from tfgate import batcher, cache

    return cache.configs(path, file_data), batcher.configs(path, file_data)


def _client_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ClientTls | None:
    """healthcheck's --tls-* flags, or None for plain text."""
    from tfgate.healthcheck import ClientTls

    if not (args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    if not args.tls_ca:
        parser.error("--tls-cert, --tls-key and --tls-server-name need --tls-ca")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key: give both or neither")
    return ClientTls(
        args.tls_ca, args.tls_cert or "", args.tls_key or "", args.tls_server_name or ""
    )


def _healthcheck_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "healthcheck",
        help="exit 0 if a tfgate answers SERVING",
        description=(
            "Ask a running tfgate for its grpc.health.v1 status; print one line saying what it "
            "answered (or what failed) and exit 0 for SERVING, 1 otherwise."
        ),
    )
    check.add_argument(
        "--target", default="127.0.0.1:8080", help="tfgate's gRPC HOST:PORT (default %(default)s)"
    )
    check.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)"
    )
    check.add_argument(
        "--service",
        default="",
        help='the service to ask about: "" for tfgate as a whole (default), '
        '"tfgate.v1.InferenceService", or "model:NAME" for a model in health_models',
    )
    check.add_argument("--tls-ca", help="PEM CA bundle: reach a tfgate serving TLS")
    check.add_argument("--tls-cert", help="PEM client certificate, for a tfgate requiring mTLS")
    check.add_argument("--tls-key", help="PEM private key of --tls-cert")
    check.add_argument(
        "--tls-server-name", help="the name in tfgate's certificate, if not the target's host"
    )


def run() -> int:
    """The ``tfgate`` program (its console script, ``python -m tfgate``): main, in a process
    whose grpc runs with tfgate's experiment flags. Nothing here has imported grpc yet, and grpc
    reads them only then (tfgate.grpc_flags)."""
    grpc_flags.set_default(os.environ)
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["model-server"]:
        # A package of its own (source checkouts only, not in tfgate's wheel) that imports
        # TensorFlow and the official TF Serving API: never beside tfgate's own stubs.
        import importlib.util

        needed = ("tfgate_model_server", "tensorflow", "tensorflow_serving")
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            print(
                f"tfgate: model-server needs {', '.join(missing)}: run it from a source "
                "checkout installed with pip install -e '.[local]'",
                file=sys.stderr,
            )
            return 2
        from tfgate_model_server.cli import main as model_server_main

        return int(model_server_main(args_in[1:]))

    parser = argparse.ArgumentParser(prog="tfgate", description="A gRPC gateway for TF Serving")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("model-server", help="run the local TF-Serving-compatible model server")
    _healthcheck_parser(sub)
    sub.add_parser(
        "hash-key",
        help="print the SHA-256 digest of an API key read from stdin, for the keys file",
        description=(
            "Read an API key from standard input (one line; the newline is not part of it) "
            "and print its SHA-256 hex digest, the form [keys.CLIENT] sha256 takes."
        ),
    )
    args = parser.parse_args(args_in)

    if args.command == "hash-key":
        from tfgate.policy.keys import digest

        key = sys.stdin.readline().rstrip("\r\n")
        if not key:
            print("tfgate: hash-key: no key on standard input", file=sys.stderr)
            return 2
        print(digest(key).hex())
        return 0

    if args.command == "healthcheck":
        from tfgate.healthcheck import check_health

        tls = _client_tls(parser, args)
        healthy, line = check_health(args.target, args.timeout, args.service, tls)
        print(line, file=sys.stdout if healthy else sys.stderr)
        return 0 if healthy else 1

    from tfgate import config

    # Before the settings are read: a misspelt variable may be why they are refused.
    for warning in config.unknown_variables(os.environ):
        print(f"tfgate: warning: {warning}", file=sys.stderr)
    try:
        path = config.config_path(args.config, os.environ)
        file_data = config.read_file(path) if path else {}
        flags = {
            "listen": args.listen,
            "http_listen": args.http_listen,
            "admin_listen": args.admin_listen,
            "backend": args.backend,
            "max_concurrency": args.max_concurrency,
            "default_timeout": args.default_timeout,
            "grace_period": args.grace_period,
            "wait_for_backend": args.wait_for_backend,
            "log_level": args.log_level,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
            "tls_client_ca": args.tls_client_ca,
            "log_format": args.log_format,
            "otlp_endpoint": args.otlp_endpoint,
        }
        settings = config.load(flags, os.environ, path, file_data)
        plans = _plans(path, file_data)
        caches, batching = _model_tables(path, file_data)
    except config.ConfigError as exc:
        print(f"tfgate: configuration error: {exc}", file=sys.stderr)
        return 2
    environ = dict(os.environ)

    def reread() -> Config:  # on SIGHUP: the file read anew, with the same flags and variables
        return config.load(flags, environ, path)

    return _serve(settings, plans, reread, caches, batching)


def _serve(
    settings: Config,
    plans: Plans,
    reread: Callable[[], Config],
    caches: Mapping[str, CacheConfig] | None = None,
    batching: Mapping[str, BatchingConfig] | None = None,
) -> int:
    from tfgate import app, config, logs

    # Written by a thread of its own, so that a slow disk never stalls calls; stopped last, so
    # that the shutdown's own lines are written too.
    pipeline = logs.start(settings.log_level, settings.log_format)
    try:
        loop_factory = _loop_factory(settings.event_loop)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(app.serve(settings, plans, reread, caches, batching))
    except config.ConfigError as exc:  # a [models.NAME] section that does not fit its model
        print(f"tfgate: configuration error: {exc}", file=sys.stderr)
        return 2
    except app.ListenError as exc:  # a taken port is a setting to change, like a bad one
        print(f"tfgate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tfgate: {exc}", file=sys.stderr)
        return 1
    finally:
        pipeline.stop()
