"""End-to-end latency of the streaming worker on a real Apache Kafka broker.

    PYTHONPATH=. python bench/latency.py                      # 200,1000,3000,5000 ev/s, 20 s each
    PYTHONPATH=. python bench/latency.py --rates 200,1000 --duration 10 --bundle PATH
    PYTHONPATH=. python bench/latency.py --pin                # worker alone on a core + capacity

For each of two worker modes — ``passthrough`` (the same Faust app with model
work disabled: the floor) and ``model`` (state, ONNX encoders, FAISS, fusion) —
one worker process is started on fresh topics, and this process publishes an
80 % click / 20 % query mix at each fixed rate for a fixed duration while it
subscribes to ``recommendations``. Latency is producer-send → subscriber-receive
(same clock). Reported per rate: p50/p95/p99/max, input rate achieved, output
rate, and events unanswered after a grace period. Writes a JSON, a PNG plot and
the ``## latency (issue 5)`` section of bench/RESULTS.md.

``--pin`` (Linux) puts this process and the broker it starts on ``--bench-cpus``
(default 0) and every thread of the worker on ``--worker-cpus`` (default 1),
re-pinned every 0.5 s (``bench/pinning.py``), so the worker's figures are its own
cost rather than the scheduler's. It also finds each mode's **capacity**: the
highest offered rate the worker sustains (every event answered, output keeping up,
p99 ≤ ``--cap-p99-ms``), stepping the rate up by ``--cap-factor`` from
``--cap-start`` until a step fails, then bisecting ``--cap-refine`` times. Pinned
runs write ``bench/out/latency-summary.json`` (capacities and model/floor ratios
at each rate) and the ``## latency, pinned (issue 24)`` section of RESULTS.md;
unpinned runs keep writing ``## latency (issue 5)``. ``bench/out/latency.json``
holds one record per measured rate either way (``phase`` "rate" or "capacity").

The catalog is a 100k-item bundle from ``inference.testing.build_tiny_bundle``
(real ONNX + FAISS HNSW files, 384-d), whose text encoder is a cheap
token-embedding graph, not MiniLM: pass ``--bundle`` to time a trained bundle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
PLOT = ROOT / "bench" / "latency.png"
SECTION = "## latency (issue 5)"
SECTION_PINNED = "## latency, pinned (issue 24)"


@dataclass
class RateResult:
    mode: str
    rate: float
    sent: int
    received: int
    missing: int
    input_rate: float
    output_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    load_before: float
    load_after: float
    worker_cpu_ms_per_event: float  # worker process CPU (user+sys) / events answered
    # The latency split at the worker's ``emitted_ts`` (same clock): send → emitted
    # (producer, broker, worker consumer, processing) and emitted → received
    # (worker producer acks=all, broker, this process's consumer).
    to_emit_p50_ms: float = float("nan")
    to_emit_p99_ms: float = float("nan")
    from_emit_p50_ms: float = float("nan")
    from_emit_p99_ms: float = float("nan")
    # Linux schedstat of the worker's threads over the run: CPU time it ran, and time
    # it was runnable but waiting for a core (run queue). wait ≫ run = CPU-starved.
    worker_run_s: float = float("nan")
    worker_runq_wait_s: float = float("nan")
    wall_s: float = float("nan")
    bench_run_s: float = float("nan")  # this process (load generator + subscriber), same way
    bench_runq_wait_s: float = float("nan")
    pinned: str = ""  # the worker's CPUs with --pin ("" unpinned)
    phase: str = "rate"  # "rate" (a --rates entry) or "capacity" (a capacity step)
    sustained: bool | None = None  # capacity steps: kept up with p99 within the bound
    worker_threads_moved: int = 0  # worker threads found off its CPUs and moved back


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_bundle(n_items: int, dim: int) -> Path:
    from inference.bundle import find_latest
    from inference.testing import build_tiny_bundle

    root = OUT / "bundles" / f"bench-{n_items}-{dim}"
    found = find_latest(root) if root.exists() else None
    if found is not None:
        return found
    print(f"building a {n_items}-item {dim}-d HNSW bundle under {root} (once) ...", flush=True)
    t0 = time.perf_counter()
    path = build_tiny_bundle(
        root, n_items=n_items, dim=dim, version=f"bench-{n_items}", index_kind="hnsw"
    )
    print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def workload(n: int, n_items: int, n_users: int, seed: int) -> list[tuple[str, str, dict]]:
    """``n`` events: 80 % clicks on random items, 20 % genre queries (ts stamped at send)."""
    from inference.testing import GENRES

    rng = np.random.default_rng(seed)
    words = [w for ws in GENRES.values() for w in ws]
    run = uuid.uuid4().hex[:6]
    out = []
    for i in range(n):
        user = f"bu{rng.integers(n_users)}"
        eid = f"{run}-{i}"
        if rng.random() < 0.2:
            text = " ".join(rng.choice(words, size=2, replace=False))
            out.append(("search_text", user, {"event_id": eid, "user_id": user, "text": text}))
        else:
            item = f"i{rng.integers(n_items)}"
            body = {"event_id": eid, "user_id": user, "item_id": item, "type": "click"}
            out.append(("user_events", user, body))
    return out


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on CPU, seconds runnable but waiting) summed over a process's threads."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:  # thread ended
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def worker_cpu_seconds(worker) -> float:
    """process_cpu_seconds_total from the worker's /metrics."""
    text = worker.get("/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return float("nan")


async def run_rate(
    settings, worker, mode: str, rate: float, duration: float, events, fetch_wait_ms: int = 100
) -> RateResult:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = settings.topics
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        topics.recommendations,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        # aiokafka keeps one fetch in flight per broker, naming only partitions already
        # drained, so a late-drained partition can wait up to this; 5 vs 100 made no
        # measurable difference here (RESULTS.md, "floor investigation").
        fetch_max_wait_ms=fetch_wait_ms,
    )
    await producer.start()
    await consumer.start()
    await consumer.seek_to_end()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    splits: list[tuple[float, float]] = []
    last_recv = [0.0]
    n_total = int(rate * duration)

    async def receive() -> None:
        async for msg in consumer:
            now = time.time()
            rec = json.loads(msg.value)
            t = sent_at.pop(rec["trigger_event_id"], None)
            if t is not None:
                latencies.append(now - t)
                splits.append((rec["emitted_ts"] - t, now - rec["emitted_ts"]))
                last_recv[0] = now

    reader = asyncio.create_task(receive())
    await asyncio.sleep(0.5)
    load_before = os.getloadavg()[0]
    cpu_before = await asyncio.to_thread(worker_cpu_seconds, worker)
    sched_before = schedstat(worker.proc.pid)
    self_before = schedstat(os.getpid())
    start = time.perf_counter()
    first_send = time.time()
    sent = 0
    for kind, user, body in events[:n_total]:
        due = start + sent / rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        t = time.time()
        body = {**body, "ts": t}
        sent_at[body["event_id"]] = t
        await producer.send(getattr(topics, kind), json.dumps(body).encode(), key=user.encode())
        sent += 1
    await producer.flush()
    send_s = time.perf_counter() - start
    grace_end = time.monotonic() + max(10.0, duration)
    while sent_at and time.monotonic() < grace_end:
        await asyncio.sleep(0.1)
    load_after = os.getloadavg()[0]
    cpu_after = await asyncio.to_thread(worker_cpu_seconds, worker)
    sched_after = schedstat(worker.proc.pid)
    self_after = schedstat(os.getpid())
    wall_s = time.perf_counter() - start
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await consumer.stop()
    await producer.stop()
    ms = np.asarray(latencies) * 1000.0 if latencies else np.asarray([np.nan])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    span = max(last_recv[0] - first_send, 1e-9)
    split = np.asarray(splits) * 1000.0 if splits else np.full((1, 2), np.nan)
    (to50, to99), (from50, from99) = (np.percentile(split[:, i], [50, 99]) for i in (0, 1))
    return RateResult(
        mode=mode,
        rate=rate,
        sent=sent,
        received=len(latencies),
        missing=len(sent_at),
        input_rate=sent / send_s,
        output_rate=len(latencies) / span,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(np.nanmax(ms)),
        load_before=load_before,
        load_after=load_after,
        worker_cpu_ms_per_event=(cpu_after - cpu_before) * 1000.0 / max(len(latencies), 1),
        to_emit_p50_ms=float(to50),
        to_emit_p99_ms=float(to99),
        from_emit_p50_ms=float(from50),
        from_emit_p99_ms=float(from99),
        worker_run_s=sched_after[0] - sched_before[0],
        worker_runq_wait_s=sched_after[1] - sched_before[1],
        wall_s=wall_s,
        bench_run_s=self_after[0] - self_before[0],
        bench_runq_wait_s=self_after[1] - self_before[1],
    )


