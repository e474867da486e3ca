"""Building blocks of the fault tests: paced traffic, real worker processes, kill -9, drains.

Everything is bounded in time: traffic runs for a given number of seconds,
every wait has a deadline, and every process started here is stopped by the
caller's fixture (``WorkerPool.stop_all``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka.errors import KafkaError as AIOKafkaError

from recstream.settings import Settings, TopicNames, TopicPolicy
from stream.settings import WorkerSettings
from tests.conftest import free_port
from tests.integration.reliability.accounting import Offset
from tests.integration.reliability.hostile import EVENTS, Hostile
from tests.integration.reliability.kafkaio import producer, read_topic
from tools.process import WorkerProcess, worker_env

# A dead worker's partitions move after the group session times out: Faust reads
# these variables (its defaults, 60 s / 3 s, would make every kill a minute long).
FAST_FAILOVER = {
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "20",
}


# Where things are, not how they behave: each test brings its own brokers, names and paths.
_LOCATION = ("RECSTREAM_BOOTSTRAP", "RECSTREAM_SECURITY__", "RECSTREAM_TOPICS__",
             "RECSTREAM_STATE_DIR", "RECSTREAM_BUNDLE_DIR", "RECSTREAM_WORKER_BUNDLE",
             "RECSTREAM_WORKER_WEB_")  # fmt: skip


def shipped_env() -> dict[str, str]:
    """The Kubernetes ConfigMap's settings (deploy/k8s/configmap.yaml) that decide behaviour:
    topic replication, partitions, batching, threads. A test that runs workers with these
    runs what ships."""
    configmap = Path(__file__).parents[3] / "deploy" / "k8s" / "configmap.yaml"
    data = yaml.safe_load(configmap.read_text())["data"]
    return {k: str(v) for k, v in data.items() if not k.startswith(_LOCATION)}


def shipped_settings(bootstrap: str, topics: TopicNames, state_dir: Path) -> Settings:
    """Settings of a client of the shipped deployment (its topic policy) on a test's brokers."""
    policy = {
        k.removeprefix("RECSTREAM_TOPIC_POLICY__").lower(): v
        for k, v in shipped_env().items()
        if k.startswith("RECSTREAM_TOPIC_POLICY__")
    }
    return Settings(
        bootstrap=bootstrap, topics=topics, state_dir=state_dir,
        topic_policy=TopicPolicy.model_validate(policy),
    )  # fmt: skip


