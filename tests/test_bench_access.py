"""bench/access.py's generated configs, as tfgate reads them, and the access-control figures of
bench/report.py (no network: the gate is driven in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import access, h2load, report
from bench.messages import MODEL
from tfgate.calls import Call, Credentials
from tfgate.errors import Unauthenticated


def _call(authorization: str = "") -> Call:
    return Call("grpc", "Predict", 0.0, credentials=Credentials(authorization=authorization))


@pytest.mark.asyncio
@pytest.mark.parametrize("name", access.PATHS)
async def test_each_config_lets_its_own_caller_in_and_no_other(name: str, tmp_path: Path) -> None:
    made = access.write_config(name, tmp_path)
    (header,) = made.headers
    assert header[0] == "authorization"
    gate = access.gate_of(made)
    await gate.start()
    try:
        assert gate.enabled
        call = _call(header[1])
        await gate.admit(call, "Predict", MODEL)
        assert call.client == access.CLIENT
        again = _call(header[1])  # a JWT from the cache now
        await gate.admit(again, "Predict", MODEL)
        assert again.client == access.CLIENT
        for wrong in ("", "Bearer nope", header[1][:-2] + "xx"):
            with pytest.raises(Unauthenticated):
                await gate.admit(_call(wrong), "Predict", MODEL)
    finally:
        await gate.close()
    # All three buckets (global, the client's, the client's for this model) are taken from.
    assert gate.limits is not None
    assert all(b is not None for b in gate.limits.applying(access.CLIENT, MODEL))


def test_each_run_makes_its_own_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = access.write_config("tfgate-auth", tmp_path / "a")
    second = access.write_config("tfgate-auth", tmp_path)
    assert first.headers != second.headers
    assert first.headers[0][1] not in second.config.with_name("keys.toml").read_text()


def test_an_unknown_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tfgate-auth"):
        access.write_config("tfgate", tmp_path)


def test_admit_cost_reports_the_gate_over_an_open_one(tmp_path: Path) -> None:
    cost = access.admit_cost("tfgate-auth", tmp_path, calls=200, repeats=1)
    assert cost["admit_us"] > cost["open_gate_us"] > 0
    assert cost["added_us"] == pytest.approx(cost["admit_us"] - cost["open_gate_us"])


def test_command_sends_the_callers_headers(tmp_path: Path) -> None:
    args = h2load.command(
        "http://x/M", tmp_path / "b", 16, 3, headers=[("authorization", "Bearer k")]
    )
    assert args[-3:] == ["-H", "authorization: Bearer k", "http://x/M"]
    assert "authorization: Bearer k" not in h2load.command("http://x/M", tmp_path / "b", 16, 3)


def _row(path: str, round_: int, cpu: float, rps: float = 1000.0) -> dict[str, Any]:
    return {"path": path, "size": "small", "conc": 16, "round": round_, "rps": rps,
            "cpu_ms": cpu, "p50_ms": 16_000 / rps}  # fmt: skip


def test_access_summary_takes_the_difference_within_each_round() -> None:
    rows = [
        _row("tfgate", 1, 1.000),
        _row("tfgate-auth", 1, 1.020),
        _row("tfgate-auth", 2, 1.530),  # a slow round for both: the difference holds
        _row("tfgate", 2, 1.500),
        _row("tfgate", 3, 1.000),
        {"path": "tfgate-auth", "size": "small", "conc": 16, "round": 3, "error": "boom"},
        _row("tfgate", 4, 0.900),
        _row("tfgate-auth", 4, 1.000, rps=800.0),
    ]
    (out,) = report.access_summary(rows)
    assert out["path"] == "tfgate-auth"
    assert out["rounds"] == 3
    assert out["cpu_added_all_us"] == pytest.approx([20.0, 30.0, 100.0])
    assert out["cpu_added_us"] == pytest.approx(30.0)
    assert out["rps_vs_tfgate"] == pytest.approx(1.0)
    assert "| tfgate-auth | 16 | 3 | 1.000; 1.020 | +30 (+20, +30, +100) |" in (
        report.access_table([out])
    )


def _verdicts(summary: list[dict[str, Any]] | None) -> dict[str, str]:
    return {
        t["target"]: t["verdict"]
        for t in report.targets([], {}, {}, access=summary)
        if t["target"].startswith("auth + authz")
    }


def test_access_targets_pass_up_to_50_us_and_miss_above() -> None:
    key = "auth + authz + limits <= 50 us CPU/call (API key, small, c=16)"
    jwt = "auth + authz + limits <= 50 us CPU/call (cached JWT, small, c=16)"
    assert _verdicts(None) == {key: "n/a", jwt: "n/a"}
    rows = [_row("tfgate", 1, 1.0), _row("tfgate-auth", 1, 1.049), _row("tfgate-jwt", 1, 1.051)]
    assert _verdicts(report.access_summary(rows)) == {key: "PASS", jwt: "MISS"}
