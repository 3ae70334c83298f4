"""``make bench``: every path under the same load, the conversion and start-up figures, one table.

Knobs (flags, or the environment variables in brackets):
  --seconds S    [BENCH_SECONDS, 8]   measured seconds per run, after --warmup S [BENCH_WARMUP, 1]
  --quick        [BENCH_QUICK=1]      a smoke test: 1 s runs, 0.5 s warm-ups, fewer repetitions
  --rounds N     [BENCH_ROUNDS, 3]    paired runs of the pass-through and tfgate, and of the
                                      HTTP paths (0: none)
  --extras       [BENCH_EXTRAS=1]     also uvloop and SO_REUSEPORT workers for the pass-through
  --no-pin       [BENCH_PIN=0]        let the scheduler place processes instead of taskset

On 2 cores the process under test gets CPU 1 to itself, the backend and h2load share CPU 0 (for
the direct path h2load takes CPU 1 instead). The HTTP paths (http-floor, tfgate-http,
tfgate-http-v1) are measured in paired runs of their own (part "http"), over HTTP/1.1 with one
keep-alive connection per call in flight. Access control (part "auth": tfgate against
tfgate-auth and tfgate-jwt, bench/access.py) gets paired runs of its own at c=16, twice
--rounds rounds; alone: --parts auth. The cost of metrics and of tracing (part "observe":
tfgate-nometrics, tfgate and tfgate-traced, bench/observe.py) is measured the same way, at c=16
for twice --rounds rounds and at c=1 for --rounds rounds; alone: --parts observe. The response
cache (part "cache", bench/cache.py: a hit against a miss, paired at c=16 for twice --rounds
rounds and at c=1 for --rounds rounds; then a bounded load with 50% repeated requests) and
micro-batching (part "batch", bench/batch.py: tfgate-batched with the pass-through and tfgate at
c=64, with tfgate at c=1, and with and without batching in front of the local model server on
iris at c=16, --rounds rounds each) likewise. The floor study
(part "floor", bench/floor.py): the bare pass-through on several grpcio releases, each in a venv
of its own (made on first use), with and without grpc's EventEngine, paired for --rounds rounds
of 3 s runs at c=16 and c=64 (about 3 minutes); alone: --parts floor. Results:
bench/results/latest.json and a timestamped copy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench import (
    access,
    batch,
    cache,
    conversion,
    floor,
    load,
    observe,
    paths,
    procs,
    report,
    startup,
    system,
)

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = (1, 16, 64)
SIZES = ("small", "large")
FRONT_CPU, BACK_CPU = "1", "0"


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value not in ("", "0", "no", "false")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--seconds", type=float, default=os.environ.get("BENCH_SECONDS"))
    parser.add_argument("--warmup", type=float, default=os.environ.get("BENCH_WARMUP"))
    parser.add_argument("--quick", action="store_true", default=_env_flag("BENCH_QUICK", False))
    parser.add_argument("--rounds", type=int, default=os.environ.get("BENCH_ROUNDS"))
    parser.add_argument("--extras", action="store_true", default=_env_flag("BENCH_EXTRAS", False))
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", default=_env_flag("BENCH_PIN", True)
    )
    parser.add_argument(
        "--paths",
        default="direct,nginx,passthrough,tfgate,tfgate-info",
        help="comma-separated, from: " + ", ".join(paths.PATHS),
    )
    parser.add_argument(
        "--backend",
        choices=("node", "python"),
        default=os.environ.get("BENCH_BACKEND", "node"),
        help="node: bench/backend.js (default); python: the slower grpc.aio bench/backend.py",
    )
    parser.add_argument("--sizes", default=",".join(SIZES), help="small, large")
    parser.add_argument(
        "--concurrency", default=",".join(map(str, CONCURRENCY)), help="default 1,16,64"
    )
    parser.add_argument(
        "--parts",
        default="load,http,auth,observe,cache,batch,floor,conversion,startup",
        help="which parts to run (default: all of load, http, auth, observe, cache, batch, "
        "floor, conversion, startup)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 8.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.seconds, args.warmup, args.rounds = (
        float(args.seconds),
        float(args.warmup),
        int(args.rounds),
    )
    args.sizes = tuple(s for s in args.sizes.split(",") if s)
    args.concurrency = tuple(int(c) for c in args.concurrency.split(",") if c)
    return args


def _version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "h2load": _version(["h2load", "--version"]),
        "nginx": _version(["nginx", "-v"]),
        "node": _version(["node", "--version"]),
        "kernel": platform.release(),
    }


def measure_paths(
    names: list[str], backend: procs.Proc, args: argparse.Namespace, workdir: Path
) -> list[report.Row]:
    rows: list[report.Row] = []
    for name in names:
        route = paths.PATHS[name]
        front_cpu = FRONT_CPU if args.pin else None
        proc = paths.start(name, backend, workdir, front_cpu)
        target = f"127.0.0.1:{(proc or backend).port}"
        headers = paths.headers_of(proc)
        if not _answers(target, route, headers):
            if proc is not None:
                proc.stop()
            print(f"  {name:<22} not built: {route.method} is UNIMPLEMENTED", flush=True)
            rows += [
                {"path": name, "size": s, "conc": c, "note": "not built"}
                for s in args.sizes
                for c in args.concurrency
            ]
            continue
        # The access-log and access-control runs show what those cost: small requests are enough.
        sizes = ("small",) if name in ("tfgate-info", *access.PATHS) else args.sizes
        load_cpu = (FRONT_CPU if name == "direct" else BACK_CPU) if args.pin else None
        settings = load.Settings(args.seconds, args.warmup, load_cpu)
        stage = load.Stage(route, target, proc, backend, settings, workdir, headers)
        try:
            for size in sizes:
                for conc in args.concurrency:
                    rows.append(_one(stage, size, conc))
        finally:
            if proc is not None:
                proc.stop()
    return rows


def _one(stage: load.Stage, size: str, conc: int, tag: str = "") -> report.Row:
    name = stage.route.name
    label = f"{name:<22} {size:<5} c={conc:<3}" + (f" {tag}" if tag else "")
    try:
        row = load.drive(stage, size, conc)
    except Exception as exc:  # one broken path must not hide the others' figures
        row = {"path": name, "size": size, "conc": conc, "error": _short(exc)}
    if "error" in row:
        print(f"  {label} ERROR {row['error']}", flush=True)
    else:
        print(
            f"  {label} {row['rps']:8.0f} req/s  p50 {row['p50_ms']:7.3f} ms  "
            f"p99 {row['p99_ms']:7.3f} ms  cpu {row['cpu_ms']:.3f} ms/req"
            + (
                f"  (other work: {row['others_cpus']:.2f} CPUs)" if row["others_cpus"] > 0.1 else ""
            ),
            flush=True,
        )
    return row


PAIRED = ("passthrough", "tfgate")
# The floor first: in every round tfgate-http runs right next to it.
HTTP_PAIRED = report.HTTP_PATHS
# tfgate without access control first, then with it (an API key; a cached JWT): its cost is a
# few per cent of a call's CPU, less than the spread between rounds, hence more of them, at the
# one concurrency its target names.
AUTH_PAIRED = ("tfgate", *access.PATHS)
AUTH_CONCURRENCY = (report.AUTH_CONC,)
# Paths that are routes of one server (or one server called another way): started once.
_SERVER_OF = {"tfgate-http-v1": "tfgate-http", cache.MISS_PATH: cache.HIT_PATH}


def measure_paired(
    backend: procs.Proc,
    args: argparse.Namespace,
    workdir: Path,
    names: tuple[str, ...] = PAIRED,
    *,
    concurrencies: tuple[int, ...] = (),
    rounds: int | None = None,
    inspect: Callable[[Mapping[str, procs.Proc]], None] | None = None,
    payload: load.Payload | None = None,
) -> list[report.Row]:
    """``names`` (the pass-through and tfgate; or the HTTP paths; or tfgate with and without
    access control), small requests, run back to back in alternating order, at
    ``concurrencies`` (default: --concurrency) for ``rounds`` rounds (default: --rounds).

    The target ratios come from these rows: on a shared VM the CPU other tenants leave drifts
    over minutes, so one run of each path minutes apart can differ by more than the gateways do.
    Each round measures every path at each concurrency, one right after the other (3 s runs),
    in the order of ``names`` and then reversed, and a ratio is the median over the rounds of
    the ratio within each round. ``inspect`` is given the started processes by path after the
    last round, before they stop. ``payload``: what every call sends, when not half_plus_two's
    small request (and ``backend`` is what serves its model).
    """
    front = FRONT_CPU if args.pin else None
    seconds = min(args.seconds, 3.0)
    settings = load.Settings(seconds, min(args.warmup, 0.5), BACK_CPU if args.pin else None)
    rows: list[report.Row] = []
    with contextlib.ExitStack() as stack:
        stages = {}
        started: dict[str, procs.Proc] = {}
        for name in names:
            server = _SERVER_OF.get(name, name)
            proc = started.get(server)
            if proc is None:
                proc = paths.start(server, backend, workdir, front)
                assert proc is not None
                stack.callback(proc.stop)
                started[server] = proc
            stages[name] = load.Stage(
                paths.PATHS[name], f"127.0.0.1:{proc.port}", proc, backend, settings, workdir,
                paths.headers_of(proc, name), payload,
            )  # fmt: skip
        for round_ in range(args.rounds if rounds is None else rounds):
            for conc in concurrencies or args.concurrency:
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    row = _one(stages[name], "small", conc, f"round {round_ + 1}")
                    rows.append({**row, "round": round_ + 1})
        if inspect is not None:
            inspect({name: stage.front for name, stage in stages.items() if stage.front})
    return rows


def measure_access(
    backend: procs.Proc, args: argparse.Namespace, workdir: Path
) -> tuple[list[report.Row], dict[str, dict[str, float]]]:
    """tfgate without and with access control, paired at c=16 (twice --rounds rounds), and the
    in-process cost of the gate each path configures (bench.access.admit_cost)."""
    rounds = 2 * args.rounds
    print(
        f"  access control: {', '.join(AUTH_PAIRED)}, paired, {rounds} round(s) at "
        f"c={report.AUTH_CONC} ...",
        flush=True,
    )
    rows = measure_paired(
        backend, args, workdir, AUTH_PAIRED, concurrencies=AUTH_CONCURRENCY, rounds=rounds
    )
    return rows, {name: access.admit_cost(name, workdir) for name in access.PATHS}


def measure_observe(backend: procs.Proc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """tfgate without metrics, with them (the default) and with tracing too, paired: at c=16
    for twice --rounds rounds, then at c=1 for --rounds rounds. Tracing is left out, with the
    reason, when the installed tfgate has no OTLP setting; when measured, what its trace sinks
    received is kept (``spans``: how many were exported); and the in-process cost of a call's
    metrics (bench.observe.metrics_cost)."""
    tracing = observe.tracing_unavailable()
    names = ("tfgate-nometrics", "tfgate") + (() if tracing else ("tfgate-traced",))
    received: list[dict[str, int]] = []

    def read_sink(started: Mapping[str, procs.Proc]) -> None:
        if "tfgate-traced" in started:
            received.append(observe.sink_stats(started["tfgate-traced"]))

    rows: list[report.Row] = []
    for conc, rounds in ((report.OBSERVE_CONC, 2 * args.rounds), (1, args.rounds)):
        print(
            f"  metrics and tracing: {', '.join(names)}, paired, {rounds} round(s) at c={conc}"
            + (f" (tfgate-traced not available: {tracing})" if tracing else "")
            + " ...",
            flush=True,
        )
        rows += measure_paired(
            backend, args, workdir, names, concurrencies=(conc,), rounds=rounds,
            inspect=read_sink,
        )  # fmt: skip
    sink = {k: sum(r[k] for r in received) for k in ("requests", "bytes", "spans")}
    return {
        "rows": rows,
        "summary": report.observe_summary(rows),
        "tracing": "not available: " + tracing if tracing else "measured",
        "sink": sink if received else {},
        "in_process": observe.metrics_cost(),
    }


def measure_cache(backend: procs.Proc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A cache hit against a miss (bench/cache.py), paired: at c=16 for twice --rounds rounds,
    then at c=1 for --rounds rounds, the server's cache counts read after each; then the bounded
    load with 50% repeated requests against a fresh tfgate-cached."""
    rows: list[report.Row] = []
    checks: list[str] = []
    for conc, rounds in ((report.CACHE_CONC, 2 * args.rounds), (1, args.rounds)):
        measured, problem = _cache_rounds(backend, args, workdir, conc, rounds)
        rows += measured
        checks += [f"c={conc}: {problem}"] if problem else []
    calls = 600 if args.quick else 4000
    print(f"  response cache: {calls} calls, every other one a repeat ...", flush=True)
    proc = paths.start(cache.HIT_PATH, backend, workdir, FRONT_CPU if args.pin else None)
    assert proc is not None
    try:
        repeated = cache.repeated(
            f"127.0.0.1:{proc.port}", paths.DOMAIN_PREDICT, lambda: paths.metrics_text(proc), calls
        )
    finally:
        proc.stop()
    return {
        "rows": rows,
        "summary": report.pair_summary(rows, [(cache.HIT_PATH, cache.MISS_PATH)]),
        "checks": checks,
        "repeated": repeated,
    }


