"""Two workers in one consumer group share the partitions; each event is answered once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

pytestmark = pytest.mark.integration


async def test_two_workers_split_partitions_and_answer_each_event_once(
    workers, make_client, tiny_bundle_root
) -> None:
    group = f"it-pair-{uuid.uuid4().hex[:8]}"  # changelog topics are named by it
    a = workers.start(tiny_bundle_root, app_id=group)
    b = workers.start(tiny_bundle_root, app_id=group)
    await asyncio.gather(asyncio.to_thread(a.wait_ready, 120), asyncio.to_thread(b.wait_ready, 120))

    def split() -> tuple[list[int], list[int]] | None:
        ra, rb = a.readiness(), b.readiness()
        if not (ra and rb and ra["ready"] and rb["ready"]):
            return None
        return ra["input_partitions"], rb["input_partitions"]

    # Wait for a split that holds for 5 s: a rebalance after this point would replay
    # uncommitted events (at-least-once), which is not what this test is about.
    deadline = time.monotonic() + 90
    parts, since = split(), time.monotonic()
    while True:
        assert time.monotonic() < deadline, f"partitions never settled: {parts}"
        await asyncio.sleep(0.5)
        now = split()
        if now != parts:
            parts, since = now, time.monotonic()
        elif (
            parts
            and sorted(parts[0] + parts[1]) == [0, 1, 2, 3]
            and time.monotonic() - since >= 5.0
        ):
            break
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])

    async with make_client() as c:
        sent = []
        for i in range(200):
            eid = f"p{i}"
            if i % 5 == 0:
                await c.query(eid, f"user{i % 40}", "space robot future")
            else:
                await c.click(eid, f"user{i % 40}", f"i{i % 200}")
            sent.append(eid)
        await c.wait_recs(sent, timeout=60)
        await asyncio.sleep(2.0)  # a duplicate would arrive now
    ids = [r.trigger_event_id for _, _, r, _ in c.recs]
    assert sorted(ids) == sorted(sent), "each event answered exactly once"

    def consumed(worker) -> float:
        text = worker.get("/metrics")[1].decode()
        found = re.findall(r'recstream_events_in_total\{topic="[^"]+"\} (\S+)', text)
        return sum(float(x) for x in found)

    na, nb = consumed(a), consumed(b)
    assert na > 0 and nb > 0 and na + nb == 200
