"""What the live feedback lookup costs the worker: CPU per event with it on vs off.

    PYTHONPATH=. python bench/canary_cost.py --pin            # 1,000 ev/s, 4 rounds of 20 s
    PYTHONPATH=. python bench/canary_cost.py --rate 1000 --rounds 4 --duration 20 --bundle PATH

Two workers serve the same bundle on one local Apache Kafka broker, each on its
own topics (RocksDB store, the shipped settings): ``on`` with the shipped
``RECSTREAM_WORKER_FEEDBACK=true`` and ``off`` with ``false``, the only
difference. Rounds alternate which worker is measured first (on/off, off/on, ...)
so a drift in the machine's load falls on both. In a measurement this process
offers the fixed ``--rate`` for ``--duration`` seconds: 80 % clicks, 20 % text
queries (the latency bench's mix), where a click is, with probability
``--hit-share``, on an item of the list the user was last sent (so the hit path,
rank histogram and reciprocal rank included, runs as well as the miss path), else
on a random item. The figure is the measured worker's CPU seconds (user + sys, its
``process_cpu_seconds_total``) per answered event; the other worker idles.

Target (issue 22): the feedback lookup adds no more than 5 % to the worker's CPU
per event at 1,000 ev/s: the ratio on / off of the per-round figures, paired by
round, and of their sums. ``--pin`` (Linux) puts both workers (every thread) on
``--worker-cpus`` and this process and the broker on ``--bench-cpus``
(``bench/pinning.py``). The catalog is the latency bench's 100k-item bundle
(``bench/latency.py``'s ``build_bundle``) unless ``--bundle`` names one. Writes
a JSON (``--out``) with every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import OUT, build_bundle, free_port, wait_idle, worker_cpu_seconds  # noqa: E402


def load1() -> float:
    return os.getloadavg()[0]


def feedback_total(worker: Any) -> dict[str, float]:
    """outcome -> recstream_online_feedback_total summed over labels, from /metrics."""
    out: dict[str, float] = {}
    for line in worker.get("/metrics")[1].decode().splitlines():
        if line.startswith("recstream_online_feedback_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def measure(settings: Any, worker: Any, args: argparse.Namespace, seed: int) -> dict:
    """Offer ``args.rate`` for ``args.duration`` s; the worker's CPU per answered event."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from inference.testing import GENRES

    topics = settings.topics
    rng = random.Random(seed)
    words = [w for ws in GENRES.values() for w in ws]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        topics.recommendations, bootstrap_servers=settings.bootstrap, group_id=None,
        auto_offset_reset="latest", fetch_max_wait_ms=100,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    await consumer.seek_to_end()
    last: dict[str, list[str]] = {}  # user -> item ids of the list last received
    pending: set[str] = set()
    run = uuid.uuid4().hex[:6]

    async def receive() -> None:
        async for msg in consumer:
            rec = json.loads(msg.value)
            pending.discard(rec["trigger_event_id"])
            last[rec["user_id"]] = [i["item_id"] for i in rec["items"]]

    reader = asyncio.create_task(receive())
    await asyncio.sleep(0.5)
    load_before = load1()
    cpu_before = await asyncio.to_thread(worker_cpu_seconds, worker)
    n = int(args.rate * args.duration)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / args.rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        user = f"cu{rng.randrange(args.users)}"
        eid = f"{run}-{i}"
        body: dict[str, Any]
        if rng.random() < 0.2:
            kind = "search_text"
            body = {"event_id": eid, "user_id": user, "text": " ".join(rng.sample(words, 2))}
        else:
            shown = last.get(user)
            if shown and rng.random() < args.hit_share:
                item = rng.choice(shown[:10])
            else:
                item = f"i{rng.randrange(args.items)}"
            kind = "user_events"
            body = {"event_id": eid, "user_id": user, "item_id": item, "type": "click"}
        body["ts"] = time.time()
        pending.add(eid)
        await producer.send(getattr(topics, kind), json.dumps(body).encode(), key=user.encode())
    await producer.flush()
    offered = n / (time.perf_counter() - start)
    grace = time.monotonic() + max(10.0, args.duration)
    while pending and time.monotonic() < grace:
        await asyncio.sleep(0.1)
    cpu_after = await asyncio.to_thread(worker_cpu_seconds, worker)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await consumer.stop()
    await producer.stop()
    answered = n - len(pending)
    return {
        "sent": n,
        "answered": answered,
        "offered_rate": offered,
        "cpu_s": cpu_after - cpu_before,
        "cpu_ms_per_event": (cpu_after - cpu_before) * 1000.0 / max(answered, 1),
        "load_before": load_before,
        "load_after": load1(),
    }


