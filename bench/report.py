"""The bench's results as one table, the ratios, the targets with PASS/MISS, and JSON files.

Pure apart from ``save``: everything is computed from the list of rows run.py measured.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]

COLUMNS = (
    ("path", "path", "{}"),
    ("size", "size", "{}"),
    ("conc", "conc", "{}"),
    ("rps", "RPS", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("cpu_ms", "CPU ms/req (gateway)", "{:.3f}"),
    ("backend_cpu_ms", "CPU ms/req (backend)", "{:.3f}"),
    ("others_cpus", "other work (CPUs)", "{:.2f}"),
)


def _cell(row: Row, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        if key != "rps":
            return ""
        return str(row.get("note") or ("error (see JSON)" if "error" in row else ""))
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return fmt.format(value)


def table(rows: Iterable[Row]) -> str:
    lines = [
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, k, f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def find(rows: Iterable[Row], path: str, size: str, conc: int) -> Row | None:
    for row in rows:
        if row["path"] == path and row["size"] == size and row["conc"] == conc:
            return row if row.get("rps") is not None else None
    return None


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ratios(rows: list[Row], concurrencies: Iterable[int]) -> list[Row]:
    """tfgate against the bare pass-through, nginx and direct, for small requests."""
    out = []
    for conc in concurrencies:
        tfgate = find(rows, "tfgate", "small", conc)
        bare = find(rows, "passthrough", "small", conc)
        proxy = find(rows, "nginx", "small", conc)
        direct = find(rows, "direct", "small", conc)
        info = find(rows, "tfgate-info", "small", conc)
        forwarded = find(rows, "tfgate-tfs", "small", conc)

        def get(row: Row | None, key: str) -> float | None:
            return None if row is None else row.get(key)

        out.append(
            {
                "conc": conc,
                "rps_vs_passthrough": _div(get(tfgate, "rps"), get(bare, "rps")),
                "rps_vs_nginx": _div(get(tfgate, "rps"), get(proxy, "rps")),
                "cpu_vs_passthrough": _div(get(tfgate, "cpu_ms"), get(bare, "cpu_ms")),
                "added_p50_ms": (
                    None
                    if tfgate is None or direct is None
                    else tfgate["p50_ms"] - direct["p50_ms"]
                ),
                "tfs_rps_vs_passthrough": _div(get(forwarded, "rps"), get(bare, "rps")),
                "tfs_cpu_vs_passthrough": _div(get(forwarded, "cpu_ms"), get(bare, "cpu_ms")),
                "info_log_cpu_ms": (
                    None if info is None or tfgate is None else info["cpu_ms"] - tfgate["cpu_ms"]
                ),
            }
        )
    return out


def _round_ratios(
    rows: list[Row], conc: int, ours: str, floor: str
) -> tuple[list[float], list[float], list[float]]:
    """Per round of a paired run at ``conc`` (small requests), in round order: ``ours``'s CPU
    and RPS over ``floor``'s, and its p50 minus the floor's; rounds where either has no figures
    or an error are left out."""
    cpu, rps, p50 = [], [], []
    for round_ in sorted({r["round"] for r in rows if r.get("conc") == conc}):
        pair = [r for r in rows if r.get("conc") == conc and r["round"] == round_]
        mine = find(pair, ours, "small", conc)
        bare = find(pair, floor, "small", conc)
        if mine is None or bare is None or "error" in mine or "error" in bare:
            continue
        cpu.append(mine["cpu_ms"] / bare["cpu_ms"])
        rps.append(mine["rps"] / bare["rps"])
        p50.append(mine["p50_ms"] - bare["p50_ms"])
    return cpu, rps, p50


def paired_ratios(rows: list[Row], concurrencies: Iterable[int]) -> list[Row]:
    """Per concurrency: tfgate's CPU and RPS against the pass-through's within each round of
    bench.run.measure_paired, and their medians over the rounds."""
    out = []
    for conc in concurrencies:
        cpu, rps, p50 = _round_ratios(rows, conc, "tfgate", "passthrough")
        if cpu:
            out.append(
                {
                    "conc": conc,
                    "rounds": len(cpu),
                    "cpu_vs_passthrough": statistics.median(cpu),
                    "rps_vs_passthrough": statistics.median(rps),
                    "p50_over_passthrough_ms": statistics.median(p50),
                    "cpu_ratios": cpu,
                    "rps_ratios": rps,
                }
            )
    return out


HTTP_FLOOR = "http-floor"
HTTP_PATHS = (HTTP_FLOOR, "tfgate-http", "tfgate-http-v1")
_MEDIAN_KEYS = ("rps", "p50_ms", "p99_ms", "cpu_ms", "backend_cpu_ms")


def http_summary(rows: list[Row], concurrencies: Iterable[int]) -> list[Row]:
    """The HTTP paths' paired runs, one row per (path, concurrency): the medians over the
    rounds of each figure, and for tfgate's paths the ratios to the floor within each round
    (as paired_ratios) with their medians. A path with no good round gets no row."""
    out = []
    concurrencies = list(concurrencies)
    for path in HTTP_PATHS:
        for conc in concurrencies:
            runs = [
                r
                for r in rows
                if r["path"] == path and r.get("conc") == conc and "error" not in r
                and r.get("rps") is not None
            ]  # fmt: skip
            if not runs:
                continue
            row: Row = {"path": path, "size": "small", "conc": conc, "rounds": len(runs)}
            for key in _MEDIAN_KEYS:
                values = [r[key] for r in runs if r.get(key) is not None]
                row[key] = statistics.median(values) if values else None
            if path != HTTP_FLOOR:
                cpu, rps, p50 = _round_ratios(rows, conc, path, HTTP_FLOOR)
                row.update(
                    cpu_vs_floor=statistics.median(cpu) if cpu else None,
                    rps_vs_floor=statistics.median(rps) if rps else None,
                    p50_over_floor_ms=statistics.median(p50) if p50 else None,
                    cpu_ratios=cpu,
                    rps_ratios=rps,
                )
            out.append(row)
    return out


_HTTP_FIGURES = (
    ("rps", "{:.0f}"),
    ("p50_ms", "{:.3f}"),
    ("p99_ms", "{:.3f}"),
    ("cpu_ms", "{:.3f}"),
)


def http_table(rows: list[Row]) -> str:
    lines = [
        "| path | conc | rounds | RPS | p50 ms | p99 ms | CPU ms/req (gateway) "
        "| CPU / floor (median; each round) | RPS / floor (median; each round) "
        "| p50 - floor p50 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def ratio(row: Row, key: str, each: str) -> str:
        if row.get(key) is None:
            return ""
        return f"{row[key]:.2f} ({', '.join(f'{v:.2f}' for v in row[each])})"

    for row in rows:
        cells = [
            row["path"],
            str(row["conc"]),
            str(row["rounds"]),
            *(_cell(row, key, fmt) for key, fmt in _HTTP_FIGURES),
            ratio(row, "cpu_vs_floor", "cpu_ratios"),
            ratio(row, "rps_vs_floor", "rps_ratios"),
            "" if row.get("p50_over_floor_ms") is None else f"{row['p50_over_floor_ms']:+.3f} ms",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(rows: list[Row]) -> str:
    lines = [
        "| conc (small) | rounds | tfgate CPU / pass-through (median; each round) "
        "| tfgate RPS / pass-through (median; each round) | tfgate p50 - pass-through p50 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cpu = ", ".join(f"{v:.2f}" for v in row["cpu_ratios"])
        rps = ", ".join(f"{v:.2f}" for v in row["rps_ratios"])
        lines.append(
            f"| {row['conc']} | {row['rounds']} | {row['cpu_vs_passthrough']:.2f} ({cpu}) "
            f"| {row['rps_vs_passthrough']:.2f} ({rps}) "
            f"| {row['p50_over_passthrough_ms']:+.3f} ms |"
        )
    return "\n".join(lines)


def ratio_table(rows: list[Row]) -> str:
    cols = (
        ("conc", "conc (small)", "{}"),
        ("rps_vs_passthrough", "tfgate RPS / pass-through RPS", "{:.2f}"),
        ("rps_vs_nginx", "tfgate RPS / nginx RPS", "{:.2f}"),
        ("cpu_vs_passthrough", "tfgate CPU / pass-through CPU", "{:.2f}"),
        ("added_p50_ms", "tfgate p50 - direct p50 (ms)", "{:.3f}"),
        ("info_log_cpu_ms", "INFO access log, CPU ms/req", "{:+.3f}"),
        ("tfs_rps_vs_passthrough", "tfgate-tfs RPS / pass-through RPS", "{:.2f}"),
        ("tfs_cpu_vs_passthrough", "tfgate-tfs CPU / pass-through CPU", "{:.2f}"),
    )
    lines = [
        "| " + " | ".join(t for _, t, _ in cols) + " |",
        "|" + "|".join(" --- " for _ in cols) + "|",
    ]
    for row in rows:
        cells = [("n/a" if row[k] is None else f.format(row[k])) for k, _, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The access-control paths (bench/access.py), measured against "tfgate" at AUTH_CONC.
ACCESS_PATHS = ("tfgate-auth", "tfgate-jwt")
AUTH_CONC = 16
AUTH_TARGET_US = 50.0


def added_cost(rows: list[Row], path: str, base: str, conc: int) -> Row | None:
    """``path``'s gateway CPU per call over ``base``'s at ``conc`` (small requests), taken
    within each round of a paired run: in µs and in per cent of ``base``'s, the medians and
    each round's; and the medians of both paths' figures. Rounds where either has no figures
    or an error are left out; None when no round is left."""
    diffs, pcts, rps, p50, mine, theirs = [], [], [], [], [], []
    for round_ in sorted({r["round"] for r in rows if r.get("conc") == conc}):
        pair = [r for r in rows if r.get("conc") == conc and r["round"] == round_]
        on = find(pair, path, "small", conc)
        off = find(pair, base, "small", conc)
        if on is None or off is None or "error" in on or "error" in off:
            continue
        diffs.append((on["cpu_ms"] - off["cpu_ms"]) * 1000)
        pcts.append((on["cpu_ms"] / off["cpu_ms"] - 1) * 100)
        rps.append(on["rps"] / off["rps"])
        p50.append(on["p50_ms"] - off["p50_ms"])
        mine.append(on["cpu_ms"])
        theirs.append(off["cpu_ms"])
    if not diffs:
        return None
    return {
        "path": path,
        "base": base,
        "conc": conc,
        "rounds": len(diffs),
        "cpu_added_us": statistics.median(diffs),
        "cpu_added_all_us": diffs,
        "cpu_added_pct": statistics.median(pcts),
        "cpu_added_all_pct": pcts,
        "cpu_ms": statistics.median(mine),
        "base_cpu_ms": statistics.median(theirs),
        "rps_vs_base": statistics.median(rps),
        "p50_over_base_ms": statistics.median(p50),
    }


def access_summary(rows: list[Row]) -> list[Row]:
    """Per access-control path and concurrency: its gateway CPU per call minus tfgate's within
    each round (µs), the median and range over the rounds, and the medians of both paths'
    figures. Rounds where either has an error are left out; a path with none gets no row."""
    out = []
    for path in ACCESS_PATHS:
        for conc in sorted({r["conc"] for r in rows if r["path"] == path}):
            cost = added_cost(rows, path, "tfgate", conc)
            if cost is None:
                continue
            out.append(
                {
                    **{k: cost[k] for k in ("path", "conc", "rounds", "cpu_ms")},
                    "cpu_added_us": cost["cpu_added_us"],
                    "cpu_added_all_us": cost["cpu_added_all_us"],
                    "tfgate_cpu_ms": cost["base_cpu_ms"],
                    "rps_vs_tfgate": cost["rps_vs_base"],
                    "p50_over_tfgate_ms": cost["p50_over_base_ms"],
                }
            )
    return out


def access_table(rows: list[Row]) -> str:
    lines = [
        "| path | conc | rounds | CPU ms/req (tfgate; with access control) "
        "| added CPU µs/req (median; each round) | RPS / tfgate | p50 - tfgate p50 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        each = ", ".join(f"{v:+.0f}" for v in row["cpu_added_all_us"])
        lines.append(
            f"| {row['path']} | {row['conc']} | {row['rounds']} "
            f"| {row['tfgate_cpu_ms']:.3f}; {row['cpu_ms']:.3f} "
            f"| {row['cpu_added_us']:+.0f} ({each}) | {row['rps_vs_tfgate']:.2f} "
            f"| {row['p50_over_tfgate_ms']:+.3f} ms |"
        )
    return "\n".join(lines)


def _access_targets(rows: list[Row]) -> list[Row]:
    """The access-control target for the API key path and for the cached JWT one."""
    out = []
    for path, what in (("tfgate-auth", "API key"), ("tfgate-jwt", "cached JWT")):
        row = next((r for r in rows if r["path"] == path and r["conc"] == AUTH_CONC), None)
        added = None if row is None else row["cpu_added_us"]
        shown = "n/a"
        if row is not None:
            low, high = min(row["cpu_added_all_us"]), max(row["cpu_added_all_us"])
            shown = f"{added:+.0f} µs (rounds {low:+.0f} to {high:+.0f}, {row['rounds']} paired)"
        out.append(
            _target(
                f"auth + authz + limits <= {AUTH_TARGET_US:.0f} us CPU/call ({what}, small, "
                f"c={AUTH_CONC})",
                added,
                None if added is None else added <= AUTH_TARGET_US,
                shown,
            )
        )
    return out


# The cost of seeing tfgate (bench/observe.py): what is measured, the path with it, the path
# without it. Metrics have a target at OBSERVE_CONC; tracing's cost is reported.
OBSERVE_PATHS = ("tfgate-nometrics", "tfgate-traced")
OBSERVE_PAIRS = (("metrics", "tfgate", "tfgate-nometrics"), ("tracing", "tfgate-traced", "tfgate"))
OBSERVE_CONC = 16
METRICS_TARGET_PCT = 3.0


def observe_summary(rows: list[Row]) -> list[Row]:
    """The cost of metrics (tfgate over tfgate-nometrics) and of tracing (tfgate-traced over
    tfgate) per concurrency, as ``added_cost`` rows with ``what`` naming which; a pair with no
    good round gets no row."""
    out = []
    for what, path, base in OBSERVE_PAIRS:
        for conc in sorted({r["conc"] for r in rows if r["path"] == path}, reverse=True):
            cost = added_cost(rows, path, base, conc)
            if cost is not None:
                out.append({"what": what, **cost})
    return out


def observe_table(rows: list[Row]) -> str:
    lines = [
        "| cost of | conc | rounds | CPU ms/req (without; with) "
        "| added CPU µs/req (median; each round) | added CPU % (median; each round) "
        "| RPS with / without | p50 with - without |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        us = ", ".join(f"{v:+.0f}" for v in row["cpu_added_all_us"])
        pct = ", ".join(f"{v:+.1f}" for v in row["cpu_added_all_pct"])
        lines.append(
            f"| {row['what']} | {row['conc']} | {row['rounds']} "
            f"| {row['base_cpu_ms']:.3f}; {row['cpu_ms']:.3f} "
            f"| {row['cpu_added_us']:+.0f} ({us}) | {row['cpu_added_pct']:+.1f}% ({pct}) "
            f"| {row['rps_vs_base']:.2f} | {row['p50_over_base_ms']:+.3f} ms |"
        )
    return "\n".join(lines)


def _observe_targets(rows: list[Row]) -> list[Row]:
    """The metrics target: at most METRICS_TARGET_PCT per cent of CPU per call, at OBSERVE_CONC."""
    row = next((r for r in rows if r["what"] == "metrics" and r["conc"] == OBSERVE_CONC), None)
    added = None if row is None else row["cpu_added_pct"]
    shown = "n/a"
    if row is not None:
        low, high = min(row["cpu_added_all_pct"]), max(row["cpu_added_all_pct"])
        shown = (
            f"{added:+.1f}% ({row['cpu_added_us']:+.0f} µs; rounds {low:+.1f}% to {high:+.1f}%, "
            f"{row['rounds']} paired)"
        )
    return [
        _target(
            f"metrics <= {METRICS_TARGET_PCT:.0f}% CPU per call (small, c={OBSERVE_CONC})",
            added,
            None if added is None else added <= METRICS_TARGET_PCT,
            shown,
        )
    ]


def metric_total(exposition: str, name: str, **labels: str) -> float | None:
    """The sum of the samples ``name`` (e.g. ``tfgate_cache_hits_total``) in Prometheus text
    ``exposition`` whose labels include ``labels``; None when the family is not declared there
    (a tfgate without that metric), 0.0 when it is but no sample matches."""
    family = re.sub(r"_(total|sum|count|bucket)$", "", name)
    declared = re.search(rf"^# TYPE ({re.escape(name)}|{re.escape(family)}) ", exposition, re.M)
    if declared is None:
        return None
    total = 0.0
    for line in exposition.splitlines():
        found = _SAMPLE.fullmatch(line)
        if found is None or found["name"] != name:
            continue
        have = dict(_LABEL.findall(found["labels"] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found["value"])
    return total


_SAMPLE = re.compile(r"(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)(?: \S+)?")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def cache_counts(exposition: str, model: str) -> dict[str, float]:
    """``model``'s cache hits and misses, and the backend calls (attempts, every replica and
    code) in tfgate's /metrics text; ValueError when it exports no cache metrics."""
    hits = metric_total(exposition, "tfgate_cache_hits_total", model=model)
    misses = metric_total(exposition, "tfgate_cache_misses_total", model=model)
    attempts = metric_total(exposition, "tfgate_backend_attempts_total")
    if hits is None or misses is None or attempts is None:
        raise ValueError("no tfgate_cache_hits_total, _misses_total or backend attempts exported")
    return {"hits": hits, "misses": misses, "backend_calls": attempts}


