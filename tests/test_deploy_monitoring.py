"""deploy/prometheus (alerts, checked and unit-tested by promtool) and deploy/grafana (every
query names only metrics tfgate exports)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

from tfgate.backends.admission import Limiter
from tfgate.backends.budget import budget_for
from tfgate.config import RetryPolicy
from tfgate.metrics import Exported

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tfgate.json"
PROMTOOL = "/usr/bin/promtool"

# What a PromQL expression holds that is not a metric name.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its words that are not functions,
    aggregations, keywords, label matchers, groupings or durations."""
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub(" ", expr))))
    names = set()
    for match in _WORD.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported() -> frozenset[str]:
    """Every sample name a gateway's registry exports, with the scrape-time ones (a Redis
    shared-limits gauge included)."""
    metrics = Exported()
    upstream = SimpleNamespace(
        limiter=Limiter(1, 1, 1.0),
        budget=budget_for(RetryPolicy()),
        replicas=[SimpleNamespace(target="tfs:8500", up=True)],
    )
    shared = SimpleNamespace(shared=True)
    metrics.watch(upstream, {"model": True}, shared)  # type: ignore[arg-type]
    return metrics.names()


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], check=False, cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def test_alert_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alerts_name_the_five_questions_and_only_exported_metrics() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    alerts = re.findall(r"- alert: (\w+)", text)
    for wanted in ("BackendDown", "ErrorRatio", "Shedding", "HighLatency", "RetryBudgetExhausted"):
        assert f"Tfgate{wanted}" in alerts
    exprs = re.findall(r"expr: \|\n((?:\s{10}.*\n)+)|expr: (.+)", text)
    used = set().union(*(metric_names(block or line) for block, line in exprs))
    assert used and used <= exported(), used - exported()


def test_every_dashboard_query_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names = exported()
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    for expr in queries:
        used = metric_names(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= names, f"{expr!r} names {sorted(used - names)}, which tfgate does not export"


def test_the_name_check_finds_a_metric_tfgate_does_not_export() -> None:
    expr = (
        'sum by (model, code) (rate(tfgate_calls_total{code!="OK", model=~"a.*"}[5m])) '
        "/ on (model) group_left sum by (model) (rate(tfgate_requests_total[5m])) > bool 0"
    )
    assert metric_names(expr) == {"tfgate_calls_total", "tfgate_requests_total"}
    assert "tfgate_requests_total" not in exported()
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))") == {
        "x_bucket"
    }
