"""The pure parts of the bench's response cache and micro-batching parts: reading tfgate's
/metrics text, the paired summaries and their targets, the repeat plan and the iris check."""

from __future__ import annotations

from typing import Any

import pytest

from bench import batch, cache, report
from tfgate.v1 import inference_pb2

EXPOSITION = """\
# HELP tfgate_cache_hits_total Predicts answered by the model's response cache, by model.
# TYPE tfgate_cache_hits_total counter
tfgate_cache_hits_total{model="half_plus_two"} 120.0
tfgate_cache_hits_total{model="iris"} 7.0
# HELP tfgate_cache_hits_created Predicts answered by the model's response cache, by model.
# TYPE tfgate_cache_hits_created gauge
tfgate_cache_hits_created{model="half_plus_two"} 1.7e+09
# TYPE tfgate_cache_misses counter
tfgate_cache_misses_total{model="half_plus_two"} 30.0
# TYPE tfgate_backend_attempts counter
tfgate_backend_attempts_total{code="OK",replica="127.0.0.1:1"} 31.0
tfgate_backend_attempts_total{code="UNAVAILABLE",replica="127.0.0.1:2"} 2.0
# TYPE tfgate_retries counter
"""


def test_metric_total_sums_the_matching_samples_only() -> None:
    hits = report.metric_total(EXPOSITION, "tfgate_cache_hits_total", model="half_plus_two")
    assert hits == 120.0
    assert report.metric_total(EXPOSITION, "tfgate_backend_attempts_total") == 33.0
    assert report.metric_total(EXPOSITION, "tfgate_backend_attempts_total", code="OK") == 31.0
    # Declared without a sample: zero; not declared at all: None (a tfgate without it).
    assert report.metric_total(EXPOSITION, "tfgate_retries_total") == 0.0
    assert report.metric_total(EXPOSITION, "tfgate_cache_evictions_total") is None


def test_cache_counts_read_hits_misses_and_backend_calls() -> None:
    counts = report.cache_counts(EXPOSITION, "half_plus_two")
    assert counts == {"hits": 120.0, "misses": 30.0, "backend_calls": 33.0}
    with pytest.raises(ValueError, match="tfgate_cache_hits_total"):
        report.cache_counts("# TYPE tfgate_calls counter\n", "half_plus_two")


def test_batch_counts_read_the_batch_size_histogram() -> None:
    text = (
        "# TYPE tfgate_batch_size histogram\n"
        'tfgate_batch_size_bucket{le="1.0",model="half_plus_two"} 4.0\n'
        'tfgate_batch_size_bucket{le="+Inf",model="half_plus_two"} 20.0\n'
        'tfgate_batch_size_count{model="half_plus_two"} 20.0\n'
        'tfgate_batch_size_sum{model="half_plus_two"} 130.0\n'
        'tfgate_batch_size_count{model="iris"} 3.0\n'
        'tfgate_batch_size_sum{model="iris"} 3.0\n'
    )
    counts = report.batch_counts(text, "half_plus_two")
    assert counts == {"batches": 20.0, "batched_calls": 130.0, "mean_batch": 6.5}
    none_sent = report.batch_counts("# TYPE tfgate_batch_size histogram\n", "half_plus_two")
    assert none_sent == {"batches": 0.0, "batched_calls": 0.0, "mean_batch": None}
    assert report.batch_counts(EXPOSITION, "half_plus_two") is None  # a tfgate without it


def _row(path: str, conc: int, round_: int, *figures: float) -> dict[str, Any]:
    """A measured run: ``figures`` are its calls/s, gateway CPU ms per call and p50 ms."""
    rps, cpu, p50 = figures
    return {
        "path": path, "size": "small", "conc": conc, "round": round_, "rps": rps,
        "cpu_ms": cpu, "p50_ms": p50, "requests": int(rps),
    }  # fmt: skip


def test_pair_summary_takes_the_ratio_within_each_round() -> None:
    rows = [
        _row("tfgate-cached", 16, 1, 3000.0, 0.30, 5.0),
        _row("tfgate-cached-bypass", 16, 1, 1000.0, 0.60, 10.0),
        _row("tfgate-cached-bypass", 16, 2, 500.0, 1.20, 20.0),  # a slow round for both
        _row("tfgate-cached", 16, 2, 1500.0, 0.72, 10.0),
        _row("tfgate-cached", 16, 3, 3000.0, 0.30, 5.0),
        {"path": "tfgate-cached-bypass", "size": "small", "conc": 16, "round": 3, "error": "x"},
    ]
    (row,) = report.pair_summary(rows, [("tfgate-cached", "tfgate-cached-bypass")])
    assert row["rounds"] == 2
    assert row["cpu_ratios"] == pytest.approx([0.5, 0.6])
    assert row["cpu_ratio"] == pytest.approx(0.55)
    assert row["rps_ratio"] == pytest.approx(3.0)
    assert row["p50_over_base_ms"] == pytest.approx(-7.5)
    assert row["base_cpu_ms"] == pytest.approx(0.9)
    assert "| tfgate-cached | tfgate-cached-bypass | 16 | 2 |" in report.pair_table([row])
    assert report.pair_summary(rows, [("tfgate-cached", "tfgate")]) == []


