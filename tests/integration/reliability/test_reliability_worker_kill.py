"""kill -9 of a worker at random moments under 300 ev/s, with the shipped store (RocksDB, the
state kept on the worker's own disk across restarts), then a partition move: a second
worker joins, the first is killed for good, and the second restores its partitions from
the changelogs. Nothing is lost, and every user's sequence as the second worker holds it
equals one recomputed from the input topic.

What is compared: the changelog's last record per user (what any worker restores from),
and the second worker's own state for a sample of users, who click once more after the
move so that it writes their whole sequence (what it restored plus that click).

3 kills in the default run; 10 with RECSTREAM_RELIABILITY_LONG=1 (the bench figure).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import pytest

from recstream.settings import Settings
from tests.integration.reliability.accounting import account, reference_sequences
from tests.integration.reliability.conftest import long_variant

pytest.importorskip("tools.process", reason="needs the stream worker (branch stream)")
from stream.settings import WorkerSettings
from tests.integration.reliability.faults import (
    Traffic,
    WorkerPool,
    as_pairs,
    drain,
    input_events,
    run_traffic,
    table_from_changelog,
    wait_until,
)
from tests.integration.reliability.kafkaio import producer

# Minutes under load: a restarted worker catches up while the machine is shared.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RATE = 300.0
# So many users that most click once: a user's write that a kill caught between the store
# and the broker's acknowledgement is then never rewritten by a later click of theirs, and
# only its replay can bring it to the changelog, which the second worker restores from.
USERS = 50_000
PROBED = 2_000  # users who click again after the move, to read the second worker's state
WINDOW = WorkerSettings().exclude_window  # how much of a sequence the table keeps


async def one_click_each(settings: Settings, users: list[str], prefix: str) -> Traffic:
    """One click per user (the probe that makes the owning worker write its state)."""
    p = producer(settings.bootstrap, settings.security)
    traffic = Traffic()
    await p.start()
    try:
        pending = []
        for i, user in enumerate(users):
            body = {"event_id": f"{prefix}{i}", "user_id": user, "item_id": f"i{i % 200}",
                    "type": "click", "ts": time.time()}  # fmt: skip
            fut = await p.send(settings.topics.user_events, json.dumps(body).encode(),
                               key=user.encode())  # fmt: skip
            pending.append((body, fut))
        for body, fut in pending:
            await fut
            traffic.events[body["event_id"]] = body
    finally:
        await p.stop()
    return traffic


def parts(worker) -> list[int]:
    r = worker.readiness()
    return list(r["input_partitions"]) if r else []


@pytest.mark.parametrize(
    "kills",
    [
        pytest.param(3, id="kills3"),
        pytest.param(10, id="kills10", marks=long_variant),
    ],
)
async def test_worker_kill9_then_partition_move_loses_nothing_and_state_matches(
    kills: int, rel_settings: Settings, rel_bundle: Path, rel_tmp: Path
) -> None:
    app_id = f"rel-kill-{uuid.uuid4().hex[:8]}"
    pool = WorkerPool(rel_settings, rel_bundle, rel_tmp, app_id)
    rng = random.Random(42)
    t_start = time.monotonic()
    try:
        worker = pool.start()
        await asyncio.to_thread(worker.wait_ready, 180)
        stop = asyncio.Event()
        downtime: list[float] = []
        moved: list[float] = []

        async def chaos() -> None:
            nonlocal worker
            try:
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(0.3, 3.0))  # a random moment of work
                    await asyncio.to_thread(pool.kill, worker)
                    t_kill = time.monotonic()
                    worker = pool.start(slot=pool.slot(worker))  # on the state it left
                    await asyncio.to_thread(worker.wait_ready, 120)
                    downtime.append(time.monotonic() - t_kill)
                # The partition move: a second worker (its own disk) joins, and once it
                # owns some partitions the first dies for good; it takes them all over.
                second = pool.start()
                await asyncio.to_thread(
                    wait_until, lambda: parts(second), 120, "the second worker to get partitions"
                )
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                await asyncio.to_thread(pool.kill, worker)
                t_kill = time.monotonic()
                await asyncio.to_thread(
                    wait_until, lambda: len(parts(second)) == 4, 120, "the second to own all 4"
                )
                moved.append(time.monotonic() - t_kill)
                worker = second
                await asyncio.sleep(1.0)
            finally:
                stop.set()

        traffic, _ = await asyncio.gather(
            run_traffic(rel_settings, rate=RATE, seconds=400, users=USERS, stop=stop), chaos()
        )
        users = sorted({e["user_id"] for e in traffic.events.values()})
        probed = random.Random(7).sample(users, min(PROBED, len(users)))
        probes = await one_click_each(rel_settings, probed, prefix=f"probe-{uuid.uuid4().hex[:4]}-")
        everything = Traffic(events={**traffic.events, **probes.events})
        t_drain = time.monotonic()
        recs, dlq = await drain(rel_settings, everything, timeout_s=900, stall_s=90)
        t_drain = time.monotonic() - t_drain
        assert not pool.crashed(), pool.crashed()
        report = account(everything.events, recs, bad_sent=everything.bad, dlq=dlq)
        print(f"\nworker kill x{kills} + partition move: {report.summary()}; refused sends "
              f"{traffic.refused}; restart-to-ready {min(downtime):.1f}-{max(downtime):.1f} s; "
              f"move {moved[0]:.1f} s; catch-up {t_drain:.0f} s; "
              f"total {time.monotonic() - t_start:.0f} s")  # fmt: skip
        assert pool.kills == kills + 1
        assert len(traffic.events) >= RATE * 5 * kills, "the stream should have flowed throughout"
        if report.lost:
            print(f"last worker: {worker.readiness()}\n{worker.tail_log(15)}")
        assert report.lost == [], f"{len(report.lost)} accepted events never answered"
        assert report.ok, report.summary()

        table = await table_from_changelog(rel_settings, app_id, "user_sequence")
        reference = reference_sequences(await input_events(rel_settings), window=WINDOW)
        assert reference and set(table) == set(reference)
        wrong = {
            u: (len(as_pairs(table[u])), len(ref))
            for u, ref in reference.items()
            if as_pairs(table[u]) != [(i, round(t * 1000)) for i, t in ref]
        }
        assert not wrong, f"{len(wrong)} users' sequences differ (table, reference): {wrong}"
    finally:
        pool.stop_all()
