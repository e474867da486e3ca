"""Soak benchmark: a real worker under steady load for N minutes.

Starts its own Apache Kafka broker (or uses ``--bootstrap``), one ``recstream
worker`` process on a bundle (a tiny real one is built unless ``--bundle``),
and sends ``--rate`` events per second (``--hostile-share`` of them adversarial)
for ``--minutes``. Every ``--interval`` seconds it prints the worker's RSS, its
consumer lag in offsets and in seconds behind (the oldest unprocessed record's age,
both from its /metrics) and the p50/p99 event→recommendation latency
of that interval; at the end, RSS growth after warm-up and the delivery
accounting (sent, answered, lost, dead-lettered). Not a test: it prints figures.

Each row also says where a backlog comes from, since the three parties share the
machine's cores: the mean recommend batch size (``recstream_batch_size``); the
1-minute load average; the CPU share over the interval of the worker's main (event
loop) thread, of its other threads (RocksDB's background compaction and flushes,
the index maintenance thread) and of the broker and this bench process; how far the
load generator ran behind its schedule, and how late this process read the answers
(so a slow bench is not taken for a slow worker).
Topics are created as the worker deploys them (``stream.topics``).

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

from recstream.kafka_admin import client_kwargs
from recstream.localkafka import LocalKafka
from recstream.settings import (
    LocalKafkaSettings,
    Settings,
    TopicNames,
    default_cache_dir,
)
from stream.settings import WorkerSettings
from stream.topics import ensure_worker_topics
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


def _sample(text: str, series: str) -> float:
    match = re.search(re.escape(series) + r" (\S+)", text)
    return float(match.group(1)) if match else float("nan")


def lag(worker: Any) -> tuple[float, float, float, float]:
    """(offset lag summed over partitions, seconds behind: the worst partition's
    oldest unprocessed record age, ``recstream_consumer_lag_seconds``; and the
    recommend agent's batch-size histogram's sum and count so far)."""
    try:
        text = worker.get("/metrics")[1].decode()
    except OSError:
        return float("nan"), float("nan"), float("nan"), float("nan")
    offsets = sum(float(v) for v in re.findall(r"recstream_consumer_lag\{[^}]*\} (\S+)", text))
    ages = [float(v) for v in re.findall(r"recstream_consumer_lag_seconds\{[^}]*\} (\S+)", text)]
    batch = [
        _sample(text, f'recstream_batch_size_{k}{{agent="recommend"}}') for k in ("sum", "count")
    ]
    return offsets, max(ages, default=float("nan")), batch[0], batch[1]


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(stat_file: Path) -> float:
    try:
        stat = stat_file.read_text()
    except OSError:  # gone
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def thread_cpu(pid: int | None) -> tuple[float, float]:
    """(CPU seconds of ``pid``'s main thread, of all its other threads, ended ones too)."""
    if pid is None:
        return 0.0, 0.0
    main = _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
    return main, max(0.0, _cpu_seconds(Path(f"/proc/{pid}/stat")) - main)


class CpuShares:
    """Per-interval CPU shares (% of one core) of the worker's main thread, its other
    threads, the broker and this process."""

    def __init__(self, worker_pid: int, broker_pid: int | None) -> None:
        self.pids = worker_pid, broker_pid
        self.last = self._sample()

    def _sample(self) -> tuple[float, ...]:
        w_main, w_other = thread_cpu(self.pids[0])
        broker = sum(thread_cpu(self.pids[1]))
        return time.monotonic(), w_main, w_other, broker, time.process_time()

    def interval(self) -> tuple[float, float, float, float]:
        now = self._sample()
        wall = max(now[0] - self.last[0], 1e-9)
        shares = tuple(100 * (b - a) / wall for a, b in zip(self.last[1:], now[1:], strict=True))
        self.last = now
        return shares  # type: ignore[return-value]


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
        # trigger ids of the answers, as strings: 1.8 M dicts would give this process's
        # garbage collector ever longer full passes late in a long run
        self.answered: list[str] = []
        self.read_late: list[float] = []  # read time - emitted_ts of this interval
        self.behind_schedule = 0.0  # the generator's worst lag behind its plan, this interval
        self.sent_in_interval = 0
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
                    event_id = f"s{i}"
                    body = {"event_id": event_id, "user_id": user, "ts": time.time(),
                            "item_id": f"i{rng.randrange(a.items)}", "type": "click"}  # fmt: skip
                    self.sent.append(event_id)
                    value = json.dumps(body).encode()
                    await p.send(self.settings.topics.user_events, key=user.encode(), value=value)
                    self.sent_in_interval += 1
                i += 1
                ahead = t0 + i / a.rate - time.monotonic()
                self.behind_schedule = max(self.behind_schedule, -ahead)
                await asyncio.sleep(max(0.0, ahead))
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
                now = time.time()
                for records in batch.values():
                    for r in records:
                        rec = json.loads(r.value)
                        self.answered.append(rec["trigger_event_id"])
                        self.window.append(rec["emitted_ts"] - rec["event_ts"])
                        self.read_late.append(now - rec["emitted_ts"])
        finally:
            await c.stop()

    async def report(self, cpu: CpuShares) -> list[dict[str, float]]:
        rows: list[dict[str, float]] = []
        print(f"{'t (s)':>6} {'RSS MB':>7} {'lag':>6} {'behind s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'answers':>7} {'sent':>7} {'load1':>5} {'w-loop%':>7} {'w-bg%':>5} "
              f"{'broker%':>7} {'bench%':>6} {'gen late s':>10} {'read late s':>11} "
              f"{'batch':>5}")  # fmt: skip
        t0, batches = time.monotonic(), (0.0, 0.0)
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):  # an interval passed
                await asyncio.wait_for(self.done.wait(), self.args.interval)
            lat, self.window = self.window, []
            late, self.read_late = self.read_late, []
            sent, self.sent_in_interval = self.sent_in_interval, 0
            gen_late, self.behind_schedule = self.behind_schedule, 0.0
            offsets, behind, b_sum, b_count = lag(self.worker)
            # mean events per recommend batch in this interval (small under a backlog:
            # the per-batch costs are then paid per few events)
            batch = (b_sum - batches[0]) / max(b_count - batches[1], 1.0)
            batches = b_sum, b_count
            w_loop, w_bg, broker, bench = cpu.interval()
            row = {
                "t": time.monotonic() - t0, "rss": rss_mb(self.worker.proc.pid), "lag": offsets,
                "behind": behind, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                "answers": len(lat), "sent": sent, "load1": os.getloadavg()[0],
                "w_loop": w_loop, "w_bg": w_bg, "broker": broker, "bench": bench,
                "gen_late": gen_late, "read_late": (read_late := pct(late, 0.99)), "batch": batch,
            }  # fmt: skip
            rows.append(row)
            print(f"{row['t']:6.0f} {row['rss']:7.1f} {offsets:6.0f} {behind:8.1f} "
                  f"{row['p50'] * 1000:7.1f} {row['p99'] * 1000:7.1f} {len(lat):7d} {sent:7d} "
                  f"{row['load1']:5.1f} {w_loop:7.0f} {w_bg:5.0f} {broker:7.0f} {bench:6.0f} "
                  f"{gen_late:10.2f} {read_late:11.2f} {batch:5.1f}", flush=True)  # fmt: skip
        return rows


