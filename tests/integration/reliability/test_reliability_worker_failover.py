"""Two workers in one group; one is killed with SIGKILL: the other takes its partitions
and every accepted event is still answered."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from recstream.settings import Settings
from tests.integration.reliability.accounting import account

pytest.importorskip("tools.process", reason="needs the stream worker (branch stream)")
from tests.integration.reliability.faults import (
    WorkerPool,
    assert_nothing_lost,
    drain,
    traffic_with_fault,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_two_workers_one_killed_the_other_takes_over(
    rel_settings: Settings, rel_bundle: Path, rel_tmp: Path
) -> None:
    pool = WorkerPool(rel_settings, rel_bundle, rel_tmp, f"rel-pair-{uuid.uuid4().hex[:6]}")
    try:
        a, b = pool.start(), pool.start()
        await asyncio.gather(asyncio.to_thread(a.wait_ready, 180),
                             asyncio.to_thread(b.wait_ready, 180))  # fmt: skip

        def parts(w) -> list[int]:
            r = w.readiness()
            return list(r["input_partitions"]) if r else []

        await asyncio.to_thread(
            wait_until, lambda: len(parts(a)) + len(parts(b)) == 4 and parts(b), 60, "a split"
        )
        before = parts(b)
        takeover: list[float] = []

        def kill_a() -> None:
            pool.kill(a)
            t0 = time.monotonic()
            wait_until(lambda: len(parts(b)) == 4, 60, "the survivor to own every partition")
            takeover.append(time.monotonic() - t0)

        traffic = await traffic_with_fault(rel_settings, rate=500, seconds=12,
                                           faults=[(4.0, kill_a)])  # fmt: skip
        recs, dlq = await drain(rel_settings, traffic)
        assert not pool.crashed(), pool.crashed()
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        assert_nothing_lost(report, traffic, f"failover ({before} → all 4 in {takeover[0]:.1f} s)")
        assert sorted(parts(b)) == [0, 1, 2, 3]
    finally:
        pool.stop_all()
