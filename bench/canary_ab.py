"""Live evaluation on a real worker: consistency of the three measurements, and sensitivity.

    PYTHONPATH=. python bench/canary_ab.py --control Q --candidate D [--share 0.5] [--rate 100]

Both bundles must be ``recstream train --split temporal`` bundles of one dataset cut at
the same T. The bench starts a local Apache Kafka, a real Prometheus (the shipped
rules) and one real worker (RocksDB store, the shipped settings) with ``CURRENT`` =
control and ``CANDIDATE`` = candidate at ``--share``, then:

1. **warm-up**: each replayed user's last 100 interactions before T (what the
   worker's state holds at T), at ``--warmup-rate``; every event answered before
   going on;
2. **test period**: each user's first ``--per-user`` interactions from T on, as
   ``click`` events at the fixed ``--rate`` (``ts`` = send time), in time order
   except that one user's events are at least ``--user-gap-s`` apart (``spaced``:
   ml-100k users rate in bursts, and a click sent before the worker could answer the
   user's previous one is judged against an older list than the offline figure's);
   an item new since T is published on ``item-updates`` just before its first
   click, as the prequential protocol does;
3. three HR@10 / MRR@10 figures per bucket over exactly the test-period clicks:
   - **Prometheus**: ``recstream_online_feedback_*`` counters scraped by the real
     Prometheus, final minus the values at the end of the warm-up;
   - **ab report**: ``tools.ab_report`` over the topics, ``--from``/``--to`` = the
     test period (the code behind ``recstream ab report``), keeping the worker's
     lists per user (``RECSTREAM_WORKER_FEEDBACK_LISTS_PER_USER``): the same rule
     and bounded memory as the worker (``stream.feedback``), so it counts the same
     outcomes as Prometheus by construction;
   - **offline**: the same events through the serving core without Kafka
     (``tools.prequential``, static: each event ranked from the user's state just
     before it, its user's bucket choosing the bundle), i.e. the list the user's
     previous event would have been answered with if the worker never lagged.
     Two figures: over every event whose user had an earlier event (``offline``),
     and over exactly the clicks the report judged (``offline, same clicks``: a
     click the worker judged against an older list than the previous event's, or
     could not judge at all because it lagged, is in the first and not the second).

Targets (issue 22): Prometheus vs ab report within 2 % relative per bucket, either
vs offline within 10 %; with a ``--quick`` control and a default candidate at 50/50,
the report's interval for canary - control excludes zero. Prints a table and a JSON
document (``--out``), and the report's PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recstream.kafka_admin import ensure_topics  # noqa: E402
from recstream.localkafka import LocalKafka  # noqa: E402
from recstream.settings import LocalKafkaSettings, Settings, TopicNames, default_cache_dir  # noqa: E402
from stream.buckets import Buckets  # noqa: E402
from tools.process import WorkerProcess, exit_on_sigterm, worker_env  # noqa: E402
from tools.stream_replay import build_replay  # noqa: E402

SALT = "recstream"
K = 10


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


class Answers:
    """Follows ``recommendations`` (no group) and counts answered trigger ids."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: set[str] = set()
        self.duplicates = 0
        self.lag: dict[str, float] = {}  # trigger id -> emitted_ts - event_ts (s)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.settings.topics.recommendations,
            bootstrap_servers=self.settings.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            async for msg in consumer:
                rec = json.loads(msg.value)
                tid = rec["trigger_event_id"]
                if tid in self.seen:
                    self.duplicates += 1
                self.seen.add(tid)
                self.lag[tid] = rec["emitted_ts"] - rec["event_ts"]
        finally:
            await consumer.stop()

    async def wait_for(self, ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ids <= self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - self.seen)} events unanswered after {timeout_s} s")
            await asyncio.sleep(0.2)