def _cache_rounds(
    backend: procs.Proc, args: argparse.Namespace, workdir: Path, conc: int, rounds: int
) -> tuple[list[report.Row], str]:
    """The paired hit and miss runs at ``conc``, and what the server's cache counts after them
    say is wrong with them ("" when nothing)."""
    names = (cache.HIT_PATH, cache.MISS_PATH)
    print(
        f"  response cache: {', '.join(names)}, paired, {rounds} round(s) at c={conc} ...",
        flush=True,
    )
    counted: list[dict[str, float]] = []

    def count(started: Mapping[str, procs.Proc]) -> None:
        text = paths.metrics_text(started[cache.HIT_PATH])
        counted.append(report.cache_counts(text, cache.MODEL))

    measured = measure_paired(
        backend, args, workdir, names, concurrencies=(conc,), rounds=rounds, inspect=count
    )
    return measured, report.cache_check(counted[0], measured) if counted else "not read"


def measure_batch(backend: procs.Proc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Micro-batching (bench/batch.py), paired: tfgate-batched with the pass-through and tfgate
    at c=64, with tfgate at c=1, --rounds rounds each; then tfgate with and without batching in
    front of the local model server on iris at c=16. Left out, with the reason, when tfgate
    refuses the batching table."""
    front = FRONT_CPU if args.pin else None
    why = _batching_refused(backend, workdir, front)
    if why:
        print(f"  micro-batching: not available: {why}", flush=True)
        return {
            "rows": [], "summary": [], "note": f"not available: {why}",
            "max_delay_ms": batch.MAX_DELAY_MS,
        }  # fmt: skip
    counts: dict[str, Any] = {}

    def counter(model: str, path: str, conc: int) -> Callable[[Mapping[str, procs.Proc]], None]:
        def count(started: Mapping[str, procs.Proc]) -> None:
            counts[f"{path} c={conc}"] = report.batch_counts(
                paths.metrics_text(started[path]), model
            )

        return count

    rows: list[report.Row] = []
    for names, conc in (
        (("passthrough", "tfgate", report.BATCHED), report.BATCH_CONC),
        (("tfgate", report.BATCHED), 1),
    ):
        print(
            f"  micro-batching: {', '.join(names)}, paired, {args.rounds} round(s) at c={conc} ...",
            flush=True,
        )
        rows += measure_paired(
            backend, args, workdir, names, concurrencies=(conc,),
            inspect=counter(cache.MODEL, report.BATCHED, conc),
        )  # fmt: skip
    real: list[report.Row] = []
    note = ""
    (batched, plain), conc = report.REAL_PAIRS[0], batch.REAL_CONC
    print(
        f"  micro-batching on {batch.REAL_MODEL} (local model server): {plain}, {batched}, "
        f"paired, {args.rounds} round(s) at c={conc} ...",
        flush=True,
    )
    try:
        # Unpinned: on CPU 0 alone, next to h2load, TensorFlow's threads answered ~30 calls/s.
        server = batch.start_model_server(workdir, None)
    except (RuntimeError, TimeoutError) as exc:
        note = f"the local model server did not start: {_short(exc)}"
        print(f"  {note}", flush=True)
    else:
        try:
            real = measure_paired(
                server, args, workdir, (plain, batched), concurrencies=(conc,),
                inspect=counter(batch.REAL_MODEL, batched, conc),
                payload=load.Payload(batch.REAL_MODEL, batch.iris_request(), batch.check_iris),
            )  # fmt: skip
        finally:
            server.stop()
    pairs = [*report.BATCH_PAIRS, *report.REAL_PAIRS]
    return {
        "rows": rows + real,
        "summary": report.pair_summary(rows + real, pairs),
        "batches": counts,
        "max_delay_ms": batch.MAX_DELAY_MS,
        "note": note,
    }


def _batching_refused(backend: procs.Proc, workdir: Path, cpu: str | None) -> str:
    """Why tfgate-batched cannot be measured: the reason a tfgate that refuses the batching
    table gives ("" when it starts)."""
    try:
        proc = paths.start(report.BATCHED, backend, workdir, cpu)
    except RuntimeError as exc:
        why = batch.unavailable(str(exc))
        if why:
            return why
        raise
    if proc is not None:
        proc.stop()
    return ""


def measure_floor(backend: procs.Proc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The floor study (bench/floor.py): its runs last at most 3 s, shorter with --seconds."""
    seconds = min(args.seconds, floor.PART_SECONDS)
    print(f"  floor: the pass-through on several grpcio releases, {args.rounds} round(s) ...")
    return floor.part(backend, workdir, rounds=args.rounds, seconds=seconds, pin=args.pin)


def measure_extras(
    backend: procs.Proc, args: argparse.Namespace, workdir: Path
) -> list[report.Row]:
    """The pass-through on uvloop, and as 1 or 2 SO_REUSEPORT workers (small requests).

    The kernel spreads connections, not streams, over SO_REUSEPORT workers, so these runs use 4
    connections (c=16: 4 streams each; c=64: 16 each) for both worker counts.
    """
    rows: list[report.Row] = []
    route = paths.PATHS["passthrough"]
    target_of = lambda p: f"127.0.0.1:{p.port}"  # noqa: E731
    variants: list[tuple[str, dict[str, Any], str | None, int | None]] = [
        ("passthrough-uvloop", {"uvloop": True}, FRONT_CPU, None),
        ("passthrough-4conn", {}, None, 4),
        ("passthrough-x2-4conn", {"workers": 2}, None, 4),
    ]
    for label, options, cpu, connections in variants:
        if options.get("uvloop") and not _has_uvloop():
            rows.append({"path": label, "size": "small", "conc": 0, "note": "uvloop not installed"})
            continue
        front_cpu = cpu if args.pin else None
        proc = paths.start_passthrough(target_of(backend), workdir, front_cpu, **options)
        settings = load.Settings(
            args.seconds, args.warmup, BACK_CPU if args.pin and cpu else None, connections
        )
        try:
            for conc in args.concurrency:
                if connections and conc < connections:
                    continue
                stage = load.Stage(
                    paths.Route(label, route.method), target_of(proc), proc, backend, settings,
                    workdir,
                )  # fmt: skip
                rows.append(_one(stage, "small", conc))
        finally:
            proc.stop()
    return rows


def _answers(target: str, route: paths.Route, headers: load.Headers = ()) -> bool:
    """False when ``target`` does not implement ``route``'s method (a path not built yet)."""
    try:
        load.verify(target, route, "small", calls=1, headers=headers)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
    except ValueError:
        pass  # it answers, wrongly: the measured run will say so
    return True


def _short(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"gRPC {exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _cache_and_batch(
    parts: set[str], backend: procs.Proc, args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parts "cache" and "batch", each as measured, or empty when not asked for."""
    cached: dict[str, Any] = {"rows": [], "summary": [], "repeated": None}
    batched: dict[str, Any] = {"rows": [], "summary": [], "max_delay_ms": batch.MAX_DELAY_MS}
    if "cache" in parts and args.rounds > 0:
        cached = measure_cache(backend, args, workdir)
    if "batch" in parts and args.rounds > 0:
        batched = measure_batch(backend, args, workdir)
    return cached, batched


def _conversion_and_startup(
    parts: set[str], backend: procs.Proc, workdir: Path, reps: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parts "conversion" and "startup", each as measured, or empty when not asked for."""
    converted: dict[str, Any] = {}
    if "conversion" in parts:
        print("  conversion: 1M float32, and a 224x224x3 REST body ...", flush=True)
        converted = conversion.measure(reps)
    started: dict[str, Any] = {}
    if "startup" in parts:
        print("  start-up and idle memory ...", flush=True)
        started = startup.measure(f"127.0.0.1:{backend.port}", workdir, 5)
    return converted, started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    system.ensure()
    if args.pin and (os.cpu_count() or 1) < 2:
        args.pin = False
    env = environment()
    print(
        f"tfgate bench: {args.seconds:g} s runs after {args.warmup:g} s warm-ups, "
        f"{'pinned with taskset' if args.pin else 'unpinned'}; load average "
        f"{' '.join(f'{v:.2f}' for v in env['load_average'])} on {env['cpus']} CPUs",
        flush=True,
    )
    if env["load_average"][0] > 0.5:
        print("  note: the machine is busy; figures will be lower than on an idle one", flush=True)
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    if "tfgate-tfs" not in names:
        names.append("tfgate-tfs")
    reps = 3 if args.quick else 9
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfgate-bench-")))
        start_backend = (
            paths.start_backend if args.backend == "node" else paths.start_python_backend
        )
        backend = start_backend(workdir, BACK_CPU if args.pin else None)
        stack.callback(backend.stop)
        parts = set(args.parts.split(","))
        rows = measure_paths(names, backend, args, workdir) if "load" in parts else []
        paired: list[report.Row] = []
        if "load" in parts and args.rounds > 0:
            print(f"  pass-through and tfgate, paired, {args.rounds} round(s) ...", flush=True)
            paired = measure_paired(backend, args, workdir)
        http_rows: list[report.Row] = []
        if "http" in parts and args.rounds > 0:
            print(
                f"  HTTP: {', '.join(HTTP_PAIRED)}, paired, {args.rounds} round(s) ...",
                flush=True,
            )
            http_rows = measure_paired(backend, args, workdir, HTTP_PAIRED)
        auth_rows, in_process = (
            measure_access(backend, args, workdir)
            if "auth" in parts and args.rounds > 0
            else ([], {})
        )
        observed = (
            measure_observe(backend, args, workdir)
            if "observe" in parts and args.rounds > 0
            else {"rows": [], "summary": []}
        )
        cached, batched = _cache_and_batch(parts, backend, args, workdir)
        extras = measure_extras(backend, args, workdir) if args.extras else []
        floored = measure_floor(backend, args, workdir) if "floor" in parts and args.rounds else {}
        converted, started = _conversion_and_startup(parts, backend, workdir, reps)
    ratio_rows = report.ratios(rows, args.concurrency)
    paired_ratios = report.paired_ratios(paired, args.concurrency)
    http_summary = report.http_summary(http_rows, args.concurrency)
    access_summary = report.access_summary(auth_rows)
    target_rows = report.targets(
        ratio_rows, converted, started, paired_ratios, http_summary, access=access_summary,
        observe=observed["summary"], cache=cached if "cache" in parts else None,
        batch=batched if "batch" in parts else None,
    ) + report.floor_targets(floored)  # fmt: skip
    env["load_average_after"] = os.getloadavg()
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "pin": args.pin,
                     "quick": args.quick, "backend": args.backend,
                     "h2load": "one connection, -m = concurrency",
                     "h2load_http": "--h1, one keep-alive connection per call in flight"},
        "environment": env,
        "rows": rows,
        "ratios": ratio_rows,
        "paired": paired,
        "paired_ratios": paired_ratios,
        "http": {"rows": http_rows, "summary": http_summary},
        "access": {"rows": auth_rows, "summary": access_summary, "in_process": in_process},
        "observe": observed,
        "cache": cached,
        "batch": batched,
        "floor": floored,
        "targets": target_rows,
        "conversion": converted,
        "startup": started,
        "extras": extras,
        "elapsed_s": time.monotonic() - began,
    }  # fmt: skip
    print()
    print(render(results))
    print(
        f"\nwritten: {args.out / 'latest.json'} and {report.save(results, args.out).name} "
        f"({results['elapsed_s']:.0f} s)"
    )
    return 1 if any("error" in r for group in (
        rows, paired, http_rows, auth_rows, observed["rows"], cached["rows"], batched["rows"],
        floored.get("rows", []), extras,
    ) for r in group) else 0  # fmt: skip


