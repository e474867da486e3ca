"""A worker whose agent fails exits (so its supervisor restarts it) and commits
nothing it did not answer: a restarted worker answers every event."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

pytestmark = pytest.mark.integration


async def test_agent_failure_stops_the_worker_and_loses_nothing(
    workers, make_client, tiny_bundle_root
) -> None:
    group = f"it-crash-{uuid.uuid4().hex[:8]}"
    bad = workers.start(
        tiny_bundle_root,
        app_id=group,
        extra={"RECSTREAM_WORKER_LOADER": "tests.integration.stream.loaders:broken"},
    )
    await asyncio.to_thread(bad.wait_ready, 120)
    ids = [f"c{n}" for n in range(6)]
    async with make_client() as c:
        for n, eid in enumerate(ids):
            await c.click(eid, f"u{n}", f"i{n}")
        deadline = time.monotonic() + 60
        while bad.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        code = bad.proc.poll()
        assert code is not None, "the worker kept running with a dead agent"
        assert code != 0, "a crashed worker must exit non-zero"
        assert "recommend agent failed" in bad.tail_log(400)
        assert c.recs == []  # nothing was emitted for the failed batch

        good = workers.start(tiny_bundle_root, app_id=group)  # same group: resumes
        await asyncio.to_thread(good.wait_ready, 120)
        await c.wait_recs(ids, timeout=60)