def micro(calls: int, users: int, hit_share: float, seed: int = 0) -> dict[str, float]:
    """In-process: µs per answered event of ``LiveFeedback.observe`` (what the worker
    adds per answer), on and off, over the same mix as the end-to-end run."""
    from stream.feedback import LiveFeedback, Shown
    from stream.metrics import WorkerMetrics

    rng = random.Random(seed)
    lists = [tuple(f"i{rng.randrange(100_000)}" for _ in range(10)) for _ in range(512)]
    plan = []
    for i in range(calls):
        user = f"cu{rng.randrange(users)}"
        shown = Shown(float(i), lists[i % len(lists)], "v1", "control")
        if rng.random() < 0.2:
            clicked = None
        elif rng.random() < hit_share:
            clicked = lists[(i - 1) % len(lists)][rng.randrange(10)]
        else:
            clicked = f"i{rng.randrange(100_000)}"
        plan.append((user, clicked, float(i) + 0.5, shown))
    out = {}
    for enabled in (True, False):
        best = float("inf")
        for _ in range(3):  # the least disturbed of three passes
            fb = LiveFeedback(WorkerMetrics(), k=10, per_user=4, max_users=100_000,
                              enabled=enabled)  # fmt: skip
            t0 = time.process_time()
            for user, clicked, ts, shown in plan:
                if fb.enabled:  # as Worker.handle_batch does
                    fb.observe(user, clicked, ts, shown)
            best = min(best, time.process_time() - t0)
        out["on" if enabled else "off"] = best * 1e6 / calls
    return out