def batch_counts(exposition: str, model: str) -> dict[str, Any] | None:
    """From the ``tfgate_batch_size`` histogram (calls per backend Predict ``model``'s batcher
    sent, 1 for a call the window found alone) in tfgate's /metrics text: the Predicts sent,
    the calls in them and their mean (None when none was sent); None when it is not exported."""
    sent = metric_total(exposition, "tfgate_batch_size_count", model=model)
    carried = metric_total(exposition, "tfgate_batch_size_sum", model=model)
    if sent is None or carried is None:
        return None
    return {"batches": sent, "batched_calls": carried, "mean_batch": _div(carried, sent)}


# The response cache (bench/cache.py): a hit against a miss (cache-control: no-cache), paired.
CACHE_HIT, CACHE_MISS = "tfgate-cached", "tfgate-cached-bypass"
CACHE_CONC = 16
CACHE_CPU_TARGET = 0.5
REPEATED_TARGET = 0.55


def _medians(rows: list[Row], conc: int, ours: str, base: str) -> Row | None:
    """``ours`` against ``base`` at ``conc`` within each round (as _round_ratios), with the
    medians of both paths' figures; None when no round has both."""
    cpu, rps, p50 = _round_ratios(rows, conc, ours, base)
    if not cpu:
        return None
    mine = [r for r in rows if r["path"] == ours and r.get("conc") == conc and "error" not in r]
    theirs = [r for r in rows if r["path"] == base and r.get("conc") == conc and "error" not in r]

    def median(runs: list[Row], key: str) -> float:
        return statistics.median(r[key] for r in runs if r.get(key) is not None)

    return {
        "path": ours,
        "base": base,
        "conc": conc,
        "rounds": len(cpu),
        "cpu_ratio": statistics.median(cpu),
        "cpu_ratios": cpu,
        "rps_ratio": statistics.median(rps),
        "rps_ratios": rps,
        "p50_over_base_ms": statistics.median(p50),
        "p50_diffs_ms": p50,
        "cpu_ms": median(mine, "cpu_ms"),
        "base_cpu_ms": median(theirs, "cpu_ms"),
        "rps": median(mine, "rps"),
        "base_rps": median(theirs, "rps"),
        "p50_ms": median(mine, "p50_ms"),
        "base_p50_ms": median(theirs, "p50_ms"),
    }


