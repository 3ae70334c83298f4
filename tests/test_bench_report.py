"""The pure parts of bench/report.py: ratios of paired runs, and which ratios the targets use."""

from __future__ import annotations

from typing import Any

import pytest

from bench import floor as study
from bench import report


def _row(path: str, conc: int, round_: int, rps: float, cpu: float) -> dict[str, Any]:
    row = {"path": path, "size": "small", "conc": conc, "round": round_, "rps": rps, "cpu_ms": cpu}
    return {**row, "p50_ms": 1000.0 / rps}


def test_paired_ratios_take_the_median_of_each_rounds_ratio() -> None:
    rows = [
        _row("passthrough", 16, 1, 1000.0, 1.0),
        _row("tfgate", 16, 1, 900.0, 1.1),
        _row("tfgate", 16, 2, 500.0, 2.0),  # a slow round for both: the ratio stays the same
        _row("passthrough", 16, 2, 400.0, 2.5),
        _row("passthrough", 16, 3, 1000.0, 1.0),
        _row("tfgate", 16, 3, 800.0, 1.3),
    ]
    (out,) = report.paired_ratios(rows, [16])
    assert out["rounds"] == 3
    assert out["cpu_ratios"] == pytest.approx([1.1, 0.8, 1.3])
    assert out["cpu_vs_passthrough"] == pytest.approx(1.1)
    assert out["rps_vs_passthrough"] == pytest.approx(0.9)
    assert out["p50_over_passthrough_ms"] == pytest.approx(1000 / 900 - 1)  # rounds 1 and 3 tie
    assert "| 16 | 3 | 1.10 (1.10, 0.80, 1.30) |" in report.paired_table([out])


def test_paired_ratios_skip_a_round_with_an_error() -> None:
    rows = [
        _row("passthrough", 1, 1, 1000.0, 1.0),
        {"path": "tfgate", "size": "small", "conc": 1, "round": 1, "error": "boom"},
        _row("passthrough", 1, 2, 1000.0, 1.0),
        _row("tfgate", 1, 2, 500.0, 2.0),
    ]
    (out,) = report.paired_ratios(rows, [1])
    assert out["rounds"] == 1
    assert out["cpu_vs_passthrough"] == pytest.approx(2.0)
    assert report.paired_ratios(rows, [64]) == []


def test_targets_prefer_the_paired_ratios() -> None:
    main = [{"conc": 16, "cpu_vs_passthrough": 1.5, "rps_vs_passthrough": 0.7}]
    paired = [{"conc": 16, "cpu_vs_passthrough": 1.1, "rps_vs_passthrough": 0.95}]
    verdicts = {t["target"]: t["verdict"] for t in report.targets(main, {}, {}, paired)}
    assert verdicts["tfgate CPU/req <= 1.2x pass-through (small, c=16)"] == "PASS"
    assert verdicts["tfgate RPS >= 90% of pass-through (small, c=16)"] == "PASS"
    verdicts = {t["target"]: t["verdict"] for t in report.targets(main, {}, {})}
    assert verdicts["tfgate CPU/req <= 1.2x pass-through (small, c=16)"] == "MISS"


def _http(path: str, conc: int, round_: int, rps: float, cpu: float) -> dict[str, Any]:
    return {**_row(path, conc, round_, rps, cpu), "p99_ms": 3000.0 / rps, "backend_cpu_ms": 0.1}


HTTP_ROWS = [
    _http("http-floor", 16, 1, 2000.0, 0.4),
    _http("tfgate-http", 16, 1, 1600.0, 0.5),
    _http("tfgate-http-v1", 16, 1, 1000.0, 0.8),
    _http("tfgate-http-v1", 16, 2, 500.0, 1.6),  # a slow round for all three
    _http("tfgate-http", 16, 2, 800.0, 1.2),
    _http("http-floor", 16, 2, 1000.0, 0.8),
    _http("http-floor", 16, 3, 2000.0, 0.4),
    {"path": "tfgate-http", "size": "small", "conc": 16, "round": 3, "error": "boom"},
    _http("tfgate-http-v1", 16, 3, 1000.0, 0.8),
]


def test_http_summary_takes_medians_and_the_ratios_within_each_round() -> None:
    rows = {r["path"]: r for r in report.http_summary(HTTP_ROWS, [16])}
    assert list(rows) == ["http-floor", "tfgate-http", "tfgate-http-v1"]
    floor, ours, v1 = rows["http-floor"], rows["tfgate-http"], rows["tfgate-http-v1"]
    assert (floor["rounds"], floor["rps"], floor["cpu_ms"]) == (3, 2000.0, 0.4)
    assert floor["p99_ms"] == pytest.approx(1.5)
    assert "cpu_vs_floor" not in floor
    # Round 3 of tfgate-http failed: its figures and ratios come from rounds 1 and 2.
    assert ours["rounds"] == 2
    assert ours["rps"] == pytest.approx(1200.0)
    assert ours["cpu_ratios"] == pytest.approx([1.25, 1.5])
    assert ours["cpu_vs_floor"] == pytest.approx(1.375)
    assert ours["rps_ratios"] == pytest.approx([0.8, 0.8])
    assert ours["p50_over_floor_ms"] == pytest.approx((1000 / 1600 - 0.5 + 1.25 - 1.0) / 2)
    assert v1["cpu_ratios"] == pytest.approx([2.0, 2.0, 2.0])
    assert v1["rps_vs_floor"] == pytest.approx(0.5)
    table = report.http_table(list(rows.values()))
    assert "| tfgate-http | 16 | 2 | 1200 |" in table
    assert "| 1.38 (1.25, 1.50) | 0.80 (0.80, 0.80) |" in table
    assert report.http_summary(HTTP_ROWS, [64]) == []