def main() -> int:
    from tools.process import exit_on_sigterm

    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered events/s (1000)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measurement (20)")
    ap.add_argument("--rounds", type=int, default=4, help="measurements per worker (4)")
    ap.add_argument("--hit-share", type=float, default=0.3, help="clicks on the last list (0.3)")
    ap.add_argument("--users", type=int, default=1000, help="distinct users (1000)")
    ap.add_argument("--items", type=int, default=100_000, help="catalog of the built bundle")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bundle", type=Path, help="serve this bundle instead of building one")
    ap.add_argument("--pin", action="store_true", help="workers alone on --worker-cpus")
    ap.add_argument("--worker-cpus", default="1")
    ap.add_argument("--bench-cpus", default="0")
    ap.add_argument("--out", type=Path, default=OUT / "canary_cost.json")
    ap.add_argument(
        "--micro-only", action="store_true",
        help="only the in-process timing of the lookup (no broker, no worker)",
    )  # fmt: skip
    args = ap.parse_args()
    micro_us = micro(200_000, args.users, args.hit_share)
    print(f"in process: LiveFeedback.observe {micro_us['on']:.2f} µs per answered event "
          f"(switched off: {micro_us['off']:.3f} µs)", flush=True)  # fmt: skip
    if args.micro_only:
        return 0

    from recstream.kafka_admin import ensure_topics
    from recstream.localkafka import LocalKafka
    from recstream.settings import LocalKafkaSettings, Settings, TopicNames, default_cache_dir
    from tools.process import WorkerProcess, worker_env

    pin = None
    if args.pin:
        from bench import pinning

        worker_cpus = pinning.parse_cpus(args.worker_cpus)
        bench_cpus = pinning.parse_cpus(args.bench_cpus)
        if worker_cpus & bench_cpus:
            ap.error("--worker-cpus and --bench-cpus overlap")
        pinning.pin_process(os.getpid(), bench_cpus)  # the broker inherits it
        pin = (pinning, worker_cpus)
    OUT.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or build_bundle(args.items, 384)
    cfg = LocalKafkaSettings(port=free_port(), controller_port=free_port())
    broker = LocalKafka(cfg, home=OUT / f"kafka-{cfg.port}", cache_dir=default_cache_dir())
    workers: dict[str, tuple[Any, Any]] = {}
    pinners: list[Any] = []
    rounds: list[dict[str, Any]] = []
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        broker.start()
        for mode in ("on", "off"):
            suffix = uuid.uuid4().hex[:8]
            topics = TopicNames(
                **{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()}
            )
            settings = Settings(bootstrap=broker.bootstrap, topics=topics, state_dir=OUT / "state")
            asyncio.run(
                ensure_topics(
                    broker.bootstrap, topics.model_dump().values(), partitions=args.partitions
                )
            )
            port = free_port()
            extra = {
                "RECSTREAM_WORKER_PARTITIONS": str(args.partitions),
                "RECSTREAM_WORKER_FEEDBACK": "true" if mode == "on" else "false",
            }
            env = worker_env(settings, app_id=f"cost-{mode}-{suffix}", web_port=port,
                             bundle=bundle, store="rocksdb://", extra=extra)  # fmt: skip
            if pin is not None:
                with pin[0].spawning_on(pin[1]):
                    worker = WorkerProcess(env, port, OUT / f"worker-cost-{mode}.log")
                pinners.append(pin[0].Pinner(worker.proc.pid, pin[1]))
            else:
                worker = WorkerProcess(env, port, OUT / f"worker-cost-{mode}.log")
            workers[mode] = (worker, settings)
        for mode, (worker, settings) in workers.items():
            state = worker.wait_ready(600)
            print(f"[{mode}] ready: model {state['model_version']}", flush=True)
            args_warm = argparse.Namespace(**{**vars(args), "rate": 200.0, "duration": 5.0})
            asyncio.run(measure(settings, worker, args_warm, seed=0))  # warm-up
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            row: dict[str, Any] = {"round": r, "order": "/".join(order)}
            for mode in order:
                worker, settings = workers[mode]
                wait_idle(worker)
                m = asyncio.run(measure(settings, worker, args, seed=1000 * (r + 1)))
                row[mode] = m
                print(f"round {r} [{mode:3}] {m['cpu_ms_per_event']:.4f} ms CPU/event, "
                      f"{m['answered']}/{m['sent']} answered, offered {m['offered_rate']:.0f} "
                      f"ev/s, load {m['load_after']:.1f}", flush=True)  # fmt: skip
            row["ratio"] = row["on"]["cpu_ms_per_event"] / row["off"]["cpu_ms_per_event"]
            rounds.append(row)
        judged = feedback_total(workers["on"][0])
        judged_off = feedback_total(workers["off"][0])
    finally:
        for p in pinners:
            p.stop()
        for worker, _ in workers.values():
            worker.stop()
        broker.stop()

    ratios = np.array([row["ratio"] for row in rounds])
    on = sum(row["on"]["cpu_s"] for row in rounds) / sum(row["on"]["answered"] for row in rounds)
    off = sum(row["off"]["cpu_s"] for row in rounds) / sum(row["off"]["answered"] for row in rounds)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "PYTHONPATH=. python bench/canary_cost.py " + " ".join(sys.argv[1:]),
        "bundle": str(bundle),
        "pinned": bool(args.pin),
        "load_start": load_start,
        "load_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "rounds": rounds,
        "cpu_ms_per_event_on": on * 1000.0,
        "cpu_ms_per_event_off": off * 1000.0,
        "ratio_of_sums": on / off,
        "ratio_per_round_median": float(np.median(ratios)),
        "ratio_per_round_min": float(ratios.min()),
        "ratio_per_round_max": float(ratios.max()),
        "micro_us_per_event": micro_us,
        "feedback_on": judged,
        "feedback_off": judged_off,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nfeedback on: {result['cpu_ms_per_event_on']:.4f} ms CPU/event, off: "
          f"{result['cpu_ms_per_event_off']:.4f}; on/off {result['ratio_of_sums']:.3f} (per round "
          f"median {result['ratio_per_round_median']:.3f}, {result['ratio_per_round_min']:.3f}-"
          f"{result['ratio_per_round_max']:.3f}); target <= 1.05")  # fmt: skip
    print(f"clicks judged by the 'on' worker: {judged}; by the 'off' worker: {judged_off or 0}")
    print(f"load average {result['load_start']} -> {result['load_end']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