def pair_summary(rows: list[Row], pairs: Iterable[tuple[str, str]]) -> list[Row]:
    """For each (path, base) of ``pairs`` and each concurrency both were run at (highest
    first): ``_medians``; a pair with no good round gets no row."""
    out = []
    for ours, base in pairs:
        concs = {r["conc"] for r in rows if r["path"] == ours} & {
            r["conc"] for r in rows if r["path"] == base
        }
        for conc in sorted(concs, reverse=True):
            row = _medians(rows, conc, ours, base)
            if row is not None:
                out.append(row)
    return out


def pair_table(rows: list[Row]) -> str:
    lines = [
        "| path | against | conc | rounds | CPU ms/req (path; against) "
        "| CPU ratio (median; each round) | RPS (path; against) | RPS ratio (median; each round) "
        "| p50 ms (path; against) | p50 - against p50 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cpu = ", ".join(f"{v:.2f}" for v in row["cpu_ratios"])
        rps = ", ".join(f"{v:.2f}" for v in row["rps_ratios"])
        lines.append(
            f"| {row['path']} | {row['base']} | {row['conc']} | {row['rounds']} "
            f"| {row['cpu_ms']:.3f}; {row['base_cpu_ms']:.3f} | {row['cpu_ratio']:.2f} ({cpu}) "
            f"| {row['rps']:.0f}; {row['base_rps']:.0f} | {row['rps_ratio']:.2f} ({rps}) "
            f"| {row['p50_ms']:.3f}; {row['base_p50_ms']:.3f} "
            f"| {row['p50_over_base_ms']:+.3f} ms |"
        )
    return "\n".join(lines)


def _pair(rows: list[Row], path: str, base: str, conc: int) -> Row | None:
    return next(
        (r for r in rows if r["path"] == path and r["base"] == base and r["conc"] == conc), None
    )


def _each(row: Row, key: str, fmt: str) -> str:
    return ", ".join(fmt.format(v) for v in row[key])


def cache_targets(summary: list[Row], repeated: dict[str, Any] | None) -> list[Row]:
    """A hit's CPU per call against a miss's (each concurrency measured, CACHE_CONC first), and
    the backend calls per call under 50% repeated requests."""
    out = []
    concs = sorted({r["conc"] for r in summary if r["path"] == CACHE_HIT}, reverse=True)
    for conc in concs or [CACHE_CONC]:
        row = _pair(summary, CACHE_HIT, CACHE_MISS, conc)
        ratio = None if row is None else row["cpu_ratio"]
        out.append(
            _target(
                f"cache hit vs miss <= {CACHE_CPU_TARGET}x CPU per call (small, c={conc})",
                ratio,
                None if ratio is None else ratio <= CACHE_CPU_TARGET,
                "n/a"
                if row is None
                else f"{ratio:.2f}x ({row['cpu_ms']:.3f} vs {row['base_cpu_ms']:.3f} ms; rounds "
                f"{_each(row, 'cpu_ratios', '{:.2f}')})",
            )
        )
    share = None
    shown = "n/a"
    if repeated and repeated.get("calls"):
        share = repeated["backend_calls"] / repeated["calls"]
        shown = (
            f"{share:.2f}x ({repeated['backend_calls']:.0f} backend calls for "
            f"{repeated['calls']} calls, {repeated['distinct']} distinct inputs; cache "
            f"{repeated['hits']:.0f} hits, {repeated['misses']:.0f} misses)"
        )
    out.append(
        _target(
            f"50% repeated requests: backend calls <= {REPEATED_TARGET}x of calls",
            share,
            None if share is None else share <= REPEATED_TARGET,
            shown,
        )
    )
    return out


def cache_check(counts: dict[str, float], rows: list[Row]) -> str:
    """What says the paired cache runs (``rows``) were not hits and misses ("" when nothing):
    ``counts`` (cache_counts after them) must show at least one hit per call h2load completed
    on the hit path, and one miss and one backend call per call on the miss path."""
    hits = sum(r.get("requests") or 0 for r in rows if r["path"] == CACHE_HIT)
    misses = sum(r.get("requests") or 0 for r in rows if r["path"] == CACHE_MISS)
    out = []
    if counts["hits"] < hits:
        out.append(f"{counts['hits']:.0f} hits for {hits} calls on {CACHE_HIT}")
    if counts["misses"] < misses or counts["backend_calls"] < misses:
        out.append(
            f"{counts['misses']:.0f} misses and {counts['backend_calls']:.0f} backend calls for "
            f"{misses} calls on {CACHE_MISS}"
        )
    return "; ".join(out)


# Micro-batching (bench/batch.py): tfgate-batched against the pass-through and tfgate, paired.
BATCHED = "tfgate-batched"
BATCH_PAIRS = ((BATCHED, "passthrough"), (BATCHED, "tfgate"))
REAL_PAIRS = (("tfgate-iris-batched", "tfgate-iris"),)
BATCH_CONC = 64
BATCH_RPS_TARGET = 1.5
BATCH_CPU_TARGET = 0.65
BATCH_P50_SLACK_MS = 0.2


def batch_targets(summary: list[Row], max_delay_ms: float) -> list[Row]:
    """tfgate-batched's calls/s against the pass-through's and its CPU per call against
    tfgate's at BATCH_CONC, and its p50 over tfgate's at c=1."""
    out = []
    checks = (
        (
            f"tfgate with batching ({max_delay_ms:g} ms) vs the bare pass-through, "
            f"c={BATCH_CONC}, small >= {BATCH_RPS_TARGET}x calls/s",
            "passthrough", BATCH_CONC, "rps_ratio", lambda v: v >= BATCH_RPS_TARGET,
        ),
        (
            f"tfgate with batching vs without, c={BATCH_CONC} <= {BATCH_CPU_TARGET}x CPU per call",
            "tfgate", BATCH_CONC, "cpu_ratio", lambda v: v <= BATCH_CPU_TARGET,
        ),
        (
            f"added p50 at c=1 with batching on <= max_delay + {BATCH_P50_SLACK_MS} ms "
            f"({max_delay_ms + BATCH_P50_SLACK_MS:g} ms)",
            "tfgate", 1, "p50_over_base_ms",
            lambda v: v <= max_delay_ms + BATCH_P50_SLACK_MS,
        ),
    )  # fmt: skip
    for name, base, conc, key, ok in checks:
        row = _pair(summary, BATCHED, base, conc)
        value = None if row is None else row[key]
        shown = "n/a"
        if row is not None and key == "p50_over_base_ms":
            shown = (
                f"{value:+.3f} ms ({row['p50_ms']:.3f} vs {row['base_p50_ms']:.3f} ms; rounds "
                f"{_each(row, 'p50_diffs_ms', '{:+.3f}')})"
            )
        elif row is not None:
            each = "cpu_ratios" if key == "cpu_ratio" else "rps_ratios"
            shown = f"{value:.2f}x (rounds {_each(row, each, '{:.2f}')})"
        out.append(_target(name, value, None if value is None else ok(value), shown))
    return out


FLOOR_TARGET = 1.1  # the pinned grpcio's pass-through CPU per call over the cheapest release's


def floor_targets(floor: dict[str, Any]) -> list[Row]:
    """The floor study's targets (bench/floor.py, part "floor"), at each concurrency: the
    pass-through on the pinned grpcio (with tfgate's flags) against the cheapest variant
    measured, and against the cheapest tfgate can run (grpcio >= 1.82)."""
    from bench import floor as study  # it imports bench.paths, which imports this module

    rows, pinned = floor.get("rows", []), floor.get("pinned")
    good = [r for r in rows if "error" not in r]
    everyone = list(dict.fromkeys(r["variant"] for r in good))
    runnable = list(dict.fromkeys(r["variant"] for r in good if study.runnable(r["release"])))
    out = []
    for among, which in ((everyone, "the cheapest release measured"),
                         (runnable, "the cheapest release tfgate can run (>= 1.82)")):  # fmt: skip
        for conc in study.CONCURRENCY:
            ratio = None if pinned is None else study.vs_cheapest(rows, pinned, conc, among)
            cheapest = _cheapest(floor.get("summary", {}), conc, among)
            out.append(
                _target(
                    f"pass-through floor on the pinned grpcio (+ tfgate's flags) vs {which} "
                    f"<= {FLOOR_TARGET}x CPU per call (small, c={conc})",
                    ratio,
                    None if ratio is None else ratio <= FLOOR_TARGET,
                    "n/a" if ratio is None else f"{ratio:.2f}x ({pinned} vs {cheapest})",
                )
            )
    return out


def _cheapest(summary: dict[str, Any], conc: int, among: Sequence[str]) -> str:
    """Of ``among``, the variant with the lowest median CPU per call at ``conc``."""
    costs = {name: per[conc]["cpu_ms"] for name, per in summary.items() if conc in per}
    found = [name for name in among if name in costs]
    return min(found, key=costs.__getitem__) if found else "none"


def _target(name: str, value: float | None, ok: bool | None, shown: str) -> Row:
    verdict = "n/a" if value is None or ok is None else ("PASS" if ok else "MISS")
    return {"target": name, "value": value, "verdict": verdict, "shown": shown}


def targets(
    ratio_rows: list[Row],
    conversion: dict[str, Any],
    startup: dict[str, Any],
    paired: list[Row] | None = None,
    http: list[Row] | None = None,
    *,
    access: list[Row] | None = None,
    observe: list[Row] | None = None,
    cache: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
) -> list[Row]:
    """Each target with its value and verdict. The CPU and throughput ratios come from the
    paired runs when there are any (their medians), else from the main table; the HTTP ones
    from ``http`` (http_summary's rows); the response cache's and micro-batching's from their
    parts' results (``summary``: pair_summary's rows; the cache's ``repeated`` load; batching's
    ``max_delay_ms``), when those parts ran."""
    main = {r["conc"]: r for r in ratio_rows}
    by_conc = {r["conc"]: r for r in paired} if paired else main
    out = []
    for conc in sorted(by_conc):
        cpu = by_conc[conc]["cpu_vs_passthrough"]
        out.append(
            _target(
                f"tfgate CPU/req <= 1.2x pass-through (small, c={conc})",
                cpu,
                None if cpu is None else cpu <= 1.2,
                "n/a" if cpu is None else f"{cpu:.2f}x",
            )
        )
    for conc in (16, 64):
        rps = by_conc.get(conc, {}).get("rps_vs_passthrough")
        out.append(
            _target(
                f"tfgate RPS >= 90% of pass-through (small, c={conc})",
                rps,
                None if rps is None else rps >= 0.9,
                "n/a" if rps is None else f"{rps:.0%}",
            )
        )
    added = main.get(1, {}).get("added_p50_ms")
    out.append(
        _target(
            "tfgate added p50 at c=1 <= 0.5 ms",
            added,
            None if added is None else added <= 0.5,
            "n/a" if added is None else f"{added:.3f} ms",
        )
    )
    for row in http or []:
        if row["path"] != "tfgate-http":
            continue
        cpu = row.get("cpu_vs_floor")
        out.append(
            _target(
                f"tfgate HTTP Predict CPU/req <= 1.3x the HTTP floor (small, c={row['conc']}, "
                "paired)",
                cpu,
                None if cpu is None else cpu <= 1.3,
                "n/a" if cpu is None else f"{cpu:.2f}x",
            )
        )
    out += _access_targets(access or [])
    out += _observe_targets(observe or [])
    if cache is not None:
        out += cache_targets(cache["summary"], cache.get("repeated"))
    if batch is not None:
        out += batch_targets(batch["summary"], batch["max_delay_ms"])
    fwd = conversion.get("tfgate_to_proto_ms")
    copy = conversion.get("numpy_copy_4mb_ms")
    tf = conversion.get("tf_make_tensor_proto_ms")
    vs_copy = _div(fwd, copy)
    out.append(
        _target(
            "Tensor -> TensorProto (1M float32) <= 2x a 4 MB numpy copy",
            vs_copy,
            None if vs_copy is None else vs_copy <= 2,
            "n/a" if vs_copy is None else f"{fwd:.2f} ms = {vs_copy:.1f}x copy ({copy:.2f} ms)",
        )
    )
    speedup = _div(tf, fwd)
    out.append(
        _target(
            "Tensor -> TensorProto >= 3x faster than tf.make_tensor_proto",
            speedup,
            None if speedup is None else speedup >= 3,
            "n/a (no TensorFlow)"
            if speedup is None
            else f"{speedup:.2f}x (tf {tf:.2f} ms, tfgate {fwd:.2f} ms)",
        )
    )
    rest = conversion.get("rest_to_backend_ms")
    loads = conversion.get("rest_orjson_loads_ms")
    parse_dict = conversion.get("rest_parse_dict_ms")
    vs_loads = _div(rest, loads)
    out.append(
        _target(
            "REST JSON -> backend request (224x224x3 float32) <= 2x orjson.loads",
            vs_loads,
            None if vs_loads is None else vs_loads <= 2,
            "n/a"
            if vs_loads is None
            else f"{rest:.1f} ms = {vs_loads:.1f}x orjson.loads ({loads:.1f} ms)",
        )
    )
    vs_parse_dict = _div(parse_dict, rest)
    out.append(
        _target(
            "REST JSON -> backend request >= 10x faster than json + json_format.ParseDict",
            vs_parse_dict,
            None if vs_parse_dict is None else vs_parse_dict >= 10,
            "n/a"
            if vs_parse_dict is None
            else f"{vs_parse_dict:.1f}x (ParseDict {parse_dict:.1f} ms, tfgate {rest:.1f} ms)",
        )
    )
    rss = startup.get("idle_rss_mb")
    out.append(
        _target(
            "tfgate idle RSS <= 40 MB",
            rss,
            None if rss is None else rss <= 40,
            "n/a" if rss is None else f"{rss:.1f} MB",
        )
    )
    start = startup.get("start_to_serving_s")
    out.append(
        _target(
            "tfgate start to SERVING <= 0.5 s",
            start,
            None if start is None else start <= 0.5,
            "n/a" if start is None else f"{start:.3f} s",
        )
    )
    return out


def target_lines(rows: list[Row]) -> str:
    return "\n".join(f"{r['verdict']:4}  {r['target']}: {r['shown']}" for r in rows)


def save(results: dict[str, Any], directory: Path) -> Path:
    """Writes ``latest.json`` and a timestamped copy; returns the latter."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    stamped = directory / time.strftime("%Y%m%d-%H%M%S.json")
    stamped.write_text(text)
    (directory / "latest.json").write_text(text)
    return stamped
