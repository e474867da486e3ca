"""User state survives a worker restart (tables rebuilt from their changelog topics)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from inference.testing import genre_of

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_history_is_recovered_after_restart(
    workers, make_client, tiny_bundle_root, store
) -> None:
    group = f"it-restart-{uuid.uuid4().hex[:8]}"  # changelog topics are named by it
    comedies = [f"i{n}" for n in range(0, 200, 8)]  # 25 comedy items
    before, after = comedies[:12], comedies[12]
    first = workers.start(tiny_bundle_root, app_id=group, extra={"RECSTREAM_WORKER_STORE": store})
    await asyncio.to_thread(first.wait_ready, 120)
    async with make_client() as c:
        for n, item in enumerate(before):
            await c.click(f"b{n}", "carol", item)
        await c.wait_recs([f"b{n}" for n in range(len(before))])
    await asyncio.to_thread(first.stop)  # SIGTERM: Faust shuts down cleanly

    second = workers.start(
        tiny_bundle_root, app_id=group, extra={"RECSTREAM_WORKER_STORE": store}
    )  # rebuilds from the changelog
    await asyncio.to_thread(second.wait_ready, 120)
    async with make_client() as c:
        await c.click("a0", "carol", after)
        await c.wait_recs(["a0"])
        rec = c.rec_for("a0")
    assert rec is not None
    got = [i.item_id for i in rec.items]
    # the recovered sequence steers toward comedies, and all 13 consumed ones stay excluded
    assert sum(genre_of(int(i[1:])) == "comedy" for i in got) >= 8, got
    assert not set(got) & set(before) - {after}, got
    assert after not in got
    assert any(i.because in before for i in rec.items if i.because), rec.items