@dataclass
class Traffic:
    """What a load run sent and the broker acknowledged."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # accepted valid, by id
    bad: dict[Offset, str | None] = field(default_factory=dict)  # accepted invalid → reason
    bad_kind: dict[Offset, str] = field(default_factory=dict)  # accepted invalid → attack
    valid_sent_at: dict[str, float] = field(default_factory=dict)  # event_id → send time
    refused: int = 0  # sends the broker never acknowledged (not "accepted")
    hostile_kinds: dict[str, int] = field(default_factory=dict)


def valid_event(i: int, users: int, rng: random.Random, prefix: str) -> tuple[str, dict[str, Any]]:
    user = f"u{rng.randrange(users)}"
    eid = f"{prefix}{i}"
    if rng.random() < 0.1:
        return "search_text", {"event_id": eid, "user_id": user, "text": "space robot",
                               "ts": time.time()}  # fmt: skip
    return "user_events", {"event_id": eid, "user_id": user, "item_id": f"i{rng.randrange(200)}",
                           "type": "click", "ts": time.time()}  # fmt: skip


async def run_traffic(
    settings: Settings,
    *,
    rate: float,
    seconds: float,
    users: int = 300,
    seed: int = 1,
    hostile: list[Hostile] | None = None,
    hostile_every: int = 0,
    stop: asyncio.Event | None = None,
) -> Traffic:
    """Send valid events at ``rate``/s for ``seconds`` (one hostile message after every
    ``hostile_every`` valid ones, while any are left); wait for every acknowledgement."""
    rng = random.Random(seed)
    prefix = f"e{uuid.uuid4().hex[:6]}-"
    traffic = Traffic()
    p = producer(settings.bootstrap, settings.security, request_timeout_ms=40_000)
    pending: list[tuple[str, Any, Any]] = []
    bad_left = list(hostile or [])
    try:
        await p.start()
        t0 = time.monotonic()
        i = 0
        # Runs ``seconds``, and on until every hostile message is out (bounded: a list).
        while (time.monotonic() - t0 < seconds or (hostile_every and bad_left)) and not (
            stop and stop.is_set()
        ):
            kind, body = valid_event(i, users, rng, prefix)
            topic = getattr(settings.topics, kind)
            fut = await p.send(topic, key=body["user_id"].encode(), value=json.dumps(body).encode())
            traffic.valid_sent_at[body["event_id"]] = time.time()
            pending.append(("valid", body, fut))
            i += 1
            if hostile_every and bad_left and i % hostile_every == 0:
                h = bad_left.pop()
                topic = (
                    settings.topics.user_events
                    if h.topic == EVENTS
                    else settings.topics.search_text
                )
                fut = await p.send(topic, key=h.key, value=h.value)
                pending.append(("bad", h, fut))
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        for what, item, fut in pending:
            try:
                meta = await fut
            except AIOKafkaError:
                traffic.refused += 1
                continue
            if what == "valid":
                traffic.events[item["event_id"]] = item
            elif item.reason is None:  # odd but valid: must be answered
                traffic.events[item.event_id] = json.loads(item.value)
                traffic.hostile_kinds[item.kind] = traffic.hostile_kinds.get(item.kind, 0) + 1
            else:
                where = (meta.topic, meta.partition, meta.offset)
                traffic.bad[where] = item.reason
                traffic.bad_kind[where] = item.kind
                traffic.hostile_kinds[item.kind] = traffic.hostile_kinds.get(item.kind, 0) + 1
    finally:
        await p.stop()
    return traffic


class WorkerPool:
    """Real ``recstream worker`` processes of one consumer group, killable with SIGKILL.

    They run the shipped store (RocksDB, ``WorkerSettings().store``). Each worker has a
    slot, its own data directory like a Kubernetes pod's volume: ``start(slot=n)``
    restarts the worker of slot ``n`` on the state it left behind.
    """

    def __init__(self, settings: Settings, bundle: Path, logs: Path, app_id: str) -> None:
        self.settings = settings
        self.bundle = bundle
        self.logs = logs
        self.app_id = app_id
        self.procs: list[WorkerProcess] = []
        self.slots: dict[int, int] = {}  # id(proc) -> slot
        self.kills = 0

    def start(
        self, extra: dict[str, str] | None = None, *, slot: int | None = None
    ) -> WorkerProcess:
        slot = len(set(self.slots.values())) if slot is None else slot
        port = free_port()
        env = worker_env(
            self.settings, app_id=self.app_id, web_port=port, bundle=self.bundle,
            store=WorkerSettings().store,
            extra={
                **FAST_FAILOVER,
                "RECSTREAM_WORKER_DATA_DIR": str(self.logs / f"data-{slot}"),
                **(extra or {}),
            },
        )  # fmt: skip
        log = self.logs / f"worker-{len(self.procs)}-slot{slot}-{port}.log"
        proc = WorkerProcess(env, port, log)
        self.procs.append(proc)
        self.slots[id(proc)] = slot
        return proc

    def slot(self, proc: WorkerProcess) -> int:
        return self.slots[id(proc)]

    def kill(self, proc: WorkerProcess) -> None:
        """kill -9: no shutdown, no commit, no flush. ``kills`` counts only a running
        worker that SIGKILL ended (not one that had exited on its own)."""
        alive = proc.proc.poll() is None
        if alive:
            os.killpg(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=30)
        proc.stop()  # closes the log file
        if alive and proc.proc.returncode == -signal.SIGKILL:
            self.kills += 1

    def stop_all(self) -> list[int | None]:
        return [p.stop() for p in self.procs]

    def crashed(self) -> list[str]:
        """Workers that exited on their own (not killed by us): their log tails."""
        return [
            f"{p.log_file.name} exited {p.proc.returncode}:\n{p.tail_log(20)}"
            for p in self.procs
            if p.proc.returncode not in (None, -signal.SIGKILL, -signal.SIGTERM, 0)
        ]


async def drain(
    settings: Settings, traffic: Traffic, timeout_s: float = 240.0, stall_s: float = 25.0
) -> tuple[list[Any], list[Any]]:
    """Read the recommendations until every accepted event is answered, or no new one
    came for ``stall_s`` (the worker is idle or stuck), or ``timeout_s``; then the DLQ.
    Returns both as decoded JSON values."""
    wanted = set(traffic.events)

    def answered(records: list[Any]) -> bool:
        got = {json.loads(r.value)["trigger_event_id"] for r in records}
        return wanted <= got

    recs = await read_topic(
        settings.bootstrap, settings.topics.recommendations, security=settings.security,
        until=answered, timeout_s=timeout_s, stall_s=stall_s,
    )  # fmt: skip
    dlq_wanted = set(traffic.bad)

    def dead(records: list[Any]) -> bool:
        got = {
            (d["topic"], d["partition"], d["offset"])
            for d in (json.loads(r.value) for r in records)
        }
        return dlq_wanted <= got

    dlq = await read_topic(
        settings.bootstrap, settings.topics.dlq, security=settings.security,
        until=dead if dlq_wanted else None, timeout_s=timeout_s if dlq_wanted else 10,
        stall_s=stall_s if dlq_wanted else None,
    )  # fmt: skip
    return [json.loads(r.value) for r in recs], [json.loads(r.value) for r in dlq]


async def table_from_changelog(settings: Settings, app_id: str, table: str) -> dict[str, Any]:
    """A Faust table's content as its changelog says (last value per key)."""
    records = await read_topic(
        settings.bootstrap, f"{app_id}-{table}-changelog", security=settings.security,
        timeout_s=60,
    )  # fmt: skip
    out: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        key = json.loads(r.key)
        if r.value is None:
            out.pop(key, None)
        else:
            out[key] = json.loads(r.value)
    return out


