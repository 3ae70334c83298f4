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


README = ROOT / "README.md"
OBSERVABILITY = ROOT / "docs" / "observability.md"


def promql_blocks(page: Path) -> list[str]:
    """The expressions of a page's ```promql blocks: one per line that is not a comment, a
    line that starts with spaces continuing the one before."""
    text = page.read_text(encoding="utf-8")
    exprs: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith(" ") and exprs:
                exprs[-1] += " " + line.strip()
            else:
                exprs.append(line.strip())
    return exprs


def test_the_docs_promql_parses_and_names_only_exported_metrics(tmp_path: Path) -> None:
    exprs = promql_blocks(README) + promql_blocks(OBSERVABILITY)
    assert len(exprs) >= 8
    names = exported()
    for expr in exprs:
        assert metric_names(expr) <= names, expr
    # promtool parses each as a recording rule's expression.
    rules = tmp_path / "docs.yml"
    rules.write_text(
        "groups:\n  - name: docs\n    rules:\n"
        + "".join(
            f"      - record: docs:expr{i}\n        expr: {json.dumps(expr)}\n"
            for i, expr in enumerate(exprs)
        ),
        encoding="utf-8",
    )
    done = promtool("check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_the_readme_lists_every_metric_tfgate_exports() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Observability") :]
    section = section[: section.index("\n## ", 1)]
    listed = set(re.findall(r"`(tfgate_[a-z_]+)`", section))
    families = {
        re.sub(r"_(bucket|count|sum|created)$", "", name)
        for name in exported()
        if name.startswith("tfgate_")
    }
    families -= {name for name in families if f"{name}_total" in families}  # a counter's family
    assert listed == families, (sorted(families - listed), sorted(listed - families))
