"""Every metric the dashboard and the rules query exists in docs/metrics.md.

The worker exposes exactly docs/metrics.md's table (stream/metrics.py); a panel
or rule naming anything else would stay empty forever. Recording rules defined
in deploy/prometheus/rules count as names too.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.unit.deploy.promql_names import (
    DASHBOARD,
    DEPLOY,
    alert_rules,
    dashboard_queries,
    documented_metrics,
    latency_buckets,
    recording_rules,
    selectors,
    substitute_grafana_vars,
    unknown_names,
)


def test_docs_table_is_parsed_completely() -> None:
    names = {m.name for m in documented_metrics()}
    assert {"recstream_e2e_latency_seconds", "recstream_consumer_lag"} <= names
    assert len(names) == 21
    assert latency_buckets()[0] == 0.001
    assert latency_buckets()[-1] == 1.0


@pytest.mark.parametrize(
    ("title", "expr"), dashboard_queries(), ids=lambda v: v if len(v) < 40 else v[:40]
)
def test_dashboard_query_names_documented_metrics(title: str, expr: str) -> None:
    assert unknown_names(substitute_grafana_vars(expr)) == [], f"panel {title!r}: {expr}"


@pytest.mark.parametrize(("name", "expr"), sorted({**recording_rules(), **alert_rules()}.items()))
def test_rule_names_documented_metrics(name: str, expr: str) -> None:
    assert unknown_names(expr) == [], f"rule {name}: {expr}"


def test_checker_rejects_a_metric_that_does_not_exist() -> None:
    expr = "histogram_quantile(0.99, sum by (le) (rate(recstream_e2e_latency_ms_bucket[5m])))"
    assert unknown_names(expr) == ["unknown metric 'recstream_e2e_latency_ms_bucket'"]
    # Counters are exposed with _total; the bare name is not a series.
    assert unknown_names("rate(recstream_events_in[5m])") == [
        "unknown metric 'recstream_events_in'"
    ]
    # Histograms have no bare series either, and labels must exist on the metric.
    assert unknown_names("recstream_batch_size") == ["unknown metric 'recstream_batch_size'"]
    assert unknown_names('recstream_index_items{topic="x"}') == [
        "recstream_index_items has no label 'topic'"
    ]


def test_checker_sees_selectors_everywhere() -> None:
    expr = (
        "deriv(sum(recstream_consumer_lag)[10m:1m]) > 0 and on () "
        "absent(up) unless -(recstream_model_loaded offset 5m)"
    )
    assert {s.name for s in selectors(expr)} == {
        "recstream_consumer_lag",
        "up",
        "recstream_model_loaded",
    }


def test_dashboard_covers_every_documented_metric() -> None:
    queried = {
        s.name for _, q in dashboard_queries() for s in selectors(substitute_grafana_vars(q))
    }
    # A recording rule on the dashboard stands for the metrics it reads.
    rules = recording_rules()
    for name in list(queried):
        if name in rules:
            queried |= {s.name for s in selectors(rules[name])}
    missing = []
    for metric in documented_metrics():
        if not queried & set(metric.series_names()):
            missing.append(metric.name)
    assert missing == []


def test_dashboard_is_well_formed() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "recstream"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in data["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        # Any dashboard variable used must be defined (or be a Grafana built-in).
        for target in panel["targets"]:
            for var in re.findall(r"\$\{?(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, (panel["title"], var)
    titles = " | ".join(p["title"] for p in data["panels"]).lower()
    for topic in (
        "percentiles",
        "stage",
        "events in",
        "events out",
        "dead letters",
        "batch size",
        "lag",
        "model version",
        "index size",
        "memory",
        "hr@10",
        "mrr@10",
    ):
        assert topic in titles, topic


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    prov = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in prov
    data = json.loads(DASHBOARD.read_text())
    ds_var = next(v for v in data["templating"]["list"] if v["name"] == "datasource")
    assert ds_var["current"]["value"] == "prometheus"
