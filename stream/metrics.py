"""The worker's Prometheus metrics (names and buckets exactly as docs/metrics.md).

Each worker owns one :class:`WorkerMetrics` with its own registry, so two
workers in one process (tests) do not collide and ``/metrics`` shows only what
this worker did. Everything is in base units (seconds).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("decode", "encode_text", "encode_sequence", "search", "fuse", "produce")

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "STAGES", "WorkerMetrics"]


class WorkerMetrics:
    """Every metric one worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, memory, fds: CPU per event is the number that
        # survives a shared machine (latency does not).
        ProcessCollector(registry=r)
        self.e2e_latency = Histogram(
            "recstream_e2e_latency_seconds",
            "Input event ts to recommendation emitted.",
            ["trigger"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "recstream_stage_latency_seconds",
            "Per-batch time spent in one stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_in = Counter("recstream_events_in", "Messages consumed.", ["topic"], registry=r)
        self.events_out = Counter(
            "recstream_events_out", "Messages produced.", ["topic"], registry=r
        )
        self.dlq = Counter(
            "recstream_dlq",
            "Inputs sent to the dead-letter topic.",
            ["topic", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "recstream_batch_size",
            "Events per micro-batch.",
            ["agent"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "recstream_model_info", "The loaded bundle (value 1).", ["version"], registry=r
        )
        self.model_loaded = Gauge(
            "recstream_model_loaded", "1 when a bundle is loaded and serving.", registry=r
        )
        self.model_reloads = Counter(
            "recstream_model_reloads", "Hot reload attempts.", ["result"], registry=r
        )
        self.index_items = Gauge(
            "recstream_index_items", "Items searchable in the live index.", registry=r
        )
        self.consumer_lag = Gauge(
            "recstream_consumer_lag",
            "High watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: labels() costs ~5 µs, paid per batch and output."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def set_model(self, version: str | None) -> None:
        """Record which bundle serves now (None = nothing loaded)."""
        self.model_info.clear()
        if version is None:
            self.model_loaded.set(0)
            return
        self.model_info.labels(version=version).set(1)
        self.model_loaded.set(1)

    def render(self) -> bytes:
        """The text exposition format served on ``/metrics``."""
        return generate_latest(self.registry)
