"""The pure parts of bench/report.py: ratios of paired runs, and which ratios the targets use."""

from __future__ import annotations

from typing import Any

import pytest

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
