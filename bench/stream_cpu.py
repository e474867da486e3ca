"""CPU per event of the streaming worker's own stages, without Kafka.

    PYTHONPATH=. python bench/stream_cpu.py                      # stages + process() at batch 4, 32
    PYTHONPATH=. python bench/stream_cpu.py --batches 1,16 --events 2000

Prints process-CPU microseconds (``time.process_time``: what the worker would burn,
a figure contention distorts far less than wall time) for:

- encoding one recommendation value (10 items);
- the table state of one click on a real RocksDB Faust table (sequence read+write,
  trending read+write, changelog drained every 16 events);
- one ``take_ready`` linger wait whose event is already set;
- ``BatchProcessor.process`` end to end (decode, state on RocksDB, the model's
  ``recommend_batch``, output encoding, changelog drain) on the latency benchmark's
  100k-item HNSW bundle (``bench/latency.py --build-only`` builds it once) and workload.

It runs on older trees too (stages they lack are skipped), so the same file can time
a before and an after. See bench/RESULTS.md, "CPU per event".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu_us(fn: Any, n: int) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1e6 / n


class _Event:
    """What Faust's RocksDB store reads from the current event: the input partition."""

    def __init__(self, partition: int) -> None:
        from faust.types import TP

        self.message = SimpleNamespace(partition=partition, tp=TP("in", partition), offset=0)


class _Partitions:
    def __init__(self, batch: Any) -> None:
        self.events = [_Event(p) for p in range(4)]
        self.batch = batch

    def enter(self, partition: int) -> None:
        from faust.streams import _current_event

        _current_event.set(weakref.ref(self.events[partition]))
        self.batch.partition = partition


def _tables(names: list[str]) -> tuple[Any, list[Any]]:
    import faust

    from stream.state import ChangelogBatch, TableView

    app = faust.App("cpu", store="rocksdb://", datadir=tempfile.mkdtemp(), autodiscover=False)
    schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    batch = ChangelogBatch()
    views = [TableView(app.Table(n, schema=schema, partitions=4), batch) for n in names]
    return batch, views


def stages(n: int) -> None:
    try:
        from stream.codec import dumps as enc
    except ImportError:  # before orjson

        def enc(obj: Any) -> bytes:
            return json.dumps(obj, separators=(",", ":")).encode()

    item = {"score": 0.123456789, "sources": ["sequence", "popular"], "because": "i42"}
    rec = {
        "user_id": "bu123",
        "trigger_event_id": "abc-123",
        "trigger": "event",
        "items": [{"item_id": f"i{i * 977}", **item} for i in range(10)],
        "model_version": "bench-100000",
        "event_ts": 1763935200.123456,
        "emitted_ts": 1763935200.125,
    }
    us = _cpu_us(lambda: [enc(rec) for _ in range(n)], n)
    print(f"encode one recommendation (10 items): {us:.1f} µs")

    batch, (seq, trend) = _tables(["user_sequence", "trending"])
    parts = _Partitions(batch)

    def clicks(count: int) -> None:
        for i in range(count):
            parts.enter(i % 4)
            user = f"bu{i % 2000}"
            s = seq.get(user) or {"items": [], "ts_ms": []}
            items = [*s["items"][-99:], f"i{i}"]
            ts = [*s["ts_ms"][-99:], 1763935200123 + i]
            seq[user] = {"items": items, "ts_ms": ts, "applied": [i % 4, i]}
            key = f"{i % 4}:i{i % 5000}"
            e = trend.get(key)
            trend[key] = {"w": 1763935200.0, "n": e["n"] + 1 if e else 1}
            if i % 16 == 15:
                batch.drain()

    clicks(4000)  # sequences reach their 100-item window first
    us = _cpu_us(lambda: clicks(n), n)
    print(f"table state of one click on RocksDB (+ changelog): {us:.1f} µs")

    from mode import Service

    async def waits() -> None:
        svc, ev = Service(), asyncio.Event()
        ev.set()
        t0 = time.process_time()
        for _ in range(n):
            await svc.wait_for_stopped(ev, timeout=0.002)
        print(f"mode wait_for_stopped, event set: {(time.process_time() - t0) * 1e6 / n:.1f} µs")
        try:
            from stream.batching import _wait
        except ImportError:
            return
        t0 = time.process_time()
        for _ in range(n):
            await _wait(ev, 0.002)
        us = (time.process_time() - t0) * 1e6 / n
        print(f"take_ready _wait, event set: {us:.1f} µs (take_ready skips it when set)")

    asyncio.run(waits())


def process(n: int, batch_sizes: list[int], items: int, dim: int) -> None:
    from inference.bundle import find_latest
    from inference.recommender import OnnxRecommender
    from inference.settings import InferenceSettings
    from recstream.settings import TopicNames
    from stream.messages import InMessage

    spec = importlib.util.spec_from_file_location("bench_latency", ROOT / "bench" / "latency.py")
    assert spec is not None and spec.loader is not None
    latency = importlib.util.module_from_spec(spec)
    sys.modules["bench_latency"] = latency
    spec.loader.exec_module(latency)
    root = latency.OUT / "bundles" / f"bench-{items}-{dim}"
    bundle = find_latest(root) if root.exists() else None
    if bundle is None:
        sys.exit(f"no bundle under {root}: run bench/latency.py --build-only first")
    model = OnnxRecommender.load(bundle, InferenceSettings())
    topics = TopicNames()
    events = latency.workload(n * 2, items, 20_000, 0)
    msgs = [
        InMessage(
            getattr(topics, kind),
            i % 4,
            i,
            user.encode(),
            json.dumps({**body, "ts": time.time()}).encode(),
        )
        for i, (kind, user, body) in enumerate(events)
    ]
    for size in batch_sizes:
        us = _time_process(model, topics, msgs, n, size)
        print(f"BatchProcessor.process, batch {size}: {us / 1000:.3f} ms/event")


def _time_process(model: Any, topics: Any, msgs: list[Any], n: int, size: int) -> float:
    """µs of CPU per event over ``msgs[n:]``, after ``msgs[:n]`` filled the tables."""
    from stream.metrics import WorkerMetrics
    from stream.processing import BatchProcessor
    from stream.settings import WorkerSettings

    batch, (seq, interest) = _tables(["user_sequence", "user_interest"])
    parts = _Partitions(batch)
    proc = BatchProcessor(
        settings=WorkerSettings(store="memory://"),
        topics=topics,
        model=lambda: model,
        sequences=seq,
        interests=interest,
        metrics=WorkerMetrics(),
        on_message=lambda m: parts.enter(m.partition),
    )

    def run(chunk: list[Any]) -> None:
        for i in range(0, len(chunk), size):
            proc.process(chunk[i : i + size])
            batch.drain()

    run(msgs[:n])  # warm: state filled, caches hot
    return _cpu_us(lambda: run(msgs[n:]), n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=3000, help="events timed per figure")
    ap.add_argument("--batches", default="4,32", help="batch sizes for process()")
    ap.add_argument("--items", type=int, default=100_000, help="catalog of the bench bundle")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--skip-process", action="store_true", help="stage microbenchmarks only")
    args = ap.parse_args()
    stages(args.events)
    if not args.skip_process:
        process(args.events, [int(b) for b in args.batches.split(",")], args.items, args.dim)


if __name__ == "__main__":
    main()