def report_line(mode: str, r: RateResult) -> str:
    tag = "" if r.sustained is None else (" sustained" if r.sustained else " NOT sustained")
    return (
        f"[{mode}] {r.rate:>6.0f} ev/s: p50 {r.p50_ms:7.2f}  p95 {r.p95_ms:7.2f}  "
        f"p99 {r.p99_ms:7.2f}  max {r.max_ms:8.2f} ms | in {r.input_rate:6.0f}/s "
        f"out {r.output_rate:6.0f}/s missing {r.missing} | "
        f"worker CPU {r.worker_cpu_ms_per_event:.3f} ms/event | load {r.load_after:.1f}{tag}\n"
        f"        send→emitted p50 {r.to_emit_p50_ms:.2f} p99 {r.to_emit_p99_ms:.2f} | "
        f"emitted→received p50 {r.from_emit_p50_ms:.2f} p99 {r.from_emit_p99_ms:.2f} ms"
        f" | worker ran {r.worker_run_s:.1f} s, waited for a core "
        f"{r.worker_runq_wait_s:.1f} s in {r.wall_s:.1f} s; bench ran "
        f"{r.bench_run_s:.1f} s, waited {r.bench_runq_wait_s:.1f} s"
    )


def sustained(r: RateResult, p99_bound_ms: float) -> bool:
    """Kept up: every event answered, output at the offered rate, p99 within the bound."""
    return r.missing == 0 and r.output_rate >= 0.95 * r.rate and r.p99_ms <= p99_bound_ms