async def run(args: argparse.Namespace, settings: Settings, worker: Any, cpu: CpuShares) -> int:
    soak = Soak(args, settings, worker)
    consumer = asyncio.create_task(soak.consume())
    rows, _ = await asyncio.gather(soak.report(cpu), soak.produce())
    deadline = time.monotonic() + 60  # let the worker finish the backlog
    want, seen, counted = set(soak.sent), set(), 0
    while time.monotonic() < deadline:
        seen.update(soak.answered[counted:])
        counted = len(soak.answered)
        if want <= seen:
            break
        await asyncio.sleep(1)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    dlq = await read_topic(settings.bootstrap, settings.topics.dlq, security=settings.security)
    recs = [{"trigger_event_id": t} for t in soak.answered]
    report = account(soak.sent, recs, bad_sent=soak.bad, dlq=[json.loads(r.value) for r in dlq])
    warm = rows[min(len(rows) - 1, args.warmup_intervals)]
    growth = (rows[-1]["rss"] - warm["rss"]) / warm["rss"] * 100
    p99s = [r["p99"] * 1000 for r in rows[args.warmup_intervals :]]
    rss = warm["rss"], rows[-1]["rss"]
    print(f"\nRSS after warm-up {rss[0]:.1f} MB → end {rss[1]:.1f} MB ({growth:+.1f}%)")
    print(f"lag at end of each interval: {[int(r['lag']) for r in rows]}")
    print(f"seconds behind at end of each interval: {[round(r['behind'], 1) for r in rows]}")
    print(f"p99 per interval after warm-up (ms): min {min(p99s):.1f}, max {max(p99s):.1f}")
    print(f"accounting: {report.summary()}")
    if args.json:
        doc = {"args": vars(args), "rows": rows, "summary": report.summary()}
        args.json.write_text(json.dumps(doc, default=str))
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
    ap.add_argument("--json", type=Path, help="also write every row and the summary here")
    ap.add_argument("--keep-log", type=Path, help="copy the worker's log here at the end")
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
    app_id = f"soak-{suffix}"
    # every topic as a deployment makes it (partitions, compaction, changelogs)
    asyncio.run(ensure_worker_topics(settings, WorkerSettings(app_id=app_id)))
    bundle = args.bundle
    if bundle is None:
        from inference.testing import build_tiny_bundle

        bundle = tmp / "bundles"
        build_tiny_bundle(bundle, n_items=args.items, dim=32, version="tiny-1")
    port = free_port()
    env = worker_env(settings, app_id=app_id, web_port=port, bundle=bundle, store=args.store)
    worker = WorkerProcess(env, port, tmp / "worker.log")
    try:
        worker.wait_ready(180)
        print(f"worker pid {worker.proc.pid} ready; {args.rate:.0f} ev/s for {args.minutes} min, "
              f"hostile share {args.hostile_share}")  # fmt: skip
        cpu = CpuShares(worker.proc.pid, broker.pid() if broker is not None else None)
        return asyncio.run(run(args, settings, worker, cpu))
    finally:
        worker.stop()
        if args.keep_log:
            shutil.copyfile(tmp / "worker.log", args.keep_log)
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # broker data, worker log and state


if __name__ == "__main__":
    raise SystemExit(main())
