"""``tfgate model-server``: serve SavedModels over TF Serving's gRPC API with TensorFlow.

Start-up loads every model the config selects, then opens the port and prints one line on
stdout, ``model-server listening on HOST:PORT``, so a caller passing ``--port 0`` learns the
port. SIGTERM or SIGINT stop the server cleanly (exit status 0); a bad config or a model that
fails to load exits with status 1 before the port opens.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

_STOP_GRACE_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfgate model-server",
        description="Serve SavedModels over TF Serving's gRPC API, running them with TensorFlow.",
    )
    parser.add_argument(
        "--model-config",
        type=Path,
        required=True,
        help="TF Serving model config file (text-format ModelServerConfig)",
    )
    parser.add_argument(
        "--models-root",
        type=Path,
        default=None,
        help="where base paths under /models are read from "
        "(default: the directory holding the model config)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port; 0 picks a free one")
    parser.add_argument(
        "--enable-serialization-as-tensor-content",
        action="store_true",
        help="send Predict outputs in tensor_content instead of the *_val fields",
    )
    parser.add_argument(
        "--grpc-max-threads",
        type=int,
        default=4 * (os.cpu_count() or 1),
        help="worker threads for RPCs (default: 4 per CPU, as TF Serving)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Runs the model server until SIGTERM or SIGINT; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # TensorFlow's own chatter (CPU features, CUDA probing, deprecations) is noise here.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        return _serve(args, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        from tfgate_model_server.config import load_model_config, plan_versions
    except ModuleNotFoundError as exc:
        logger.error("%s: the model server needs the local extra (pip install -e '.[local]')", exc)
        return 1
    from tfgate_model_server.errors import StartupError

    try:
        models = load_model_config(args.model_config, args.models_root)
        plan = plan_versions(models)
    except StartupError as exc:
        logger.error("%s", exc)
        return 1

    # Imported only now: TensorFlow takes seconds to import, and a bad config should not wait.
    from tfgate_model_server.manager import ServableManager
    from tfgate_model_server.service import build_server

    try:
        manager = ServableManager.load(models, plan)
    except StartupError as exc:
        logger.error("%s", exc)
        return 1
    if stop.is_set():
        manager.close()
        return 0

    address = _address(args.host, args.port)
    try:
        server, health_servicer, port = build_server(
            manager,
            address=address,
            as_tensor_content=args.enable_serialization_as_tensor_content,
            max_workers=args.grpc_max_threads,
        )
    except RuntimeError as exc:
        logger.error("cannot listen on %s: %s", address, exc)
        return 1
    logger.info("serving %s", manager.describe())
    print(f"model-server listening on {_address(args.host, port)}", flush=True)

    while not stop.wait(timeout=1.0):
        pass
    logger.info("stopping")
    health_servicer.enter_graceful_shutdown()
    server.stop(_STOP_GRACE_SECONDS).wait()
    manager.close()
    return 0


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, request_stop)
    return previous
