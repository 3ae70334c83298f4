"""The cost-of-observability part of the bench: the trace sink (bench/otlp_sink.py) over a real
gRPC connection on 127.0.0.1, the paths' configs (bench/observe.py), and the figures and target
of bench/report.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from bench import observe, otlp_sink, report, run


def _tag(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def _len(number: int, payload: bytes) -> bytes:
    size = len(payload)
    varint = bytes([size]) if size < 0x80 else bytes([size & 0x7F | 0x80, size >> 7])
    return _tag(number, 2) + varint + payload


def _span(name: str) -> bytes:
    # trace_id (1), span_id (2), name (5), kind (6, a varint), start time (7, fixed64),
    # flags (16, fixed32: a two-byte tag)
    return (
        _len(1, b"\x01" * 16) + _len(2, b"\x02" * 8) + _len(5, name.encode())
        + _tag(6, 0) + b"\x02" + _tag(7, 1) + b"\x00" * 8 + b"\x85\x01" + b"\x01\x00\x00\x00"
    )  # fmt: skip


def _scope(*spans: bytes) -> bytes:
    return _len(1, _len(1, b"tfgate")) + b"".join(_len(2, s) for s in spans) + _len(3, b"url")


def _request(*resources: tuple[bytes, ...]) -> bytes:
    """An ExportTraceServiceRequest: each resource a tuple of its ScopeSpans."""
    out = b""
    for scopes in resources:
        resource = _len(1, _len(1, _len(1, b"service.name") + _len(2, _len(1, b"tfgate"))))
        out += _len(1, resource + b"".join(_len(2, s) for s in scopes))
    return out


EXPORT = _request(
    (_scope(_span("Predict"), _span("backend")), _scope(_span("preprocess"))),
    (_scope(_span("Predict")),),
)


def test_count_spans_walks_resource_scope_and_span_levels() -> None:
    assert otlp_sink.count_spans(EXPORT) == 4
    assert otlp_sink.count_spans(_request((_scope(),))) == 0
    assert otlp_sink.count_spans(b"") == 0


@pytest.mark.parametrize("bad", [EXPORT[:-3], b"\x0b", b"\x0a\x05ab", b"\x08\xff"])
def test_count_spans_refuses_what_is_not_a_message(bad: bytes) -> None:
    with pytest.raises(ValueError):
        otlp_sink.count_spans(bad)


def test_the_sink_answers_export_with_an_empty_message_and_counts_it() -> None:
    server, port, sink = otlp_sink.serve()
    try:
        target = f"127.0.0.1:{port}"
        with grpc.insecure_channel(target) as channel:
            export: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                otlp_sink.EXPORT
            )
            assert export(EXPORT, timeout=10) == b""
            assert export(_request((_scope(_span("x")),)), timeout=10) == b""
            with pytest.raises(grpc.RpcError) as caught:
                export(b"\x0b", timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        expected_bytes = len(EXPORT) + len(_request((_scope(_span("x")),)))
        assert otlp_sink.stats(target) == {"requests": 2, "bytes": expected_bytes, "spans": 5}
        assert sink.stats()["spans"] == 5
    finally:
        server.stop(0)


def test_the_sink_process_prints_its_port_and_stops_with_its_gateway(tmp_path: Path) -> None:
    sink = observe.start_sink(tmp_path, None)
    owner = type(sink)("gateway", [], tmp_path / "gateway.log", companions=[sink])
    try:
        assert observe.endpoint(sink) == f"http://127.0.0.1:{sink.port}"
        with grpc.insecure_channel(f"127.0.0.1:{sink.port}") as channel:
            export: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                otlp_sink.EXPORT
            )
            assert export(EXPORT, timeout=10) == b""
        assert observe.sink_stats(owner)["spans"] == 4
    finally:
        owner.stop()
    assert all(p.poll() is not None for p in sink.popens)


def test_the_nometrics_config_turns_metrics_off(tmp_path: Path) -> None:
    config = observe.write_config(tmp_path)
    observe.check_metrics(config, on=False)
    observe.check_metrics(None, on=True)  # the default, as the bench starts tfgate
    with pytest.raises(RuntimeError, match="metrics = False"):
        observe.check_metrics(config, on=True)
    with pytest.raises(RuntimeError, match="the defaults"):
        observe.check_metrics(None, on=False)


def test_metrics_cost_times_the_exported_metrics_over_the_silent_ones() -> None:
    cost = observe.metrics_cost(calls=200, repeats=1)
    assert cost["exported_us"] > cost["off_us"] > 0
    assert cost["added_us"] == pytest.approx(cost["exported_us"] - cost["off_us"])


def test_tracing_needs_the_otlp_flag_in_serve_help() -> None:
    assert observe.missing_flag("  --otlp-endpoint OTLP_ENDPOINT  where spans go\n") == ""
    for text in ("  --listen LISTEN\n", "  --otlp-endpoints X\n", "  --no-otlp-endpoint\n"):
        assert "--otlp-endpoint" in observe.missing_flag(text)


def _row(path: str, conc: int, round_: int, cpu: float, rps: float = 1000.0) -> dict[str, Any]:
    return {"path": path, "size": "small", "conc": conc, "round": round_, "rps": rps,
            "cpu_ms": cpu, "p50_ms": conc * 1000 / rps}  # fmt: skip


def test_observe_summary_prices_metrics_and_tracing_within_each_round() -> None:
    rows = [
        _row("tfgate-nometrics", 16, 1, 1.00),
        _row("tfgate", 16, 1, 1.02),
        _row("tfgate-traced", 16, 1, 1.53),
        _row("tfgate-traced", 16, 2, 2.20),  # a slow round for all three
        _row("tfgate", 16, 2, 2.02),
        _row("tfgate-nometrics", 16, 2, 2.00),
        _row("tfgate-nometrics", 16, 3, 1.00),
        {"path": "tfgate", "size": "small", "conc": 16, "round": 3, "error": "boom"},
        _row("tfgate-nometrics", 1, 1, 2.00),
        _row("tfgate", 1, 1, 2.10, rps=500.0),
    ]
    metrics16, metrics1, tracing = report.observe_summary(rows)
    assert (metrics16["what"], metrics16["conc"], metrics16["rounds"]) == ("metrics", 16, 2)
    assert metrics16["cpu_added_all_us"] == pytest.approx([20.0, 20.0])
    assert metrics16["cpu_added_all_pct"] == pytest.approx([2.0, 1.0])
    assert metrics16["cpu_added_pct"] == pytest.approx(1.5)
    assert (metrics1["conc"], metrics1["cpu_added_pct"]) == (1, pytest.approx(5.0))
    assert metrics1["rps_vs_base"] == pytest.approx(0.5)
    assert tracing["what"] == "tracing" and tracing["base"] == "tfgate"
    assert tracing["cpu_added_all_us"] == pytest.approx([510.0, 180.0])
    assert "| metrics | 16 | 2 | 1.500; 1.520 | +20 (+20, +20) | +1.5% (+2.0, +1.0) |" in (
        report.observe_table([metrics16])
    )


def _metrics_verdict(summary: list[dict[str, Any]]) -> str:
    (verdict,) = [
        t["verdict"]
        for t in report.targets([], {}, {}, observe=summary)
        if t["target"] == "metrics <= 3% CPU per call (small, c=16)"
    ]
    return str(verdict)


def test_the_metrics_target_passes_up_to_3_per_cent_and_misses_above() -> None:
    assert _metrics_verdict([]) == "n/a"
    within = [_row("tfgate-nometrics", 16, 1, 1.0), _row("tfgate", 16, 1, 1.029)]
    above = [_row("tfgate-nometrics", 16, 1, 1.0), _row("tfgate", 16, 1, 1.031)]
    assert _metrics_verdict(report.observe_summary(within)) == "PASS"
    assert _metrics_verdict(report.observe_summary(above)) == "MISS"
    # c=1 alone does not decide the c=16 target
    only_c1 = [_row("tfgate-nometrics", 1, 1, 1.0), _row("tfgate", 1, 1, 1.5)]
    assert _metrics_verdict(report.observe_summary(only_c1)) == "n/a"


def test_observe_lines_say_whether_spans_reached_the_sink() -> None:
    rows = [_row("tfgate", 16, 1, 1.1), _row("tfgate-traced", 16, 1, 1.2)]
    summary = report.observe_summary(rows)
    traced = {"rows": [{}], "summary": summary, "tracing": "measured",
              "sink": {"requests": 3, "bytes": 900, "spans": 1536}}  # fmt: skip
    assert "spans exported: yes (1536 spans in 3 exports, 900 bytes)" in run.observe_lines(traced)
    empty = {**traced, "sink": {"requests": 0, "bytes": 0, "spans": 0}}
    assert "spans exported: no" in run.observe_lines(empty)
    priced = {**traced, "in_process": {"exported_us": 4.5, "off_us": 0.25, "added_us": 4.25}}
    assert "metrics: 4.50 µs exported, 0.25 µs with metrics = false (+4.25 µs" in (
        run.observe_lines(priced)
    )
    missing = {**traced, "summary": [], "tracing": "not available: no --otlp-endpoint"}
    assert "Tracing: not available: no --otlp-endpoint" in run.observe_lines(missing)
