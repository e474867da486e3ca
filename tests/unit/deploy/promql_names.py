"""What the deploy/ queries may name: docs/metrics.md's table and the recording rules.

Shared by the unit tests (names in the dashboard and rules) and the Prometheus
integration test (an exporter shaped like the documented worker metrics).
PromQL is parsed by a real parser (``promql-parser``), not by regexes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[3]
METRICS_DOC = REPO / "docs" / "metrics.md"
DEPLOY = REPO / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
DASHBOARD = DEPLOY / "grafana" / "recstream.json"

# Labels every scraped series has, besides the documented ones.
TARGET_LABELS = frozenset({"instance", "job"})
_ROW = re.compile(
    r"^\|\s*`(?P<name>[a-z][a-z0-9_:]*)`\s*\|\s*(?P<type>[a-z]+)[^|]*\|(?P<labels>[^|]*)\|"
)
_LABEL = re.compile(r"`([a-z][a-z0-9_]*)`")
_BUCKETS = re.compile(r"Latency buckets \(seconds\):(?P<list>[\d.,\s]+)")


@dataclass(frozen=True)
class DocMetric:
    name: str  # as in the table (counters with their _total suffix)
    type: str  # counter, gauge, histogram
    labels: tuple[str, ...]

    def series_names(self) -> dict[str, frozenset[str]]:
        """Every series name this metric exposes -> the labels allowed on it."""
        labels = frozenset(self.labels) | TARGET_LABELS
        if self.type == "histogram":
            return {
                f"{self.name}_bucket": labels | {"le"},
                f"{self.name}_sum": labels,
                f"{self.name}_count": labels,
            }
        return {self.name: labels}


def documented_metrics(doc: Path = METRICS_DOC) -> list[DocMetric]:
    metrics = []
    for line in doc.read_text().splitlines():
        m = _ROW.match(line)
        if m:
            labels = tuple(_LABEL.findall(m["labels"]))
            metrics.append(DocMetric(m["name"], m["type"], labels))
    if not metrics:
        raise AssertionError(f"no metric table found in {doc}")
    return metrics


def latency_buckets(doc: Path = METRICS_DOC) -> tuple[float, ...]:
    m = _BUCKETS.search(doc.read_text())
    if m is None:
        raise AssertionError(f"no 'Latency buckets (seconds):' line in {doc}")
    items = m["list"].strip().rstrip(".").split(",")
    return tuple(float(x) for x in items)


def rule_groups() -> list[dict]:
    groups = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def recording_rules() -> dict[str, str]:
    """Recorded series name -> its expression."""
    return {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}


def alert_rules() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in rule_groups() for r in g["rules"] if "alert" in r}


def allowed_series() -> dict[str, frozenset[str] | None]:
    """Series a query may select -> allowed matcher labels (None: not checked)."""
    allowed: dict[str, frozenset[str] | None] = {"up": TARGET_LABELS}
    for metric in documented_metrics():
        allowed.update(metric.series_names())
    for name in recording_rules():
        allowed[name] = None
    return allowed


# Grafana's built-in and dashboard variables, replaced by something PromQL parses.
_GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def substitute_grafana_vars(expr: str) -> str:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    # Dashboard variables only appear as regex label values (=~"$instance").
    return _VAR.sub(".*", expr)


def dashboard_queries(dashboard: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, nested rows included."""

    def panels(items: list[dict]) -> Iterator[dict]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    data = json.loads(dashboard.read_text())
    out = [
        (p.get("title", "?"), t["expr"])
        for p in panels(data["panels"])
        for t in p.get("targets", [])
        if "expr" in t
    ]
    for var in data.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            m = re.fullmatch(r"label_values\((?P<metric>[^,]+),\s*\w+\)", query)
            out.append((f"variable {var['name']}", m["metric"] if m else query))
    return out


@dataclass(frozen=True)
class Selector:
    name: str
    labels: tuple[str, ...]  # matcher label names


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in a PromQL expression (inside functions, ranges, subqueries)."""
    found: list[Selector] = []

    def walk(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = tuple(m.name for m in node.matchers.matchers if m.name != "__name__")
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), ""
            )
            found.append(Selector(name, labels))
        elif isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                walk(arg)
        elif isinstance(node, promql_parser.AggregateExpr):
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
        elif isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
        elif isinstance(
            node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
        ):
            walk(node.expr)

    walk(promql_parser.parse(expr))
    return found


def unknown_names(expr: str) -> list[str]:
    """Problems with one query: unknown series, or labels the metric does not have."""
    allowed = allowed_series()
    problems = []
    for sel in selectors(expr):
        if sel.name not in allowed:
            problems.append(f"unknown metric {sel.name!r}")
            continue
        ok_labels = allowed[sel.name]
        if ok_labels is not None:
            problems.extend(
                f"{sel.name} has no label {label!r}"
                for label in sel.labels
                if label not in ok_labels
            )
    return problems