def test_cache_targets_judge_the_hit_ratio_and_the_repeated_load() -> None:
    rows = [
        _row("tfgate-cached", 16, 1, 3000.0, 0.25, 5.0),
        _row("tfgate-cached-bypass", 16, 1, 1000.0, 0.60, 10.0),
        _row("tfgate-cached", 1, 1, 1000.0, 0.40, 1.0),
        _row("tfgate-cached-bypass", 1, 1, 700.0, 0.60, 1.4),
    ]
    summary = report.pair_summary(rows, [(report.CACHE_HIT, report.CACHE_MISS)])
    repeated = {"calls": 1000, "distinct": 500, "backend_calls": 560.0, "hits": 440.0,
                "misses": 560.0}  # fmt: skip
    verdicts = {t["target"]: t["verdict"] for t in report.cache_targets(summary, repeated)}
    assert verdicts == {
        "cache hit vs miss <= 0.5x CPU per call (small, c=16)": "PASS",
        "cache hit vs miss <= 0.5x CPU per call (small, c=1)": "MISS",
        "50% repeated requests: backend calls <= 0.55x of calls": "MISS",
    }
    none = report.cache_targets([], None)
    assert [t["verdict"] for t in none] == ["n/a", "n/a"]


def test_cache_check_wants_a_hit_per_hit_call_and_a_miss_per_bypass() -> None:
    rows = [
        _row("tfgate-cached", 16, 1, 3000.0, 0.25, 5.0),
        _row("tfgate-cached-bypass", 16, 1, 1000.0, 0.60, 10.0),
    ]
    good = {"hits": 3005.0, "misses": 1004.0, "backend_calls": 1010.0}
    assert report.cache_check(good, rows) == ""
    no_hits = {"hits": 2.0, "misses": 4003.0, "backend_calls": 4010.0}
    assert "2 hits for 3000 calls" in report.cache_check(no_hits, rows)
    no_misses = {"hits": 4003.0, "misses": 3.0, "backend_calls": 5.0}
    assert "3 misses and 5 backend calls for 1000 calls" in report.cache_check(no_misses, rows)


def test_batch_targets_judge_rps_cpu_and_the_added_p50() -> None:
    rows = [
        _row("passthrough", 64, 1, 4000.0, 0.30, 10.0),
        _row("tfgate", 64, 1, 3500.0, 0.40, 12.0),
        _row("tfgate-batched", 64, 1, 7000.0, 0.20, 8.0),
        _row("tfgate", 1, 1, 1000.0, 0.60, 0.8),
        _row("tfgate-batched", 1, 1, 300.0, 0.70, 3.1),
    ]
    summary = report.pair_summary(rows, report.BATCH_PAIRS)
    verdicts = {t["target"]: t["verdict"] for t in report.batch_targets(summary, 2.0)}
    assert verdicts == {
        "tfgate with batching (2 ms) vs the bare pass-through, c=64, small >= 1.5x calls/s": (
            "PASS"
        ),
        "tfgate with batching vs without, c=64 <= 0.65x CPU per call": "PASS",
        "added p50 at c=1 with batching on <= max_delay + 0.2 ms (2.2 ms)": "MISS",  # +2.3 ms
    }
    assert [t["verdict"] for t in report.batch_targets([], 2.0)] == ["n/a"] * 3


def test_the_repeat_plan_repeats_every_other_call_from_earlier_ones() -> None:
    order = cache.plan(1000)
    assert len(order) == 1000
    assert order[0::2] == list(range(500))  # the new inputs, in turn
    for i in range(1, 1000, 2):
        assert order[i] in order[:i]
    assert len(set(order)) == 500
    assert cache.plan(1000) == order  # seeded: the same calls every run
    assert len({tuple(cache.inputs_of(n).tolist()) for n in range(500)}) == 500


def test_a_refused_batching_table_is_told_from_other_start_up_failures() -> None:
    refused = (
        "tfgate: configuration error: config file x.toml: model 'half_plus_two': unknown "
        "parameter 'batching' (parameters: cache, inputs, outputs, signature)"
    )
    assert batch.unavailable(f"exited (2):\n{refused}\n") == refused
    assert batch.unavailable("tfgate: cannot listen on 127.0.0.1:0") == ""
    assert "max_delay = 2\n" in batch.config_text("iris")


def test_check_iris_wants_three_probabilities_of_one_flower() -> None:
    good = inference_pb2.PredictResponse(model="iris")
    good.outputs["probabilities"].floats.extend([0.9, 0.07, 0.03])
    batch.check_iris(good.SerializeToString())
    two = inference_pb2.PredictResponse(model="iris")
    two.outputs["probabilities"].floats.extend([0.9, 0.07, 0.03, 0.9, 0.07, 0.03])
    with pytest.raises(ValueError, match="not 3 probabilities"):
        batch.check_iris(two.SerializeToString())
    with pytest.raises(ValueError, match="unexpected answer"):
        batch.check_iris(inference_pb2.PredictResponse(model="sentiment").SerializeToString())
