"""kill -9 of the worker at random moments under 500 ev/s, ten times (3 in the default
run): nothing is lost, and every user's sequence table equals one recomputed from the
input topic (its changelog, the state a restarted worker restores, is what we read)."""

from __future__ import annotations

import asyncio
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
    WorkerPool,
    drain,
    input_events,
    run_traffic,
    table_from_changelog,
)

pytestmark = pytest.mark.integration

RATE = 500.0
WINDOW = WorkerSettings().exclude_window  # how much of a sequence the table keeps


def as_pairs(stored: object) -> list[tuple[str, int]]:
    """A stored sequence as (item_id, ts in ms): column-wise dict or older list of pairs."""
    if isinstance(stored, dict):
        return list(zip(stored["items"], stored["ts_ms"], strict=True))
    return [(str(e[0]), round(float(e[1]) * 1000)) for e in stored]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kills",
    [
        pytest.param(3, id="kills3"),
        pytest.param(10, id="kills10", marks=long_variant),
    ],
)
async def test_worker_kill9_loses_nothing_and_tables_match(
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

        async def chaos() -> None:
            nonlocal worker
            try:
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(0.3, 3.0))  # a random moment of work
                    await asyncio.to_thread(pool.kill, worker)
                    t_kill = time.monotonic()
                    worker = pool.start()
                    await asyncio.to_thread(worker.wait_ready, 120)
                    downtime.append(time.monotonic() - t_kill)
                await asyncio.sleep(1.0)
            finally:
                stop.set()

        traffic, _ = await asyncio.gather(
            run_traffic(rel_settings, rate=RATE, seconds=400, stop=stop), chaos()
        )
        t_drain = time.monotonic()
        # A worker restarted many times may sit in a rebalance for a while: a long stall.
        recs, dlq = await drain(rel_settings, traffic, timeout_s=300, stall_s=60)
        t_drain = time.monotonic() - t_drain
        assert not pool.crashed(), pool.crashed()
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        print(f"\nworker kill x{pool.kills}: {report.summary()}; refused sends {traffic.refused}; "
              f"restart-to-ready {min(downtime):.1f}-{max(downtime):.1f} s; "
              f"catch-up {t_drain:.0f} s; total {time.monotonic() - t_start:.0f} s")  # fmt: skip
        assert pool.kills == kills
        assert report.sent >= RATE * 5 * kills, "the stream should have flowed throughout"
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