def render(results: dict[str, Any]) -> str:
    conv, start = results["conversion"], results["startup"]
    parts: list[str] = []
    if results["rows"]:
        parts += [report.table(results["rows"]), "", report.ratio_table(results["ratios"])]
    if results.get("paired_ratios"):
        parts += [
            "",
            "Paired runs (small requests):",
            report.paired_table(results["paired_ratios"]),
        ]
    http = results.get("http", {}).get("summary")
    if http:
        parts += [
            "",
            "HTTP/1.1 keep-alive, one connection per call in flight, small requests, paired "
            "(medians over the rounds):",
            report.http_table(http),
        ]
    access_rows = results.get("access", {}).get("summary")
    if access_rows:
        parts += [
            "",
            f"Access control, small requests, c={report.AUTH_CONC}, paired with tfgate without "
            "it (gateway CPU per call):",
            report.access_table(access_rows),
        ]
        for name, cost in results["access"].get("in_process", {}).items():
            parts.append(
                f"In-process, {name}'s gate: Gate.admit {cost['admit_us']:.2f} µs per call "
                f"({cost['added_us']:+.2f} µs over an open gate; best of 5 x 20,000)"
            )
    observed = results.get("observe", {})
    if observed.get("rows"):
        parts += ["", observe_lines(observed)]
    cached = results.get("cache", {})
    if cached.get("rows"):
        parts += ["", cache_lines(cached)]
    batched = results.get("batch", {})
    if batched.get("rows") or batched.get("note"):
        parts += ["", batch_lines(batched)]
    floored = results.get("floor", {})
    if floored.get("summary"):
        parts += [
            "",
            "The bare pass-through on each grpcio release (bench/floor.py), small requests, "
            "paired (medians over the rounds; vs the round's cheapest):",
            floor.render(floored["summary"], floored["pinned"]),
        ]
    if results["extras"]:
        parts += ["", "Extras (small requests):", report.table(results["extras"])]
    if conv:
        parts += [
            "",
            f"Conversion, 1M float32 (median of {conv['reps']}): numpy copy "
            f"{conv['numpy_copy_4mb_ms']:.2f} ms; tfgate Tensor->TensorProto "
            f"{conv['tfgate_to_proto_ms']:.2f} ms from the request bytes to the wire bytes it "
            f"sends ({conv['tfgate_to_proto_from_message_ms']:.2f} ms reading the parsed "
            f"message, {conv['tfgate_to_proto_message_ms']:.2f} ms into a message), "
            "TensorProto->Tensor bytes "
            f"{conv['tfgate_from_proto_ms']:.2f} ms (from float_val: "
            f"{conv['tfgate_from_proto_float_val_ms']:.2f} ms); "
            + (
                f"tf.make_tensor_proto {conv['tf_make_tensor_proto_ms']:.2f} ms "
                f"({conv['tf_make_tensor_proto_serialized_ms']:.2f} ms serialized), "
                f"tf.make_ndarray {conv['tf_make_ndarray_ms']:.2f} ms (TensorFlow "
                f"{conv['tensorflow']})"
                if "tf_make_tensor_proto_ms" in conv
                else conv.get("note", "")
            ),
        ]
        if "rest_to_backend_ms" in conv:
            parts.append(conversion.summary(conv))
    if start:
        parts += [
            f"Start-up (median of {len(start['start_to_serving_all_s'])}): tfgate "
            f"{start['start_to_serving_s']:.3f} s to SERVING, "
            f"idle RSS {start['idle_rss_mb']:.1f} MB "
            f"({start.get('idle_rss_anon_mb', float('nan')):.1f} MB of it private); "
            + (
                "importing the official tensorflow_serving.apis stubs: "
                f"{start['official_import_s']:.2f} s ({start['official_process_s']:.2f} s for the "
                f"process), RSS {start['official_rss_mb']:.0f} MB"
                if "official_rss_mb" in start
                else start.get("note", "")
            ),
        ]
    parts += ["", report.target_lines(results["targets"])]  # fmt: skip
    return "\n".join(parts)


