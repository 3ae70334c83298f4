"""The floor study: the bare pass-through (bench/passthrough.py, on uvloop) on several grpcio
releases, each in a throw-away venv of its own, paired in one run.

tfgate's own CPU per call sits on top of grpc's, and grpc's changes from release to release more
than most of what tfgate could shave; this measures it, so that the pin in
requirements/runtime.txt is chosen by figures rather than by date. A variant may also set grpc
experiment flags (``GRPC_EXPERIMENTS``) on a release, to see whether a flag is what makes a
difference.

Each venv holds grpcio and uvloop only, under ``$XDG_CACHE_HOME/tfgate-bench`` (else
``~/.cache/tfgate-bench``), and is made once; the pass-through runs from this checkout with that
venv's Python. Run alone: ``python -m bench.floor [--rounds N] [--releases 1.66.2,1.85.3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load, paths, procs

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfgate-bench"
UVLOOP = "uvloop==0.23.0"  # the one tfgate's venv has, so that only grpcio differs
# 1.66 is a reference only: grpcio-health-checking and -reflection up to 1.71 need protobuf < 6,
# and TensorFlow 2.21 (the local model server, the wire tests) needs protobuf >= 6.31.1. Cost is
# not the only test of a release: up to 1.81 an HTTP/2 rapid reset grows tfgate's memory without
# bound under its own server options (tests/test_rapid_reset.py), from 1.82 it does not.
RELEASES = ("1.66.2", "1.78.2", "1.82.3", "1.83.2", "1.84.2", "1.85.3")
# grpc's EventEngine client, listener and resolver, turned off (the polling engine instead).
# A release that no longer has one of these experiments logs "Unknown experiment" for it at
# import (1.84 has no event_engine_dns), so each release gets only the names it knows.
NO_EVENT_ENGINE = ("event_engine_client", "event_engine_listener", "event_engine_dns")
# The releases tfgate can run (see above), also measured with the EventEngine off.
FLAGS_ON = ("1.82.3", "1.83.2", "1.84.2", "1.85.3")
# make bench's part "floor" (bench/run.py): fewer variants than the study, to keep it short.
PART_RELEASES = ("1.66.2", "1.78.2", "1.82.3", "1.83.2", "1.85.3")
PART_FLAGS_ON = ("1.82.3", "1.83.2", "1.85.3")
PART_SECONDS = 3.0
OLDEST_RUNNABLE = (1, 82)
CONCURRENCY = (16, 64)
FRONT_CPU, BACK_CPU = "1", "0"


@dataclass(frozen=True)
class Variant:
    """One pass-through under test: a grpcio release, and what else its process gets."""

    release: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        flags = self.env.get("GRPC_EXPERIMENTS")
        return f"grpcio {self.release}" + (" no-event-engine" if flags else "")


def variants(releases: Sequence[str], flags_on: Sequence[str]) -> list[Variant]:
    """Each release as it comes, then each of ``flags_on`` with the EventEngine off."""
    found = [Variant(release) for release in releases]
    found += [Variant(r, {"GRPC_EXPERIMENTS": no_event_engine(r)}) for r in flags_on]
    return found


def no_event_engine(release: str) -> str:
    """The ``GRPC_EXPERIMENTS`` value that turns off those of NO_EVENT_ENGINE grpcio
    ``release`` knows: grpc reads the variable at import and names each one it does not know."""
    probe = subprocess.run(
        [str(venv_for(release)), "-c", "import grpc"],
        env={**procs.clean_env(), "GRPC_EXPERIMENTS": ",".join(NO_EVENT_ENGINE),
             "GRPC_VERBOSITY": "ERROR"},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    known = [n for n in NO_EVENT_ENGINE if f"Unknown experiment: {n}" not in probe.stderr]
    return ",".join(f"-{name}" for name in known)


def venv_for(release: str) -> Path:
    """A venv with grpcio ``release`` and uvloop, made on first use; its Python."""
    home = CACHE / f"grpcio-{release}"
    python = home / "bin" / "python"
    stamp = home / "made"
    if stamp.exists():
        return python
    print(f"  making a venv with grpcio {release} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"grpcio=={release}", UVLOOP],
        check=True,
    )  # fmt: skip
    found = subprocess.run(
        [str(python), "-c", "import grpc; print(grpc.__version__)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if found != release:
        raise RuntimeError(f"the venv for grpcio {release} has grpcio {found}")
    stamp.write_text(release + "\n")
    return python


def start(variant: Variant, backend: str, workdir: Path, cpu: str | None) -> procs.Proc:
    python = venv_for(variant.release)
    args = [str(python), "-m", "bench.passthrough", "--backend", backend, "--uvloop"]
    env = {k: v for k, v in procs.clean_env().items() if k != "GRPC_EXPERIMENTS"}
    env.update(PYTHONPATH=str(ROOT), **variant.env)
    name = variant.name.replace(" ", "-")
    return procs.start_server(name, args, workdir, cpu, env=env)


def measure(
    backend: procs.Proc,
    found: Sequence[Variant],
    workdir: Path,
    *,
    rounds: int,
    seconds: float,
    pin: bool,
    concurrencies: Sequence[int] = CONCURRENCY,
) -> list[dict[str, Any]]:
    """Every variant at each concurrency, small requests, in alternating order for ``rounds``
    rounds (as bench.run.measure_paired does): one row per run, tagged with its variant."""
    settings = load.Settings(seconds, 0.5, BACK_CPU if pin else None)
    route = paths.PATHS["passthrough"]
    started: list[procs.Proc] = []
    rows: list[dict[str, Any]] = []
    try:
        stages = {}
        for variant in found:
            proc = start(variant, f"127.0.0.1:{backend.port}", workdir, FRONT_CPU if pin else None)
            started.append(proc)
            stages[variant.name] = load.Stage(
                route, f"127.0.0.1:{proc.port}", proc, backend, settings, workdir
            )
        names = [variant.name for variant in found]
        releases = {variant.name: variant.release for variant in found}
        for round_ in range(rounds):
            for conc in concurrencies:
                for name in names if round_ % 2 == 0 else names[::-1]:
                    try:
                        row = load.drive(stages[name], "small", conc)
                    except Exception as exc:  # one broken release must not hide the others
                        row = {"size": "small", "conc": conc, "error": str(exc)[:300]}
                    row.update(
                        path="passthrough", variant=name, release=releases[name], round=round_ + 1
                    )
                    _print(row)
                    rows.append(row)
    finally:
        for proc in started:
            proc.stop()
    return rows


def part(
    backend: procs.Proc, workdir: Path, *, rounds: int, seconds: float, pin: bool
) -> dict[str, Any]:
    """The part "floor" of ``make bench``: PART_RELEASES as they come, PART_FLAGS_ON with the
    EventEngine off, and the installed grpcio as tfgate runs it (with tfgate.grpc_flags), paired;
    the rows, summary's table and the pinned variant's name."""
    pinned = pinned_variant()
    found = {v.name: v for v in variants(PART_RELEASES, PART_FLAGS_ON)}
    found[pinned.name] = pinned  # tfgate's own flags, not the probed ones, for the pin
    rows = measure(backend, list(found.values()), workdir, rounds=rounds, seconds=seconds, pin=pin)
    return {"rows": rows, "summary": summary(rows), "pinned": pinned.name}


def pinned_variant() -> Variant:
    """The installed grpcio (tfgate's pin) with the experiments tfgate sets for itself."""
    from tfgate import grpc_flags

    env: dict[str, str] = {}
    grpc_flags.set_default(env)
    return Variant(installed_grpcio(), {k: v for k, v in env.items() if v})


def vs_cheapest(
    rows: Sequence[dict[str, Any]], variant: str, conc: int, among: Sequence[str]
) -> float | None:
    """The median over rounds of ``variant``'s CPU per call over the cheapest of ``among`` in
    the same round, at ``conc``; None without a round that has both."""
    cpus: dict[int, dict[str, float]] = {}
    for r in rows:
        if "error" not in r and r.get("cpu_ms") and r["conc"] == conc:
            cpus.setdefault(r["round"], {})[r["variant"]] = r["cpu_ms"]
    ratios = [
        got[variant] / min(got[name] for name in among if name in got)
        for got in cpus.values()
        if variant in got and any(name in got for name in among)
    ]
    return statistics.median(ratios) if ratios else None


def runnable(release: str) -> bool:
    """Whether tfgate can run on grpcio ``release`` (see RELEASES)."""
    major, minor = (int(part) for part in release.split(".")[:2])
    return (major, minor) >= OLDEST_RUNNABLE


def _print(row: dict[str, Any]) -> None:
    label = f"{row['variant']:<30} c={row['conc']:<3} round {row['round']}"
    if "error" in row:
        print(f"  {label} ERROR {row['error']}", flush=True)
    else:
        print(f"  {label} {row['rps']:8.0f} req/s  cpu {row['cpu_ms']:.3f} ms/req", flush=True)


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Per variant and concurrency: the median CPU per call and calls/s over the rounds, and
    the median over rounds of the ratio to the round's cheapest variant."""
    good = [r for r in rows if "error" not in r and r.get("cpu_ms")]
    out: dict[str, dict[int, dict[str, float]]] = {}
    for conc in sorted({r["conc"] for r in good}):
        at = [r for r in good if r["conc"] == conc]
        by_round: dict[int, dict[str, float]] = {}
        for r in at:
            by_round.setdefault(r["round"], {})[r["variant"]] = r["cpu_ms"]
        for variant in dict.fromkeys(r["variant"] for r in at):
            mine = [r for r in at if r["variant"] == variant]
            ratios = [
                cpus[variant] / min(cpus.values()) for cpus in by_round.values() if variant in cpus
            ]
            out.setdefault(variant, {})[conc] = {
                "cpu_ms": statistics.median(r["cpu_ms"] for r in mine),
                "rps": statistics.median(r["rps"] for r in mine),
                "vs_cheapest": statistics.median(ratios),
            }
    return out


def render(table: dict[str, dict[int, dict[str, float]]], pinned: str) -> str:
    """A markdown table of summary's ``table``, the variant named ``pinned`` marked."""
    concs = sorted({c for per in table.values() for c in per})
    head = "| pass-through on | " + " | ".join(f"c={c} CPU/req, vs cheapest" for c in concs)
    lines = [head + " |", "| --- |" + " --- |" * len(concs)]
    for variant, per in table.items():
        mark = " (pinned)" if variant == pinned else ""
        cells = [
            f"{per[c]['cpu_ms']:.3f} ms, {per[c]['vs_cheapest']:.2f}x" if c in per else "-"
            for c in concs
        ]
        lines.append(f"| {variant}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _listed(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def installed_grpcio() -> str:
    import grpc

    return str(grpc.__version__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--releases", default=",".join(RELEASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument(
        "--flags-on",
        default=",".join(FLAGS_ON),
        help="also these releases with grpc's EventEngine off (empty: none)",
    )
    args = parser.parse_args(argv)
    found = variants(_listed(args.releases), _listed(args.flags_on))
    with tempfile.TemporaryDirectory(prefix="tfgate-floor-") as tmp:
        workdir = Path(tmp)
        backend = paths.start_backend(workdir, BACK_CPU if args.pin else None)
        try:
            rows = measure(
                backend, found, workdir, rounds=args.rounds, seconds=args.seconds, pin=args.pin
            )
        finally:
            backend.stop()
    print(render(summary(rows), pinned_variant().name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