def generator_bound(r: RateResult) -> bool:
    """This process could not offer the rate (then the step says nothing about the worker)."""
    return r.input_rate < 0.95 * r.rate


def wait_idle(worker, timeout_s: float = 180.0) -> None:
    """Wait until the worker burns < 0.15 s CPU per second (a backlog was worked off)."""
    deadline = time.monotonic() + timeout_s
    last = worker_cpu_seconds(worker)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = worker_cpu_seconds(worker)
        if now - last < 0.15:
            return
        last = now


def find_capacity(args, measure, mode: str) -> tuple[float | None, list[RateResult]]:
    """Step the offered rate up until the worker fails to sustain it, then bisect.

    ``measure(rate, phase=...)`` runs one step on a worker with no backlog left.
    Returns (the highest sustained rate or None, every step's result).
    """
    steps: list[RateResult] = []
    passed: float | None = None
    failed: float | None = None
    rate = args.cap_start
    while rate <= args.cap_max:
        r = measure(rate, phase="capacity")
        steps.append(r)
        if generator_bound(r):
            print(f"[{mode}] the load generator could not offer {rate:.0f} ev/s: stopping")
            break
        if r.sustained:
            passed, rate = rate, round(rate * args.cap_factor)
        else:
            failed = rate
            break
    for _ in range(args.cap_refine if failed is not None else 0):
        lo = passed if passed is not None else 0.0
        mid = round((lo + failed) / 2 / 10) * 10
        if mid <= lo or mid >= failed:
            break
        r = measure(mid, phase="capacity")
        steps.append(r)
        if r.sustained:
            passed = mid
        else:
            failed = mid
    return passed, steps