def observe_lines(observed: dict[str, Any]) -> str:
    """The metrics and tracing table, and whether the traced path's spans reached its sink."""
    lines = [
        "Metrics and tracing, small requests, paired (gateway CPU per call; metrics: tfgate "
        "over tfgate-nometrics; tracing: tfgate-traced over tfgate):",
        report.observe_table(observed["summary"]) if observed["summary"] else "(no good round)",
    ]
    cost = observed.get("in_process")
    if cost:
        lines.append(
            f"In-process, one good Predict's metrics: {cost['exported_us']:.2f} µs exported, "
            f"{cost['off_us']:.2f} µs with metrics = false ({cost['added_us']:+.2f} µs; best of "
            "5 x 20,000)"
        )
    if observed.get("tracing", "measured") != "measured":
        lines.append(f"Tracing: {observed['tracing']}")
    else:
        sink = observed.get("sink") or {}
        spans = sink.get("spans", 0)
        lines.append(
            f"Tracing: spans exported: {'yes' if spans else 'no'} ({spans} spans in "
            f"{sink.get('requests', 0)} exports, {sink.get('bytes', 0)} bytes)"
        )
    return "\n".join(lines)


def cache_lines(cached: dict[str, Any]) -> str:
    """The response cache's table (a hit against a miss), its counts check and the repeats."""
    lines = [
        "Response cache, small requests, paired: tfgate-cached (the same call: hits) against "
        "tfgate-cached-bypass (cache-control: no-cache: misses), gateway CPU per call:",
        report.pair_table(cached["summary"]) if cached["summary"] else "(no good round)",
    ]
    lines += [f"Cache counts: {problem}" for problem in cached.get("checks", [])]
    repeated = cached.get("repeated")
    if repeated:
        lines.append(
            f"50% repeated requests: {repeated['calls']} calls ({repeated['distinct']} distinct "
            f"inputs, {repeated['in_flight']} in flight, {repeated['seconds']:.1f} s): "
            f"{repeated['backend_calls']:.0f} backend calls, cache {repeated['hits']:.0f} hits, "
            f"{repeated['misses']:.0f} misses"
        )
    return "\n".join(lines)


def batch_lines(batched: dict[str, Any]) -> str:
    """Micro-batching's table, and the batch sizes tfgate counted."""
    lines = [
        f"Micro-batching ({batch.MAX_BATCH_SIZE} rows, {batch.MAX_DELAY_MS} ms window), paired "
        f"(gateway CPU per call; {batch.REAL_MODEL}: in front of the local model server):",
        report.pair_table(batched["summary"]) if batched["summary"] else "(no good round)",
    ]
    for where, counts in batched.get("batches", {}).items():
        if counts is None:
            lines.append(f"Batches, {where}: not available (this tfgate exports no batch counts)")
        elif counts["mean_batch"] is None:
            lines.append(f"Batches, {where}: none sent")
        else:
            lines.append(
                f"Batches, {where}: {counts['batched_calls']:.0f} calls in {counts['batches']:.0f}"
                f" backend Predicts, mean {counts['mean_batch']:.2f} calls each"
            )
    if batched.get("note"):
        lines.append(f"Note: {batched['note']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