def test_http_targets_judge_tfgate_http_against_1_3x_the_floor() -> None:
    def verdicts(cpu: float) -> dict[str, str]:
        summary = [
            {"path": "tfgate-http", "conc": 1, "cpu_vs_floor": cpu},
            {"path": "tfgate-http-v1", "conc": 1, "cpu_vs_floor": 9.0},  # no target
        ]
        return {t["target"]: t["verdict"] for t in report.targets([], {}, {}, None, summary)}

    name = "tfgate HTTP Predict CPU/req <= 1.3x the HTTP floor (small, c=1, paired)"
    assert verdicts(1.29)[name] == "PASS"
    assert verdicts(1.31)[name] == "MISS"
    assert sum("HTTP floor" in t for t in verdicts(1.0)) == 1
    assert name not in {t["target"] for t in report.targets([], {}, {})}


def test_rest_conversion_targets() -> None:
    def verdicts(ours: float, parse_dict: float) -> tuple[str, str]:
        conv = {
            "rest_to_backend_ms": ours,
            "rest_orjson_loads_ms": 20.0,
            "rest_parse_dict_ms": parse_dict,
        }
        found = {t["target"]: t["verdict"] for t in report.targets([], conv, {})}
        return (
            found["REST JSON -> backend request (224x224x3 float32) <= 2x orjson.loads"],
            found["REST JSON -> backend request >= 10x faster than json + json_format.ParseDict"],
        )

    assert verdicts(40.0, 400.0) == ("PASS", "PASS")
    assert verdicts(41.0, 600.0) == ("MISS", "PASS")
    assert verdicts(30.0, 299.0) == ("PASS", "MISS")
    assert verdicts(30.0, 200.0) == ("PASS", "MISS")
    assert all(
        t["verdict"] == "n/a" for t in report.targets([], {}, {}) if t["target"].startswith("REST")
    )


def _floor_row(variant: str, release: str, conc: int, round_: int, cpu: float) -> dict[str, Any]:
    return {"variant": variant, "release": release, "conc": conc, "round": round_, "cpu_ms": cpu,
            "rps": 1.0 / cpu, "size": "small"}  # fmt: skip


def test_floor_targets_judge_the_pin_against_the_cheapest_and_the_cheapest_runnable() -> None:
    old, new, pinned = "grpcio 1.66.2", "grpcio 1.83.2", "grpcio 1.82.3 no-event-engine"
    rows = []
    for conc in (16, 64):
        for round_, slow in ((1, 1.0), (2, 2.0), (3, 1.0)):  # a slow round: the ratios hold
            rows += [
                _floor_row(old, "1.66.2", conc, round_, 0.10 * slow),
                _floor_row(pinned, "1.82.3", conc, round_, (0.12 if conc == 16 else 0.105) * slow),
                _floor_row(new, "1.83.2", conc, round_, 0.15 * slow),
            ]
    rows.append({"variant": new, "release": "1.83.2", "conc": 16, "round": 4, "error": "boom"})
    floor = {"rows": rows, "pinned": pinned, "summary": study.summary(rows)}
    out = {r["target"]: r for r in report.floor_targets(floor)}
    assert len(out) == 4
    measured = [r for name, r in out.items() if "release measured" in name]
    runnable = [r for name, r in out.items() if "tfgate can run" in name]
    assert [r["verdict"] for r in measured] == ["MISS", "PASS"]  # c=16: 1.2x; c=64: 1.05x
    assert [r["value"] for r in measured] == pytest.approx([1.2, 1.05])
    assert f"1.20x ({pinned} vs {old})" in measured[0]["shown"]
    assert [r["verdict"] for r in runnable] == ["PASS", "PASS"]  # the pin is the cheapest of those
    assert [r["value"] for r in runnable] == pytest.approx([1.0, 1.0])
    assert report.floor_targets({})[0]["verdict"] == "n/a"


def test_floor_tells_the_releases_tfgate_can_run() -> None:
    assert [study.runnable(r) for r in ("1.66.2", "1.81.1", "1.82.3", "1.85.3", "2.0.0")] == [
        False, False, True, True, True,
    ]  # fmt: skip
