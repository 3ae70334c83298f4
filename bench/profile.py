"""Where tfgate's time goes under load: py-spy samples ``tfgate serve`` while h2load drives it.

Run: ``python -m bench.profile [--path tfgate|tfgate-tfs|tfgate-http|tfgate-http-v1]
[--seconds 10] [--size small] [--conc 16] [--native]`` (the HTTP paths over HTTP/1.1, one
connection per call in flight, as bench.run drives them). Writes a
flame graph (bench/results/profile-<size>-c<conc>.svg) and prints the cost per request of each
tfgate function: its share of the samples times the CPU time per request measured meanwhile.
Needs py-spy (requirements/dev.txt).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import h2load, load, paths, procs, run

TFGATE_SOURCES = Path(__file__).resolve().parent.parent / "server" / "tfgate"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*):\d+\)$")
# Frames below every handler: samples whose innermost tfgate frame is one of these are grpc's
# and asyncio's own work (I/O, scheduling, the server and client call objects).
# (py-spy names a file by its path from the package, e.g. fronts/http/app.py: the HTTP front's
# error middleware, below every HTTP handler.)
_OUTSIDE = {"__main__.py", "cli.py", "app.py", "fronts/http/app.py"}


def _tfgate_modules() -> set[str]:
    return {p.relative_to(TFGATE_SOURCES).as_posix() for p in TFGATE_SOURCES.rglob("*.py")}


def costs(collapsed: str, cpu_ms_per_request: float, count: int) -> str:
    """Cost centres from py-spy's collapsed stacks, in µs per request.

    Each sample goes to the innermost tfgate function on its stack (with whatever it called:
    numpy, protobuf, grpc's client call); samples with none go to "grpc + asyncio".
    """
    modules = _tfgate_modules()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        weight = int(n)
        samples += weight
        owner = "grpc + asyncio (outside tfgate's code)"
        seen = set()
        for frame in stack.split(";"):
            found = _FRAME.match(frame)
            if found is None:
                continue
            file = found["file"]
            if file in modules and file not in _OUTSIDE:
                owner = f"{found['func']} ({file.removesuffix('.py')})"
                if owner not in seen:
                    inclusive[owner] += weight
                    seen.add(owner)
        own[owner] += weight
    if not samples:
        return "no samples"
    per = cpu_ms_per_request * 1000 / samples  # µs of CPU per sample, per request

    def lines(counter: collections.Counter[str]) -> list[str]:
        return [
            f"  {n * per:8.1f} µs  {100 * n / samples:5.1f}%  {name}"
            for name, n in counter.most_common(count)
        ]

    return "\n".join(
        [
            f"{samples} samples; {cpu_ms_per_request:.3f} ms of CPU per request",
            "",
            "per request, by innermost tfgate function (with what it calls):",
            *lines(own),
            "",
            "per request, including tfgate callees:",
            *lines(inclusive),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--path",
        choices=("tfgate", "tfgate-tfs", "tfgate-http", "tfgate-http-v1"),
        default="tfgate",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="small")
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--native", action="store_true", help="also C/Cython frames (grpc)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    svg = run.RESULTS / f"profile-{args.path}-{args.size}-c{args.conc}.svg"
    with tempfile.TemporaryDirectory(prefix="tfgate-profile-") as tmp:
        workdir = Path(tmp)
        backend = paths.start_backend(workdir, run.BACK_CPU)
        gateway = None
        try:
            gateway = paths.start(args.path, backend, workdir, run.FRONT_CPU)
            assert gateway is not None
            report = _profile(spy, gateway, args, workdir, svg)
        finally:
            if gateway is not None:
                gateway.stop()
            backend.stop()
    print(report)
    if not args.native:
        print(f"\nflame graph: {svg}")
    return 0


def _profile(
    spy: str, gateway: procs.Proc, args: argparse.Namespace, workdir: Path, svg: Path
) -> str:
    route = paths.PATHS[args.path]
    target = f"127.0.0.1:{gateway.port}"
    load.verify(target, route, args.size)
    body = workdir / "body.bin"
    request = load.request_for(route, args.size)
    body.write_bytes(request if route.http else h2load.grpc_frame(request))
    # The load starts before the sampling and ends after it.
    seconds = args.seconds + 3
    command = h2load.command(
        f"http://{target}{route.method}", body, args.conc, seconds, http1=route.http
    )
    printout: list[str] = []
    driver = threading.Thread(
        target=lambda: printout.append(h2load.run(command, seconds, run.BACK_CPU))
    )
    cpu_before = gateway.cpu()
    driver.start()
    threading.Event().wait(1.5)
    common = [spy, "record", "--pid", str(gateway.pids[0]), "--duration", str(int(args.seconds))]
    raw = workdir / "raw.txt"
    if args.native:
        # Native frames need tfgate stopped at each sample: one sampler only.
        samplers = [subprocess.Popen([*common, "--native", "-f", "raw", "-o", str(raw)])]
    else:
        # Two non-blocking samplers side by side: the flame graph, and stacks to count.
        common.append("--nonblocking")
        samplers = [
            subprocess.Popen([*common, "-f", "flamegraph", "-o", str(svg)]),
            subprocess.Popen([*common, "-f", "raw", "-o", str(raw)]),
        ]
    for sampler in samplers:
        sampler.wait(timeout=args.seconds + 60)
    driver.join()
    cpu = gateway.cpu() - cpu_before
    summary = h2load.parse_output(printout[0])
    return costs(raw.read_text(), cpu * 1000 / summary.done, args.top)


if __name__ == "__main__":
    sys.exit(main())
