"""What seeing tfgate costs: its metrics, and its traces exported over OTLP.

Three paths, each ``tfgate serve`` in front of the same backend, measured in the same
alternating rounds (bench/run.py ``measure_observe``):

- ``tfgate-nometrics``: a config file with ``metrics = false``;
- ``tfgate``: the default, metrics on. They are recorded on every call; nothing scrapes them
  while the bench runs (a scrape every few seconds costs nothing per call);
- ``tfgate-traced``: tfgate (metrics on) with ``--otlp-endpoint`` pointing at the trace sink of
  bench/otlp_sink.py, a process of its own, which counts the spans it is sent. Measured only
  when the installed tfgate knows the setting (``tfgate serve --help`` lists the flag); else
  its rows read "not available".

The metrics cost is tfgate's CPU per call over tfgate-nometrics', the tracing cost
tfgate-traced's over tfgate's, both within each round (bench/report.py ``observe_summary``).
Every answer is checked as for the other paths (bench/load.py).

``metrics_cost``, for reference: what tfgate's metrics do for one good Predict (the call
counted and timed, one backend attempt counted, the preprocessing timed), in-process, against
the do-nothing Metrics of ``metrics = false``; ``python -m bench.observe`` prints it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from bench import otlp_sink, procs, report
from bench.messages import MODEL
from tfgate.calls import Call, Record
from tfgate.config import Config, load
from tfgate.errors import Code
from tfgate.metrics import Exported, Metrics

PATHS = report.OBSERVE_PATHS
OTLP_FLAG = "--otlp-endpoint"


def write_config(workdir: Path) -> Path:
    """The config file of ``tfgate-nometrics`` (metrics off), written into ``workdir``."""
    directory = workdir / "tfgate-nometrics"
    directory.mkdir(exist_ok=True)
    config = directory / "tfgate.toml"
    config.write_text("metrics = false\n")
    return config


def check_metrics(config: Path | None, on: bool) -> None:
    """Raises RuntimeError unless tfgate started with ``config`` (None: none, from an
    environment without TFGATE_* settings, as the bench starts it) records metrics iff ``on``."""
    metrics = Config().metrics if config is None else load({}, {}, str(config)).metrics
    if metrics != on:
        where = "the defaults" if config is None else str(config)
        raise RuntimeError(f"{where}: metrics = {metrics}, expected {on}")


def tracing_unavailable() -> str:
    """Why ``tfgate-traced`` cannot be measured ("" when it can): the installed tfgate must list
    ``--otlp-endpoint`` in ``tfgate serve --help``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tfgate", "serve", "--help"],
            capture_output=True, text=True, timeout=60, check=False, env=procs.clean_env(),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tfgate serve --help failed: {exc}"
    if done.returncode != 0:
        return f"tfgate serve --help exited {done.returncode}"
    return missing_flag(done.stdout)


def missing_flag(help_text: str) -> str:
    """Why ``tfgate serve --help``'s ``help_text`` rules tracing out ("" when it lists
    ``--otlp-endpoint``)."""
    if re.search(rf"(?<![\w-]){re.escape(OTLP_FLAG)}(?![\w-])", help_text):
        return ""
    return f"this tfgate has no {OTLP_FLAG} (tracing not built)"


def start_sink(workdir: Path, cpu: str | None) -> procs.Proc:
    """bench/otlp_sink.py in a process of its own, on ``cpu``."""
    return procs.start_server("otlp-sink", [sys.executable, "-m", "bench.otlp_sink"], workdir, cpu)


def endpoint(sink: procs.Proc) -> str:
    """The OTLP/gRPC endpoint tfgate is given: with ``http://``, which tells OpenTelemetry's
    exporter to connect without TLS."""
    return f"http://127.0.0.1:{sink.port}"


def sink_stats(proc: procs.Proc) -> dict[str, int]:
    """What the trace sink of ``proc`` (a started tfgate-traced) has received so far."""
    (sink,) = proc.companions
    return otlp_sink.stats(f"127.0.0.1:{sink.port}")


def _per_call_us(metrics: Metrics, calls: int) -> float:
    record = Record(Call("grpc", "Predict", 0.0), metrics)
    record.model, record.version, record.ms = MODEL, 1, 1.0
    metrics.knows(MODEL)  # as the catalog tells it once TF Serving answered for the model
    replica = "127.0.0.1:8500"
    began = time.perf_counter()
    for _ in range(calls):
        metrics.preprocessed(MODEL, 1e-5)
        metrics.attempt(replica, Code.OK)
        metrics.called(record)
    return (time.perf_counter() - began) / calls * 1e6


def metrics_cost(calls: int = 20_000, repeats: int = 5) -> dict[str, float]:
    """In-process: µs per good Predict's metrics (``preprocessed``, ``attempt``, ``called``),
    exported and not (``metrics = false``); best of ``repeats`` loops of ``calls``."""
    exported, off = Exported(), Metrics()
    best_on = min(_per_call_us(exported, calls) for _ in range(repeats))
    best_off = min(_per_call_us(off, calls) for _ in range(repeats))
    counted = exported.exposition().decode()
    if f'model="{MODEL}"' not in counted:
        raise RuntimeError("the exported metrics did not count the timed calls")
    return {"exported_us": best_on, "off_us": best_off, "added_us": best_on - best_off}


def main() -> None:
    cost = metrics_cost()
    print(
        f"metrics of one good Predict: {cost['exported_us']:.2f} µs exported, "
        f"{cost['off_us']:.2f} µs with metrics = false: {cost['added_us']:+.2f} µs "
        "(best of 5 x 20,000)"
    )


if __name__ == "__main__":
    main()