def run_mode(args, bootstrap: str, bundle: Path, mode: str) -> list[RateResult]:
    from recstream.kafka_admin import ensure_topics
    from recstream.settings import Settings, TopicNames
    from tools.process import WorkerProcess, worker_env

    suffix = uuid.uuid4().hex[:8]
    topics = TopicNames(**{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()})
    settings = Settings(bootstrap=bootstrap, topics=topics, state_dir=OUT / "state")
    asyncio.run(ensure_topics(bootstrap, topics.model_dump().values(), partitions=args.partitions))
    port = free_port()
    extra = {"RECSTREAM_WORKER_PARTITIONS": str(args.partitions)}
    if mode == "passthrough":
        extra["RECSTREAM_WORKER_PASSTHROUGH"] = "true"
    env = worker_env(
        settings, app_id=f"bench-{mode}-{suffix}", web_port=port, bundle=bundle,
        store=args.store, extra=extra,
    )  # fmt: skip
    pinner = None
    if args.pin:
        from bench.pinning import Pinner, spawning_on

        with spawning_on(args.worker_cpus):  # the child starts on its own core
            worker = WorkerProcess(env, port, OUT / f"worker-{mode}.log")
        pinner = Pinner(worker.proc.pid, args.worker_cpus)
    else:
        worker = WorkerProcess(env, port, OUT / f"worker-{mode}.log")
    pinned = ",".join(map(str, sorted(args.worker_cpus))) if args.pin else ""
    results: list[RateResult] = []
    seed = [0]

    def measure(rate: float, phase: str = "rate") -> RateResult:
        seed[0] += 1  # fresh event ids per run: a late answer never matches a later run
        wait_idle(worker)  # a failed step's backlog would land in the next one
        events = workload(int(rate * args.duration), args.items, args.users, seed[0])
        moved = pinner.moved if pinner else 0
        r = asyncio.run(
            run_rate(settings, worker, mode, rate, args.duration, events, args.fetch_wait_ms)
        )
        r.pinned, r.phase = pinned, phase
        r.worker_threads_moved = (pinner.moved - moved) if pinner else 0
        if phase == "capacity":
            r.sustained = sustained(r, args.cap_p99_ms)
        print(report_line(mode, r), flush=True)
        results.append(r)
        return r

    try:
        state = worker.wait_ready(300)
        print(f"[{mode}] worker ready: model {state['model_version']}"
              + (f", pinned to CPUs {pinned}" if pinned else ""), flush=True)  # fmt: skip
        warm = workload(600, args.items, args.users, 0)
        asyncio.run(run_rate(settings, worker, mode, 200.0, 3.0, warm))  # warm-up
        for rate in args.rates:
            measure(rate)
        if args.capacity:
            cap, _ = find_capacity(args, measure, mode)
            print(f"[{mode}] capacity: {cap if cap is not None else 'below the first step'} ev/s "
                  f"(p99 ≤ {args.cap_p99_ms:.0f} ms)", flush=True)  # fmt: skip
    finally:
        if pinner is not None:
            pinner.stop()
        worker.stop()
    return results


def capacity_of(results: list[RateResult], mode: str) -> float | None:
    ok = [r.rate for r in results if r.mode == mode and r.phase == "capacity" and r.sustained]
    return max(ok) if ok else None


def summarize(results: list[RateResult]) -> dict:
    """Capacities and model/floor ratios of the rates both modes ran (fixed rates only)."""
    floor = {r.rate: r for r in results if r.mode == "passthrough" and r.phase == "rate"}
    model = {r.rate: r for r in results if r.mode == "model" and r.phase == "rate"}
    caps = {m: capacity_of(results, m) for m in ("passthrough", "model")}
    ratios = {}
    for rate in sorted(set(floor) & set(model)):
        f, m = floor[rate], model[rate]
        ratios[str(int(rate))] = {
            "p50_ratio": m.p50_ms / f.p50_ms if f.p50_ms > 0 else float("nan"),
            "p99_ratio": m.p99_ms / f.p99_ms if f.p99_ms > 0 else float("nan"),
            "model_p50_ms": m.p50_ms, "model_p99_ms": m.p99_ms,
            "floor_p50_ms": f.p50_ms, "floor_p99_ms": f.p99_ms,
            "model_cpu_ms_per_event": m.worker_cpu_ms_per_event,
            "floor_cpu_ms_per_event": f.worker_cpu_ms_per_event,
        }  # fmt: skip
    cap_ratio = None
    if caps["model"] is not None and caps["passthrough"]:
        cap_ratio = caps["model"] / caps["passthrough"]
    return {"capacity": caps, "capacity_ratio": cap_ratio, "rates": ratios}