async def publish(settings: Settings, planned: list[tuple[str, str, dict[str, Any], int]],
                  rate: float, desc: str) -> tuple[float, float]:  # fmt: skip
    """Send (topic kind, key, value-without-ts, slot): a user event at ``start + slot /
    rate``, anything else right before the next one; ts = send time. (t_first, t_last)."""
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    t_first = t_last = 0.0
    try:
        start = time.perf_counter()
        for kind, key, body, slot in tqdm(planned, desc=desc, unit="ev", mininterval=2.0):
            if kind == "user_events":
                due = start + slot / rate
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
            ts = time.time()
            t_first = t_first or ts
            t_last = ts
            value = {**body, "ts": ts}
            await producer.send(
                getattr(settings.topics, kind), json.dumps(value).encode(), key=key.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    return t_first, t_last


def spaced(events: list[Any], gap: int) -> list[tuple[int, Any]]:
    """(slot, event) in time order as far as this allows: each user's events keep their
    order and are at least ``gap`` slots apart (an idle slot where nobody may send).

    A replay compresses months into minutes; ml-100k users rate in bursts, so adjacent
    events of one user would come milliseconds apart, before the worker's answer to
    the first could be emitted, and a click would be judged against an older list
    than the state before it (the offline figure's). Real users wait for their list.
    """
    queues: dict[str, deque[int]] = defaultdict(deque)
    for i, e in enumerate(events):
        queues[e.user_id].append(i)
    ready = [(q[0], u) for u, q in queues.items()]
    heapq.heapify(ready)
    waiting: list[tuple[int, int, str]] = []  # (allowed slot, head index, user)
    out: list[tuple[int, Any]] = []
    slot = 0
    while ready or waiting:
        while waiting and waiting[0][0] <= slot:
            _, head, user = heapq.heappop(waiting)
            heapq.heappush(ready, (head, user))
        if not ready:
            slot = waiting[0][0]
            continue
        head, user = heapq.heappop(ready)
        out.append((slot, events[head]))
        queue = queues[user]
        queue.popleft()
        if queue:
            heapq.heappush(waiting, (slot + gap, queue[0], user))
        slot += 1
    return out


def feedback_counts(prom: Any) -> dict[tuple[str, str], float]:
    """(bucket, outcome) -> counter value, and (bucket, "rr") -> sum of 1/rank, now."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for s in prom.query("sum by (bucket, outcome) (recstream_online_feedback_total)"):
        out[(s["metric"]["bucket"], s["metric"]["outcome"])] = float(s["value"][1])
    for s in prom.query("sum by (bucket) (recstream_online_feedback_reciprocal_rank_total)"):
        out[(s["metric"]["bucket"], "rr")] = float(s["value"][1])
    return out


def offline(args: argparse.Namespace, ds: Any, replay: Any, assign: Buckets, n_events: int,
            live_ids: set[str], run_id: str) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per bucket: HR@10 / MRR@10 of the static prequential ranks of its bundle over the
    replayed events of its users whose user had an earlier event (``name``), and over
    the events whose click the live report judged (``name + "/same"``; ``live_ids``:
    their event ids, ``{run_id}-t{index}``).

    Each bundle replays only its bucket's users (a static ranking depends on the user's
    own state only), so the work is halved; the one difference from the live run is
    that a new item reaches the catalog at its first click by a user of the same
    bucket rather than of either.
    """
    from datetime import datetime

    from inference.recommender import OnnxRecommender
    from inference.settings import InferenceSettings
    from tools.prequential import prequential_ranks
    from tools.stream_eval import dataset_popularity_scale
    from tools.stream_rankers import ServingRanker

    out = {}
    for name, bundle in (("control", args.control), ("canary", args.candidate)):
        sub = dataclasses.replace(
            replay,
            history=[e for e in replay.history if assign.of(e.user_id) == name],
            events=[e for e in replay.events[:n_events] if assign.of(e.user_id) == name],
        )
        seen = {e.user_id for e in sub.history}
        judged = np.zeros(len(sub.events), dtype=bool)  # the user had an earlier event
        for i, e in enumerate(sub.events):
            judged[i] = e.user_id in seen
            seen.add(e.user_id)
        manifest = json.loads((bundle / "manifest.json").read_text())
        created = datetime.fromisoformat(str(manifest["created_at"]).replace("Z", "+00:00"))
        rec = OnnxRecommender.load(bundle, InferenceSettings())
        if rec.popularity_scale is None:  # a bundle written before the manifest said
            rec.popularity_scale = dataset_popularity_scale(ds, replay.split_time)
        ranker = ServingRanker(rec, sub, created_ts=created.timestamp(), online=None, k=K)
        all_ranks = prequential_ranks(sub, ranker, k=K, desc=f"offline {name}")
        rec.close()
        same = np.array([f"{run_id}-t{e.index}" in live_ids for e in sub.events], dtype=bool)
        for key, mask in ((name, judged), (f"{name}/same", same)):
            ranks = all_ranks[mask]
            hit = ranks < K
            rr = np.where(hit, 1.0 / (ranks + 1.0), 0.0)
            out[key] = {"clicks": len(ranks), "hr": float(hit.mean()), "mrr": float(rr.mean())}
    return out


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("inf")


async def live(args: argparse.Namespace, settings: Settings, replay: Any, worker: Any,
               prom: Any, n_events: int) -> dict[str, Any]:  # fmt: skip
    answers = Answers(settings)
    follow = asyncio.create_task(answers.run())
    try:
        # 1. warm-up: each user's last 100 events before T (the state a worker holds at T)
        # (only the users of the replayed events: a static ranking reads its own user's state)
        replayed = {e.user_id for e in replay.events[:n_events]}
        by_user: dict[str, list[Any]] = defaultdict(list)
        for e in replay.history:
            if e.user_id in replayed:
                by_user[e.user_id].append(e)
        keep = {id(e) for evs in by_user.values() for e in evs[-100:]}
        run = uuid.uuid4().hex[:6]
        warm = [
            ("user_events", e.user_id, {"event_id": f"{run}-w{e.index}", "user_id": e.user_id,
                                        "item_id": e.item_id, "type": "click"}, slot)
            for slot, e in enumerate(e for e in replay.history if id(e) in keep)
        ]  # fmt: skip
        await publish(settings, warm, args.warmup_rate, "warm-up")
        await answers.wait_for({b["event_id"] for _, _, b, _ in warm}, timeout_s=1800)
        await asyncio.sleep(4.0)  # scraped after the last warm-up answer
        before = feedback_counts(prom)
        # 2. the test period at a fixed rate, new items announced before their first click
        test: list[tuple[str, str, dict[str, Any], int]] = []
        published: set[str] = set()
        gap = max(1, round(args.user_gap_s * args.rate))
        for slot, e in spaced(replay.events[:n_events], gap):
            new = replay.new_items.get(e.item_id)
            if new is not None and e.item_id not in published:
                published.add(e.item_id)
                test.append(("item_updates", e.item_id, {"item_id": e.item_id, "op": "upsert",
                             "title": new.title, "text": new.text,
                             "attributes": new.attributes}, slot))  # fmt: skip
            body = {"event_id": f"{run}-t{e.index}", "user_id": e.user_id,
                    "item_id": e.item_id, "type": "click"}  # fmt: skip
            test.append(("user_events", e.user_id, body, slot))
        t_start, t_end = await publish(settings, test, args.rate, "test period")
        ids = {b["event_id"] for kind, _, b, _ in test if kind == "user_events"}
        await answers.wait_for(ids, timeout_s=1800)
        await asyncio.sleep(4.0)
        after = feedback_counts(prom)
        lag = np.array([answers.lag[i] for i in ids])
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    prom_out = {}
    for b in ("control", "canary"):
        d = {o: after[(b, o)] - before[(b, o)] for o in ("hit", "miss", "no_recommendation", "rr")}
        judged = d["hit"] + d["miss"]
        prom_out[b] = {
            "clicks": judged,
            "hr": d["hit"] / judged if judged else float("nan"),
            "mrr": d["rr"] / judged if judged else float("nan"),
            "no_recommendation": d["no_recommendation"],
        }
    lag_s = {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)),
             "max": float(lag.max()),
             "over_gap": float((lag > args.user_gap_s).mean())}  # fmt: skip
    print(f"test period: event -> emitted p50 {lag_s['p50']:.3f} s, p99 {lag_s['p99']:.3f} s, "
          f"max {lag_s['max']:.2f} s; {lag_s['over_gap']:.2%} over the user gap")  # fmt: skip
    return {"prometheus": prom_out, "t_start": t_start, "t_end": t_end, "lag_s": lag_s,
            "duplicates": answers.duplicates, "new_items": len(published),
            "run_id": run}  # fmt: skip


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--control", type=Path, required=True, help="bundle dir (CURRENT)")
    ap.add_argument("--candidate", type=Path, required=True, help="bundle dir (CANDIDATE)")
    ap.add_argument("--share", type=float, default=0.5, help="canary share (default 0.5)")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--rate", type=float, default=100.0, help="test-period events/s (100)")
    ap.add_argument("--warmup-rate", type=float, default=1000.0, help="warm-up events/s")
    ap.add_argument("--limit", type=int, help="replay only the first N test events")
    ap.add_argument(
        "--per-user", type=int, default=60,
        help="replay each user's first N test-period events (60; 0: all)",
    )  # fmt: skip
    ap.add_argument(
        "--user-gap-s", type=float, default=2.0,
        help="at least this many seconds between one user's events (2.0)",
    )  # fmt: skip
    ap.add_argument(
        "--max-users", type=int, help="only the first N test-period users (a smoke run)"
    )
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "canary_ab.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "bench" / "canary_ab.png")
    args = ap.parse_args()

    from stream.settings import WorkerSettings
    from tests.integration.deploy.promserver import PromServer, PromServerConfig
    from tools.ab_kafka import read_range_sync
    from tools.ab_plot import plot_report
    from tools.ab_report import build_report, join
    from tools.stream_eval import bundle_split
    from training.data import load_dataset

    ds = load_dataset(args.dataset)
    (m_ctl, t), (m_can, t2) = bundle_split(args.control, ds), bundle_split(args.candidate, ds)
    if t != t2:
        raise SystemExit(f"the bundles are cut at different times ({t} vs {t2})")
    replay = build_replay(ds, t)
    if args.per_user:
        count: dict[str, int] = defaultdict(int)
        kept = []
        for e in replay.events:
            count[e.user_id] += 1
            if count[e.user_id] <= args.per_user:
                kept.append(e)
        replay = dataclasses.replace(replay, events=kept)
    if args.max_users:
        users = set(sorted({e.user_id for e in replay.events})[: args.max_users])
        replay = dataclasses.replace(
            replay,
            history=[e for e in replay.history if e.user_id in users],
            events=[e for e in replay.events if e.user_id in users],
        )
    n_events = min(args.limit or len(replay.events), len(replay.events))
    assign = Buckets(SALT, args.share)
    load_start = load_avg()

    tmp = Path(tempfile.mkdtemp(prefix="recstream-canary-ab-"))
    broker = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port()),
        tmp / "kafka", Path(os.environ.get("RECSTREAM_CACHE_DIR") or default_cache_dir()),
    )  # fmt: skip
    worker = prom = None
    try:
        broker.start()
        suffix = uuid.uuid4().hex[:8]
        topics = TopicNames(**{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()})
        settings = Settings(bootstrap=broker.bootstrap, topics=topics, state_dir=tmp / "state")
        asyncio.run(ensure_topics(broker.bootstrap, topics.model_dump().values(), partitions=4))
        root = tmp / "bundles"
        root.mkdir()
        for src, pointer in ((args.control, "CURRENT"), (args.candidate, "CANDIDATE")):
            shutil.copytree(src, root / src.name)
            (root / pointer).write_text(src.name + "\n")
        port = free_port()
        env = worker_env(settings, app_id=f"ab-{suffix}", web_port=port, bundle=root,
                         store="rocksdb://",
                         extra={"RECSTREAM_WORKER_CANARY_SHARE": str(args.share)})  # fmt: skip
        worker = WorkerProcess(env, port, tmp / "worker.log")
        worker.wait_ready(600)
        deadline = time.monotonic() + 600
        while True:  # the canary loads after the control
            state = worker.readiness() or {}
            canary = state.get("buckets", {}).get("canary", {})
            if canary.get("serving"):
                break
            waiting = canary.get("reason") is None or str(canary["reason"]).startswith("load")
            if time.monotonic() > deadline or not waiting:
                raise SystemExit(f"the canary does not serve: {state}")
            time.sleep(0.5)
        rules = tuple(sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")))
        prom = PromServer.start(
            [f"127.0.0.1:{port}"], tmp / "prom", PromServerConfig(rule_files=rules)
        )
        prom.wait_until(lambda: prom.query('up{job="recstream-worker"} == 1'), timeout_s=60)
        print(f"worker pid {worker.proc.pid}: control {m_ctl['version']}, canary "
              f"{m_can['version']} at {args.share}; {n_events} test events at {args.rate} ev/s; "
              f"load {load_start}")  # fmt: skip
        run = asyncio.run(live(args, settings, replay, worker, prom, n_events))
        load_end = load_avg()
        read = read_range_sync(settings, run["t_start"], run["t_end"], lookback_s=7200.0)
        per_user = WorkerSettings().feedback_lists_per_user  # what the worker kept
        judged = join(read.sent, read.clicks, K, per_user=per_user)
        report = build_report(judged, k=K, per_user=per_user, lists_read=len(read.sent),
                              resamples=args.resamples)  # fmt: skip
        plot_report(report, args.plot, f"{args.dataset} test period, {m_ctl['version']} (control)"
                    f" vs {m_can['version']} (canary) at {args.share}")  # fmt: skip
    finally:
        if prom is not None:
            prom.stop()
        if worker is not None:
            code = worker.stop()
            print(f"worker exited {code}")
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    rep: dict[str, dict[str, float]] = {
        b.bucket: {"clicks": b.clicks, "hr": b.hr, "mrr": b.mrr} for b in report.buckets
    }
    for (bucket, _), n in report.no_recommendation.items():
        if bucket in rep:
            rep[bucket]["no_recommendation"] = rep[bucket].get("no_recommendation", 0) + n
    live_ids = {j.click.event_id for j in judged if j.shown is not None}
    live_doc = {"prometheus": run["prometheus"], "ab_report": rep, "report": report.to_json()}
    args.out.with_suffix(".live.json").write_text(json.dumps(live_doc, indent=2) + "\n")
    for d in report.diffs:  # the live figures first: the offline replay takes minutes
        print(f"live: canary - control {d.statistic.upper()}@10 {d.value:+.4f} "
              f"(95 % {d.low:+.4f} to {d.high:+.4f})")  # fmt: skip
    print("offline (serving core, no Kafka) ...")
    off = offline(args, ds, replay, assign, n_events, live_ids, run["run_id"])
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(sys.argv),
        "load_before": load_start,
        "load_after": load_end,
        "control": m_ctl["version"],
        "candidate": m_can["version"],
        "share": args.share,
        "rate": args.rate,
        "test_events": n_events,
        "new_items_published": run["new_items"],
        "duplicates": run["duplicates"],
        "event_to_emitted_s": run["lag_s"],
        "prometheus": run["prometheus"],
        "ab_report": rep,
        "offline": off,
        "report": report.to_json(),
    }
    print(f"\n{'bucket':8} {'source':11} {'clicks':>7} {'HR@10':>7} {'MRR@10':>7}")
    for b in ("control", "canary"):
        sources = (("prometheus", run["prometheus"].get(b)), ("ab report", rep.get(b)),
                   ("offline", off.get(b)), ("offline=", off.get(f"{b}/same")))  # fmt: skip
        for name, s in sources:
            if s:
                print(f"{b:8} {name:11} {s['clicks']:7.0f} {s['hr']:7.4f} {s['mrr']:7.4f}")
        p, r, o, o2 = run["prometheus"][b], rep.get(b), off[b], off[f"{b}/same"]
        if r:
            result.setdefault("agreement", {})[b] = {
                "clicks_prom_minus_report": p["clicks"] - r["clicks"],
                "hr_prom_vs_report": rel(p["hr"], r["hr"]),
                "mrr_prom_vs_report": rel(p["mrr"], r["mrr"]),
                "hr_report_vs_offline": rel(r["hr"], o["hr"]),
                "hr_report_vs_offline_same_clicks": rel(r["hr"], o2["hr"]),
                "hr_prom_vs_offline": rel(p["hr"], o["hr"]),
            }
            a = result["agreement"][b]
            print(
                f"{b:8} agreement: Prometheus vs report {a['hr_prom_vs_report']:.2%} (target 2 %;"
                f" clicks {a['clicks_prom_minus_report']:+.0f}), report vs offline"
                f" {a['hr_report_vs_offline']:.2%} (target 10 %), vs offline on the same clicks"
                f" {a['hr_report_vs_offline_same_clicks']:.2%}"
            )
    for d in report.diffs:
        print(f"canary - control {d.statistic.upper()}@10: {d.value:+.4f} (95 % {d.low:+.4f} to "
              f"{d.high:+.4f}; excludes 0: {d.excludes_zero})")  # fmt: skip
    print(f"load average {load_start} -> {load_end}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
