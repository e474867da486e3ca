"""A real Prometheus scraping a real exporter shaped like the worker's /metrics.

The exporter has exactly docs/metrics.md's metrics and latency buckets (built
from the doc, so a doc change flows in). Known latencies go into the e2e
histogram; Prometheus' ``histogram_quantile`` over its HTTP API must land in
the bucket that holds numpy's quantile of the same values. Every dashboard
query and recording rule must run on the real Prometheus and return data.
Once the worker lands, the lead points the same helper at a loaded worker.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.integration.deploy.conftest import StartProm
from tests.integration.deploy.promserver import (
    PromServer,
    PromServerConfig,
    PromServerError,
    free_port,
)
from tests.unit.deploy.promql_names import (
    RULES_DIR,
    alert_rules,
    dashboard_queries,
    documented_metrics,
    latency_buckets,
    recording_rules,
    substitute_grafana_vars,
)

pytestmark = pytest.mark.slow

# Label values a worker would report (any values do; these look like the real ones).
LABEL_VALUES = {
    "trigger": ("event", "query"),
    "stage": ("decode", "encode_text", "encode_sequence", "search", "fuse", "produce"),
    "topic": ("user-events", "search-text"),
    "reason": ("schema",),
    "agent": ("user-events",),
    "version": ("v1",),
    "model_version": ("v1",),
    "bucket": ("control", "canary"),
    "outcome": ("hit", "miss", "no_recommendation"),
    "result": ("ok", "failed"),
    "partition": ("0", "1"),
}
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Exporter:
    registry: CollectorRegistry
    metrics: dict[str, Counter | Gauge | Histogram]
    target: str

    def touch_all(self, step: int) -> None:
        """Move every documented series (every label combination) a little."""
        for metric in self.metrics.values():
            for labels in _combinations(metric._labelnames):  # type: ignore[union-attr]
                child = metric.labels(*labels) if labels else metric
                if isinstance(metric, Counter):
                    child.inc(step)
                elif isinstance(metric, Histogram):
                    child.observe(0.004 * step if "latency" in metric._name else 8)
                else:
                    child.set(1 if "model" in metric._name else 100 * step)


def _combinations(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for name in names:
        combos = [(*c, v) for c in combos for v in LABEL_VALUES[name]]
    return combos


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    metrics: dict[str, Counter | Gauge | Histogram] = {}
    for doc in documented_metrics():
        if doc.type == "counter":
            metrics[doc.name] = Counter(
                doc.name.removesuffix("_total"), doc.name, doc.labels, registry=registry
            )
        elif doc.type == "gauge":
            metrics[doc.name] = Gauge(doc.name, doc.name, doc.labels, registry=registry)
        else:
            buckets = latency_buckets() if doc.name.endswith("_seconds") else BATCH_BUCKETS
            metrics[doc.name] = Histogram(
                doc.name, doc.name, doc.labels, buckets=buckets, registry=registry
            )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield Exporter(registry, metrics, f"127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _rules_config() -> PromServerConfig:
    return PromServerConfig(rule_files=tuple(sorted(RULES_DIR.glob("*.yml"))))


def _wait_scraped(prom: PromServer, expr: str, expected: float) -> None:
    prom.wait_until(
        lambda: any(math.isclose(float(s["value"][1]), expected) for s in prom.query(expr)),
        timeout_s=30,
    )


def test_helper_scrapes_the_target(start_prometheus: StartProm, exporter: Exporter) -> None:
    prom = start_prometheus([exporter.target])
    up = prom.wait_until(lambda: prom.query('up{job="recstream-worker"} == 1'), timeout_s=20)
    assert up[0]["metric"]["instance"] == exporter.target
    (target,) = prom.targets()
    assert target["health"] == "up"
    exporter.metrics["recstream_index_items"].set(1234)  # type: ignore[union-attr]
    _wait_scraped(prom, "recstream_index_items", 1234)
    with pytest.raises(PromServerError, match="bad_data"):
        prom.query("sum(")


def test_histogram_quantile_agrees_with_numpy(
    start_prometheus: StartProm, exporter: Exporter
) -> None:
    e2e = exporter.metrics["recstream_e2e_latency_seconds"]
    child = e2e.labels("event")  # type: ignore[union-attr]
    prom = start_prometheus([exporter.target], _rules_config())
    # The zero state must be scraped first, so rate() sees every observation.
    _wait_scraped(prom, 'recstream_e2e_latency_seconds_count{trigger="event"}', 0)

    # Latencies like a loaded worker: lognormal around 6 ms with a tail, spread
    # over a few scrapes.
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(mean=math.log(0.006), sigma=0.6, size=20_000)
    for chunk in np.array_split(latencies, 5):
        for value in chunk:
            child.observe(float(value))
        time.sleep(0.5)
    _wait_scraped(prom, 'recstream_e2e_latency_seconds_count{trigger="event"}', len(latencies))

    bounds = latency_buckets()
    for q in (0.5, 0.9, 0.99):
        truth = float(np.quantile(latencies, q))
        i = bisect.bisect_left(bounds, truth)  # truth in (bounds[i-1], bounds[i]]
        lo, hi = (bounds[i - 1] if i else 0.0), bounds[i]
        over_all = prom.value(
            f"histogram_quantile({q}, sum by (le) (recstream_e2e_latency_seconds_bucket))"
        )
        rate = prom.value(
            f"histogram_quantile({q}, sum by (le) (rate(recstream_e2e_latency_seconds_bucket[1m])))"
        )
        for name, est in (("cumulative", over_all), ("rate[1m]", rate)):
            assert lo <= est <= hi, f"p{q * 100:g} {name}: {est} not in ({lo}, {hi}], numpy {truth}"
            assert abs(est - truth) <= hi - lo

    # The recording rule the p99 alert reads agrees too.
    truth99 = float(np.quantile(latencies, 0.99))
    i = bisect.bisect_left(bounds, truth99)
    recorded = prom.wait_until(
        lambda: [
            float(s["value"][1])
            for s in prom.query("recstream:e2e_latency_seconds:p99_5m")
            if bounds[i - 1] <= float(s["value"][1]) <= bounds[i]
        ],
        timeout_s=20,
    )
    assert bounds[i - 1] <= recorded[0] <= bounds[i]


def test_every_dashboard_query_and_rule_returns_data(
    start_prometheus: StartProm, exporter: Exporter
) -> None:
    prom = start_prometheus([exporter.target], _rules_config())
    exporter.touch_all(0)
    prom.wait_until(lambda: prom.query('up{job="recstream-worker"} == 1'), timeout_s=20)
    # Several scrapes with increments, so rates and quantiles have two points.
    for step in range(1, 5):
        exporter.touch_all(step)
        time.sleep(1.2)
    prom.wait_until(lambda: prom.query("recstream:e2e_latency_seconds:p99_5m"), timeout_s=20)

    empty = []
    for title, expr in dashboard_queries():
        if not prom.query(substitute_grafana_vars(expr)):
            empty.append((title, expr))
    for name in recording_rules():
        if not prom.query(name):
            empty.append((name, "recording rule"))
    assert empty == []

    # The rules loaded on the real server are the repo's, all healthy. Each
    # group runs on its own 15 s clock with its own offset, so a group can
    # still be unevaluated ("unknown") when the other already recorded.
    def evaluated() -> list[dict[str, Any]]:
        rules = prom.rules()
        return rules if all(r["health"] != "unknown" for r in rules) else []

    rules = prom.wait_until(evaluated, timeout_s=40)
    assert {r["health"] for r in rules} == {"ok"}, [r for r in rules if r["health"] != "ok"]
    assert len(rules) == len(recording_rules()) + len(alert_rules())
