"""Soak benchmark: a real worker under steady load for N minutes.

Starts its own Apache Kafka broker (or uses ``--bootstrap``), one ``recstream
worker`` process on a bundle (a tiny real one is built unless ``--bundle``),
and sends ``--rate`` events per second (``--hostile-share`` of them adversarial)
for ``--minutes``. Every ``--interval`` seconds it prints the worker's RSS, its
consumer lag in offsets and in seconds behind (the oldest unprocessed record's age,
both from its /metrics) and the p50/p99 event→recommendation latency
of that interval; at the end, RSS growth after warm-up and the delivery
accounting (sent, answered, lost, dead-lettered). Not a test: it prints figures.

    PYTHONPATH=. python bench/soak.py --minutes 3 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer

from recstream.kafka_admin import client_kwargs, ensure_topics
from recstream.localkafka import LocalKafka
from recstream.settings import (
    LocalKafkaSettings,
    Settings,
    TopicNames,
    default_cache_dir,
)
from tests.integration.reliability.accounting import account
from tests.integration.reliability.hostile import EVENTS, hostile_messages
from tests.integration.reliability.kafkaio import producer, read_topic
from tools.process import exit_on_sigterm


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lag(worker: Any) -> tuple[float, float]:
    """(offset lag summed over partitions, seconds behind: the worst partition's
    oldest unprocessed record age, ``recstream_consumer_lag_seconds``)."""
    try:
        text = worker.get("/metrics")[1].decode()
    except OSError:
        return float("nan"), float("nan")
    offsets = sum(float(v) for v in re.findall(r"recstream_consumer_lag\{[^}]*\} (\S+)", text))
    ages = [float(v) for v in re.findall(r"recstream_consumer_lag_seconds\{[^}]*\} (\S+)", text)]
    return offsets, max(ages, default=float("nan"))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Soak:
    def __init__(self, args: argparse.Namespace, settings: Settings, worker: Any) -> None:
        self.args = args
        self.settings = settings
        self.worker = worker
        self.sent: list[str] = []
        self.bad: dict[tuple[str, int, int], str | None] = {}
        self.window: list[float] = []  # latencies (s) of the current interval
        self.recs: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    async def produce(self) -> None:
        a, rng = self.args, random.Random(1)
        hostile = iter(hostile_messages(10**9, seed=3))
        p = producer(self.settings.bootstrap, self.settings.security)
        await p.start()
        pending: list[tuple[Any, Any]] = []
        t0, i = time.monotonic(), 0
        try:
            while time.monotonic() - t0 < a.minutes * 60:
                if rng.random() < a.hostile_share:
                    h = next(hostile)
                    topic = self.settings.topics.user_events
                    if h.topic != EVENTS:
                        topic = self.settings.topics.search_text
                    pending.append((h, await p.send(topic, key=h.key, value=h.value)))
                else:
                    user = f"u{rng.randrange(a.users)}"
                    body = {"event_id": f"s{i}", "user_id": user, "ts": time.time(),
                            "item_id": f"i{rng.randrange(a.items)}", "type": "click"}  # fmt: skip
                    self.sent.append(body["event_id"])
                    value = json.dumps(body).encode()
                    await p.send(self.settings.topics.user_events, key=user.encode(), value=value)
                i += 1
                await asyncio.sleep(max(0.0, t0 + i / a.rate - time.monotonic()))
            await p.flush()
            for h, fut in pending:
                meta = await fut
                if h.reason is None:
                    self.sent.append(str(h.event_id))
                else:
                    self.bad[(meta.topic, meta.partition, meta.offset)] = h.reason
        finally:
            await p.stop()
            self.done.set()

    async def consume(self) -> None:
        c = AIOKafkaConsumer(
            self.settings.topics.recommendations,
            **client_kwargs(self.settings.bootstrap, self.settings.security),
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await c.start()
        try:
            while True:
                batch = await c.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        rec = json.loads(r.value)
                        self.recs.append({"trigger_event_id": rec["trigger_event_id"]})
                        self.window.append(rec["emitted_ts"] - rec["event_ts"])
        finally:
            await c.stop()

    async def report(self) -> list[tuple[float, float, float, float, float]]:
        rows: list[tuple[float, float, float, float, float]] = []
        print(f"{'t (s)':>6} {'RSS MB':>8} {'lag':>8} {'behind s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'answers':>8}")  # fmt: skip
        t0 = time.monotonic()
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):  # an interval passed
                await asyncio.wait_for(self.done.wait(), self.args.interval)
            lat, self.window = self.window, []
            offsets, behind = lag(self.worker)
            row = (rss_mb(self.worker.proc.pid), offsets, pct(lat, 0.5), pct(lat, 0.99), behind)
            rows.append(row)
            t, ms = time.monotonic() - t0, (row[2] * 1000, row[3] * 1000)
            print(f"{t:6.0f} {row[0]:8.1f} {row[1]:8.0f} {behind:8.1f} {ms[0]:8.1f} {ms[1]:8.1f} "
                  f"{len(lat):8d}", flush=True)  # fmt: skip
        return rows


async def run(args: argparse.Namespace, settings: Settings, worker: Any) -> int:
    soak = Soak(args, settings, worker)
    consumer = asyncio.create_task(soak.consume())
    rows, _ = await asyncio.gather(soak.report(), soak.produce())
    deadline = time.monotonic() + 60  # let the worker finish the backlog
    want = set(soak.sent)
    while time.monotonic() < deadline and not want <= {r["trigger_event_id"] for r in soak.recs}:
        await asyncio.sleep(1)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    dlq = await read_topic(settings.bootstrap, settings.topics.dlq, security=settings.security)
    report = account(
        soak.sent, soak.recs, bad_sent=soak.bad, dlq=[json.loads(r.value) for r in dlq]
    )
    warm = rows[min(len(rows) - 1, args.warmup_intervals)]
    growth = (rows[-1][0] - warm[0]) / warm[0] * 100
    p99s = [r[3] * 1000 for r in rows[args.warmup_intervals :]]
    print(f"\nRSS after warm-up {warm[0]:.1f} MB → end {rows[-1][0]:.1f} MB ({growth:+.1f}%)")
    print(f"lag at end of each interval: {[int(r[1]) for r in rows]}")
    print(f"seconds behind at end of each interval: {[round(r[4], 1) for r in rows]}")
    print(f"p99 per interval after warm-up (ms): min {min(p99s):.1f}, max {max(p99s):.1f}")
    print(f"accounting: {report.summary()}")
    return 0 if report.ok else 1


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to send (default 30)")
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    ap.add_argument("--users", type=int, default=5000, help="distinct users (default 5000)")
    ap.add_argument("--hostile-share", type=float, default=0.0, help="fraction adversarial")
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per printed row")
    ap.add_argument("--warmup-intervals", type=int, default=1, help="rows before RSS baseline")
    ap.add_argument("--bootstrap", help="an existing broker (default: start one)")
    ap.add_argument("--bundle", type=Path, help="bundle dir or root (default: a tiny real one)")
    ap.add_argument(
        "--items",
        type=int,
        default=10_000,
        help="catalog size of the built bundle; clicks draw item ids i0..i<N-1> (default 10000:"
        " with 200, users soon consume half the catalog and every request needs a retry search)",
    )
    ap.add_argument(
        "--store", default="rocksdb://", help="worker table store (default: the production one)"
    )
    args = ap.parse_args()

    from tools.process import WorkerProcess, worker_env

    tmp = Path(tempfile.mkdtemp(prefix="recstream-soak-"))
    broker = None
    if not args.bootstrap:
        broker = LocalKafka(
            LocalKafkaSettings(port=free_port(), controller_port=free_port()),
            tmp / "kafka", Path(os.environ.get("RECSTREAM_CACHE_DIR") or default_cache_dir()),
        )  # fmt: skip
        broker.start()
    bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()})
    settings = Settings(bootstrap=bootstrap, topics=topics, state_dir=tmp / "state")
    asyncio.run(ensure_topics(bootstrap, topics.model_dump().values(), partitions=4))
    bundle = args.bundle
    if bundle is None:
        from inference.testing import build_tiny_bundle

        bundle = tmp / "bundles"
        build_tiny_bundle(bundle, n_items=args.items, dim=32, version="tiny-1")
    port = free_port()
    env = worker_env(
        settings, app_id=f"soak-{suffix}", web_port=port, bundle=bundle, store=args.store
    )
    worker = WorkerProcess(env, port, tmp / "worker.log")
    try:
        worker.wait_ready(180)
        print(f"worker pid {worker.proc.pid} ready; {args.rate:.0f} ev/s for {args.minutes} min, "
              f"hostile share {args.hostile_share}")  # fmt: skip
        return asyncio.run(run(args, settings, worker))
    finally:
        worker.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # broker data, worker log and state


if __name__ == "__main__":
    raise SystemExit(main())