async def input_events(settings: Settings) -> list[dict[str, Any]]:
    """Every valid user event on the input topic, in log order per partition."""
    from recstream.errors import SchemaError
    from recstream.schemas import UserEvent, decode

    records = await read_topic(
        settings.bootstrap, settings.topics.user_events, security=settings.security,
        timeout_s=60,
    )  # fmt: skip
    out = []
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            out.append(decode(UserEvent, r.value).model_dump())
        except (SchemaError, TypeError):
            continue
    return out


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


async def traffic_with_fault(
    settings: Settings,
    *,
    rate: float,
    seconds: float,
    faults: list[tuple[float, Callable[[], None]]],
    **traffic_kw: Any,
) -> Traffic:
    """Run traffic for ``seconds`` and call each blocking ``fault`` at its offset (s)."""

    async def inject() -> None:
        t0 = time.monotonic()
        for at, fault in sorted(faults, key=lambda f: f[0]):
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            await asyncio.to_thread(fault)

    traffic, _ = await asyncio.gather(
        run_traffic(settings, rate=rate, seconds=seconds, **traffic_kw), inject()
    )
    return traffic


def as_pairs(stored: object) -> list[tuple[str, int]]:
    """A stored sequence as (item_id, ts in ms): column-wise dict or older list of pairs."""
    if isinstance(stored, dict):
        return list(zip(stored["items"], stored["ts_ms"], strict=True))
    return [(str(e[0]), round(float(e[1]) * 1000)) for e in stored]  # type: ignore[attr-defined]


async def state_differences(settings: Settings, app_id: str) -> dict[str, tuple[int, int]]:
    """Users whose ``user_sequence`` as its changelog holds it (what any worker restores
    from) differs from one recomputed from the input topic: user -> (len held, len ref)."""
    from tests.integration.reliability.accounting import reference_sequences

    table = await table_from_changelog(settings, app_id, "user_sequence")
    reference = reference_sequences(
        await input_events(settings), window=WorkerSettings().exclude_window
    )
    assert reference, "no user event on the input topic"
    wrong = {u: (0, len(ref)) for u, ref in reference.items() if u not in table}
    wrong |= {u: (len(as_pairs(table[u])), 0) for u in table if u not in reference}
    wrong |= {
        u: (len(as_pairs(table[u])), len(ref))
        for u, ref in reference.items()
        if u in table and as_pairs(table[u]) != [(i, round(t * 1000)) for i, t in ref]
    }
    return wrong


def accepted_after(traffic: Traffic, t_wall: float) -> int:
    """Valid events sent at or after ``t_wall`` (time.time()) that the broker acknowledged."""
    return sum(1 for e in traffic.events if traffic.valid_sent_at.get(e, 0.0) >= t_wall)


def assert_nothing_lost(report: Any, traffic: Traffic, what: str) -> None:
    print(f"\n{what}: {report.summary()}; refused sends {traffic.refused}")
    assert report.sent > 0
    assert report.lost == [], f"{len(report.lost)} accepted events never answered"
    assert report.ok, report.summary()
