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
# online learning's lag objective is 1 s (p99) from the click to every worker
LEARNED_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("decode", "encode_text", "encode_sequence", "search", "fuse", "produce")
# Live feedback (stream.feedback): the rank of a hit, and the age of the judged list.
RANK_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 100)
AGE_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
FEEDBACK_OUTCOMES = ("hit", "miss", "no_recommendation")

__all__ = [
    "AGE_BUCKETS",
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "RANK_BUCKETS",
    "STAGES",
    "WorkerMetrics",
]


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
            "recstream_model_info",
            "The bundle serving each bucket (value 1).",
            ["version", "bucket"],
            registry=r,
        )
        self.model_memory = Gauge(
            "recstream_model_memory_bytes",
            "Resident memory the serving bundle of each bucket added when it loaded.",
            ["bucket"],
            registry=r,
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
        self.learned_updates = Counter(
            "recstream_learned_updates",
            "Learned item states this worker's applier read, by what became of them.",
            ["result"],  # applied, other_version, not_live
            registry=r,
        )
        self.learned_items = Gauge(
            "recstream_learned_items",
            "Items with a learned state for the served model version.",
            registry=r,
        )
        self.learned_lag = Histogram(
            "recstream_learned_update_lag_seconds",
            "Click (its event ts) to the item's learned state applied on this worker.",
            buckets=LEARNED_LAG_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "recstream_consumer_lag",
            "High watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "recstream_consumer_lag_seconds",
            "Age of the oldest input record not processed yet (an upper bound; 0 caught up).",
            ["topic", "partition"],
            registry=r,
        )

        feedback = ["model_version", "bucket"]
        self.feedback = Counter(
            "recstream_online_feedback",
            "Clicks judged against the user's latest earlier recommendation.",
            [*feedback, "outcome"],
            registry=r,
        )
        self.feedback_rank = Histogram(
            "recstream_online_feedback_rank",
            "Rank (1 = first) of the clicked item in the judged list, for hits.",
            feedback,
            buckets=RANK_BUCKETS,
            registry=r,
        )
        self.feedback_rr = Counter(
            "recstream_online_feedback_reciprocal_rank",
            "Sum of 1/rank over hits (MRR = this / hits and misses).",
            feedback,
            registry=r,
        )
        self.feedback_age = Histogram(
            "recstream_online_feedback_age_seconds",
            "Click ts minus the judged list's emitted_ts (hits and misses).",
            feedback,
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.consumer_skipped = Counter(
            "recstream_consumer_skipped_offsets",
            "Input offsets that no longer existed when read (retention, DeleteRecords, "
            "compaction removed them before they were processed).",
            ["topic", "partition"],
            registry=r,
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._versions: dict[str, str] = {}  # bucket -> version in model_info
        self._memory: set[str] = set()  # buckets with a model_memory series
        for result in ("applied", "other_version", "not_live"):  # exported from the start
            self.child(self.learned_updates, result)

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: labels() costs ~5 µs, paid per batch and output."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def set_model(self, version: str | None, bucket: str = "control") -> None:
        """Record which bundle serves ``bucket`` now (None = nothing loaded).

        ``recstream_model_loaded`` follows the control bucket (what readiness needs).
        A new version's feedback series are created at 0, so rates exist from the start.
        """
        old = self._versions.pop(bucket, None)
        if old is not None:
            self.model_info.remove(old, bucket)
        if bucket == "control":
            self.model_loaded.set(0 if version is None else 1)
        if version is None:
            self.set_memory(bucket, None)
            return
        self._versions[bucket] = version
        self.model_info.labels(version=version, bucket=bucket).set(1)
        for outcome in FEEDBACK_OUTCOMES:
            self.feedback.labels(version, bucket, outcome)
        self.feedback_rank.labels(version, bucket)
        self.feedback_rr.labels(version, bucket)
        self.feedback_age.labels(version, bucket)

    def set_memory(self, bucket: str, nbytes: int | None) -> None:
        """The resident memory ``bucket``'s bundle added when it loaded (None: no bundle)."""
        if nbytes is not None:
            self.model_memory.labels(bucket=bucket).set(nbytes)
            self._memory.add(bucket)
        elif bucket in self._memory:
            self.model_memory.remove(bucket)
            self._memory.discard(bucket)

    def render(self) -> bytes:
        """The text exposition format served on ``/metrics``."""
        return generate_latest(self.registry)