def plot(results: list[RateResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, color in (("passthrough", "tab:gray"), ("model", "tab:blue")):
        rs = sorted((r for r in results if r.mode == mode), key=lambda r: r.rate)
        x = [r.rate for r in rs]
        ax.plot(x, [r.p50_ms for r in rs], "o-", color=color, label=f"{mode} p50")
        ax.plot(x, [r.p99_ms for r in rs], "s--", color=color, label=f"{mode} p99")
    ax.axhline(15, color="tab:red", lw=0.8, ls=":", label="p99 target @200 (15 ms)")
    ax.axhline(100, color="tab:orange", lw=0.8, ls=":", label="capacity bound (p99 100 ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (events/s)")
    ax.set_ylabel("producer send → subscriber receive (ms)")
    pinned = next((r.pinned for r in results if r.pinned), "")
    where = f", worker pinned to CPU {pinned}" if pinned else ""
    ax.set_title(f"recstream worker end-to-end latency (1 worker, real Kafka{where})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _table(results: list[RateResult]) -> list[str]:
    floor = {r.rate: r for r in results if r.mode == "passthrough" and r.phase == "rate"}
    lines = [
        "| mode | phase | rate ev/s | in ev/s | out ev/s | p50 ms | p95 ms | p99 ms | max ms | "
        "missing | p50 / floor p50 | worker CPU ms/event | worker ran / waited s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = ""
        if r.mode == "model" and r.phase == "rate" and r.rate in floor and floor[r.rate].p50_ms:
            ratio = f"{r.p50_ms / floor[r.rate].p50_ms:.2f}"
        phase = r.phase if r.sustained is None else f"{r.phase} ({'ok' if r.sustained else 'no'})"
        lines.append(
            f"| {r.mode} | {phase} | {r.rate:.0f} | {r.input_rate:.0f} | {r.output_rate:.0f} | "
            f"{r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.missing} | "
            f"{ratio} | {r.worker_cpu_ms_per_event:.3f} | "
            f"{r.worker_run_s:.1f} / {r.worker_runq_wait_s:.1f} | {r.load_after:.1f} |"
        )
    return lines


def write_results(
    results: list[RateResult], args, bundle: Path, command: str, summary: dict | None = None
) -> str:
    """Rewrite this run's section of RESULTS.md (the pinned one with --pin); returns its name."""
    section = SECTION_PINNED if args.pin else SECTION
    where = (
        f"worker pinned to CPU {','.join(map(str, sorted(args.worker_cpus)))}, this process and "
        f"the broker to CPU {','.join(map(str, sorted(args.bench_cpus)))}"
        if args.pin
        else "nothing pinned"
    )
    lines = [
        section,
        "",
        "Generated by the command below (rewritten by each run with the same mode); the "
        "reading of these figures is in `## hot path (issue 24)`."
        if args.pin
        else "",
        "",
        f"Command: `{command}`  ",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
        f"{os.cpu_count()} CPUs, {where}; bundle `{bundle.name}` ({args.items} items, HNSW); "
        f"{args.duration:.0f} s per rate, {args.partitions} partitions, store {args.store}.  ",
        "1-minute load average per row below: other jobs on the machine show there.",
        "",
        *_table(results),
        "",
    ]
    if summary is not None:
        caps = summary["capacity"]
        lines += [
            f"Capacity (highest offered rate sustained with p99 ≤ {args.cap_p99_ms:.0f} ms): "
            f"passthrough {caps['passthrough']}, model {caps['model']} ev/s"
            + (
                f" (model/floor {summary['capacity_ratio']:.2f})."
                if summary["capacity_ratio"]
                else "."
            ),
            "",
            *(
                f"- {rate} ev/s: model/floor p50 {v['p50_ratio']:.2f} "
                f"({v['model_p50_ms']:.2f} / {v['floor_p50_ms']:.2f} ms), p99 "
                f"{v['p99_ratio']:.2f} ({v['model_p99_ms']:.2f} / {v['floor_p99_ms']:.2f} ms)"
                for rate, v in summary["rates"].items()
            ),
            "",
        ]
    lines += [
        "Latency = producer send → subscriber receive (same clock), over events answered; "
        "`missing` = not answered within the grace period after sending stopped. "
        "`worker CPU ms/event` = the worker process's CPU seconds (user+sys, from its "
        "`process_cpu_seconds_total`) per answered event: 1000 / that is roughly what one "
        "dedicated core could sustain, a figure that contention distorts far less than latency. "
        "`worker ran / waited` = its threads' seconds on a core and runnable but waiting for one.",
        "",
        f"Plot: `bench/{PLOT.name}`.",
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    if section in text:
        head, _, rest = text.partition(section)
        nxt = rest.find("\n## ")
        text = head + "\n".join(lines) + (rest[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines)
    RESULTS.write_text(text)
    return section


def main() -> None:
    from tools.process import exit_on_sigterm

    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--rates", help="comma-separated events/s (default 200,1000,3000,5000; with --pin 200,1000)"
    )
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    ap.add_argument("--items", type=int, default=100_000, help="catalog size of the built bundle")
    ap.add_argument("--dim", type=int, default=384, help="vector size of the built bundle")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--store", default="rocksdb://", help="worker table store")
    ap.add_argument("--bundle", type=Path, help="serve this bundle instead of building one")
    ap.add_argument("--bootstrap", help="use this broker instead of starting a local one")
    ap.add_argument("--modes", default="passthrough,model")
    ap.add_argument(
        "--fetch-wait-ms", type=int, default=100,
        help="fetch_max_wait_ms of this process's recommendations consumer",
    )  # fmt: skip
    ap.add_argument(
        "--pin", action="store_true",
        help="worker (every thread) alone on --worker-cpus; this process and the broker on "
        "--bench-cpus; also finds each mode's capacity (see --no-capacity)",
    )  # fmt: skip
    ap.add_argument("--worker-cpus", default="1", help="CPUs of the worker with --pin")
    ap.add_argument("--bench-cpus", default="0", help="CPUs of this process and broker with --pin")
    ap.add_argument(
        "--capacity", action=argparse.BooleanOptionalAction, default=None,
        help="step the rate to find each mode's capacity (default: on with --pin)",
    )  # fmt: skip
    ap.add_argument("--cap-start", type=float, default=1000.0, help="first capacity step, ev/s")
    ap.add_argument("--cap-factor", type=float, default=1.25, help="rate multiplier per step")
    ap.add_argument("--cap-max", type=float, default=8000.0, help="highest rate stepped to")
    ap.add_argument("--cap-refine", type=int, default=2, help="bisection steps after a failure")
    ap.add_argument("--cap-p99-ms", type=float, default=100.0, help="p99 bound of a sustained step")
    ap.add_argument("--no-results", action="store_true", help="don't touch bench/RESULTS.md")
    ap.add_argument("--build-only", action="store_true", help="build/cache the bundle and exit")
    args = ap.parse_args()
    rates = args.rates or ("200,1000" if args.pin else "200,1000,3000,5000")
    args.rates = [float(r) for r in rates.split(",") if r.strip()]
    if args.capacity is None:
        args.capacity = args.pin
    if args.pin:
        from bench.pinning import parse_cpus, pin_process

        args.worker_cpus, args.bench_cpus = (
            parse_cpus(args.worker_cpus),
            parse_cpus(args.bench_cpus),
        )
        if args.worker_cpus & args.bench_cpus:
            ap.error("--worker-cpus and --bench-cpus overlap")
        if args.bootstrap:
            print("note: --bootstrap names an outside broker, which --pin cannot move", flush=True)
        pin_process(os.getpid(), args.bench_cpus)  # the broker and all later threads inherit it
    OUT.mkdir(parents=True, exist_ok=True)
    command = " ".join(["PYTHONPATH=. python bench/latency.py", *sys.argv[1:]])
    bundle = args.bundle or build_bundle(args.items, args.dim)
    if args.build_only:
        print(bundle)
        return

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from recstream.localkafka import LocalKafka
        from recstream.settings import LocalKafkaSettings, default_cache_dir

        cfg = LocalKafkaSettings(port=free_port(), controller_port=free_port())
        broker = LocalKafka(cfg, home=OUT / f"kafka-{cfg.port}", cache_dir=default_cache_dir())
        broker.start()
        bootstrap = broker.bootstrap
    results: list[RateResult] = []
    try:
        for mode in args.modes.split(","):
            results += run_mode(args, bootstrap, bundle, mode)
    finally:
        if broker is not None:
            broker.stop()
    (OUT / "latency.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    summary = None
    if args.pin or args.capacity:
        summary = summarize(results)
        (OUT / "latency-summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    plot(results, PLOT)
    print(f"plot: {PLOT}")
    if not args.no_results:
        section = write_results(results, args, bundle, command, summary)
        print(f"results: {RESULTS} ({section})")


if __name__ == "__main__":
    main()
