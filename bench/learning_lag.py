"""How long until what a click taught an item is served by every worker (issue 20).

    PYTHONPATH=. python bench/learning_lag.py                      # 2 workers, 1,000 ev/s, 30 s
    PYTHONPATH=. python bench/learning_lag.py --workers 2 --rate 1000 --duration 30 --bundle B

Starts a local Apache Kafka broker and ``--workers`` worker processes in one consumer
group on the same bundle (default: bench/latency.py's 100k-item HNSW bundle), publishes
bench/latency.py's workload (80 % clicks on random items, 20 % queries) at ``--rate``
for ``--duration`` seconds, then reads each worker's
``recstream_learned_update_lag_seconds`` histogram (docs/metrics.md): the time from a
click's event ``ts`` (stamped at send) to its item's learned state applied to that
worker's index. Prints per worker the updates applied, the share within 1 s and the
p50/p99 interpolated within the histogram's buckets, plus the end-to-end latency of
the recommendations in the same run. The objective: ≤ 1 s at p99 on every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import latency  # bench/latency.py: the bundle, the workload, the rate driver

LAG = "recstream_learned_update_lag_seconds"


def lag_histogram(worker: object) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the worker's learned-update lag histogram."""
    text = worker.get("/metrics")[1].decode()  # type: ignore[attr-defined]
    out = []
    for le, value in re.findall(rf'^{LAG}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M):
        out.append((float("inf") if le == "+Inf" else float(le), float(value)))
    return sorted(out)


def quantile(hist: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style: linear within the bucket holding the q-th observation."""
    total = hist[-1][1] if hist else 0.0
    if total <= 0:
        return float("nan")
    rank, lo, below = q * total, 0.0, 0.0
    for le, count in hist:
        if count >= rank:
            if le == float("inf"):
                return lo  # beyond the last finite bound: report that bound
            return lo + (le - lo) * (rank - below) / max(count - below, 1e-12)
        lo, below = le, count
    return float("nan")


def within(hist: list[tuple[float, float]], bound: float) -> float:
    total = hist[-1][1] if hist else 0.0
    at = next((c for le, c in hist if le == bound), float("nan"))
    return at / total if total else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--store", default="rocksdb://")
    ap.add_argument("--bundle", type=Path, help="serve this bundle instead of building one")
    ap.add_argument("--out", type=Path, default=latency.OUT / "learning-lag.json")
    args = ap.parse_args()

    from recstream.kafka_admin import ensure_topics
    from recstream.localkafka import LocalKafka
    from recstream.settings import LocalKafkaSettings, Settings, TopicNames, default_cache_dir
    from tools.process import WorkerProcess, worker_env

    latency.OUT.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or latency.build_bundle(args.items, args.dim)
    cfg = LocalKafkaSettings(port=latency.free_port(), controller_port=latency.free_port())
    broker = LocalKafka(cfg, home=latency.OUT / f"kafka-{cfg.port}", cache_dir=default_cache_dir())
    broker.start()
    workers: list[WorkerProcess] = []
    try:
        run = uuid.uuid4().hex[:6]
        topics = TopicNames(**{k: f"{v}-{run}" for k, v in TopicNames().model_dump().items()})
        settings = Settings(bootstrap=broker.bootstrap, topics=topics)
        asyncio.run(ensure_topics(broker.bootstrap, topics.model_dump().values(),
                                  partitions=args.partitions))  # fmt: skip
        state = latency.OUT / f"state-{run}"
        for n in range(args.workers):
            port = latency.free_port()
            env = worker_env(
                settings.model_copy(update={"state_dir": state / f"w{n}"}),
                app_id=f"lag-{run}",
                web_port=port,
                bundle=bundle,
                store=args.store,
                extra={
                    "RECSTREAM_WORKER_PARTITIONS": str(args.partitions),
                    "RECSTREAM_WORKER_ONLINE_LEARNING": "true",
                },
            )
            workers.append(WorkerProcess(env, port, latency.OUT / f"lag-worker-{run}-{n}.log"))
        for w in workers:
            w.wait_ready(300)
        time.sleep(5.0)  # let the group settle: a rebalance mid-run replays events
        n = int(args.rate * args.duration)
        events = latency.workload(n, args.items, args.users, seed=0)
        result = asyncio.run(
            latency.run_rate(settings, workers[0], "learning", args.rate, args.duration, events)
        )
        time.sleep(3.0)  # the last clicks' states reach every worker
        rows: list[dict[str, Any]] = []
        for n_w, w in enumerate(workers):
            hist = lag_histogram(w)
            rows.append({
                "worker": n_w,
                "applied": hist[-1][1] if hist else 0.0,
                "within_1s": within(hist, 1.0),
                "p50_s": quantile(hist, 0.50),
                "p99_s": quantile(hist, 0.99),
                "histogram": hist,
            })  # fmt: skip
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    doc = {
        "command": " ".join(["PYTHONPATH=. python bench/learning_lag.py", *sys.argv[1:]]),
        "bundle": str(bundle),
        "rate": args.rate,
        "duration_s": args.duration,
        "workers": rows,
        "e2e": {
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "missing": result.missing,
            "input_rate": result.input_rate,
            "output_rate": result.output_rate,
        },
        "load_before": result.load_before,
        "load_after": result.load_after,
    }
    args.out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"{args.workers} workers, {args.rate:g} ev/s for {args.duration:g} s "
          f"(load {result.load_before:.1f} -> {result.load_after:.1f}); "
          f"e2e p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
          f"{result.missing} unanswered")  # fmt: skip
    for r in rows:
        print(f"  worker {r['worker']}: {r['applied']:.0f} learned states applied, "
              f"{100 * r['within_1s']:.2f} % within 1 s, lag p50 {r['p50_s'] * 1000:.0f} ms, "
              f"p99 {r['p99_s'] * 1000:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
