"""Item updates reach the live index; a new bundle is hot-swapped mid-stream."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import defaultdict

import pytest

pytestmark = pytest.mark.integration

WESTERN = "western cowboy sheriff desert horse"


async def test_new_item_recommendable_within_a_second_and_delete_sticks(
    workers, make_client, tiny_bundle_root
) -> None:
    worker = workers.start(tiny_bundle_root)
    await asyncio.to_thread(worker.wait_ready, 120)
    async with make_client() as c:
        await c.query("before", "u1", WESTERN)
        await c.wait_recs(["before"])
        before = c.rec_for("before")
        assert before is not None
        assert "brand-new" not in {i.item_id for i in before.items}
        victim = before.items[0].item_id  # a catalog item that matches the query well

        await c.item("brand-new", "upsert", "The Last Sheriff", WESTERN + " western cowboy")
        await asyncio.sleep(1.0)  # the objective: recommendable <= 1 s after its event
        await c.query("after-upsert", "u2", WESTERN)
        await c.wait_recs(["after-upsert"])
        rec = c.rec_for("after-upsert")
        assert rec is not None
        assert "brand-new" in {i.item_id for i in rec.items[:3]}, rec.items

        await c.item("brand-new", "delete")
        await c.item(victim, "delete")
        await asyncio.sleep(1.0)
        for n in range(5):  # several users, so several partitions / batches
            await c.query(f"after-delete-{n}", f"u{10 + n}", WESTERN)
        await c.wait_recs([f"after-delete-{n}" for n in range(5)])
        for n in range(5):
            got = {i.item_id for i in c.rec_for(f"after-delete-{n}").items}  # type: ignore[union-attr]
            assert not got & {"brand-new", victim}, got
        # malformed catalog message: dead-lettered, follower keeps going
        await c.send("item_updates", "x", b"not json")
        await c.wait_for(lambda: any(d.topic == c.topics.item_updates for d in c.dlq))
    text = worker.get("/metrics")[1].decode()
    assert "recstream_index_items 199.0" in text  # 200 + 1 - 2


async def test_hot_reload_mid_stream_loses_and_repeats_nothing(
    workers, make_client, tiny_bundle_root, tmp_path
) -> None:
    from inference.testing import build_tiny_bundle

    root = tmp_path / "bundles"
    shutil.copytree(tiny_bundle_root, root)
    worker = workers.start(root)
    await asyncio.to_thread(worker.wait_ready, 120)
    async with make_client() as c:
        sent: list[str] = []

        async def stream_events(n: int, rate: float) -> None:
            for i in range(n):
                eid = f"e{i}"
                if i % 5 == 0:
                    await c.query(eid, f"user{i % 37}", "funny comedy")
                else:
                    await c.click(eid, f"user{i % 37}", f"i{(i * 7) % 200}")
                sent.append(eid)
                await asyncio.sleep(1.0 / rate)

        producer = asyncio.create_task(stream_events(400, 100.0))
        await asyncio.sleep(1.5)
        # a new version is sealed into the followed root while events flow
        await asyncio.to_thread(
            build_tiny_bundle, root, n_items=200, dim=32, version="tiny-2", seed=1
        )
        reloaded_at = time.time()
        await producer
        await c.wait_recs(sent, timeout=60)
        await asyncio.sleep(1.5)

    ids = [r.trigger_event_id for _, _, r, _ in c.recs]
    assert len(ids) == len(set(ids)) == 400, "every event answered exactly once"
    versions = [r.model_version for _, _, r, _ in c.recs]
    assert set(versions) == {"tiny-1", "tiny-2"}
    # the swap is atomic: in each output partition, once tiny-2 appears tiny-1 never returns
    by_partition = defaultdict(list)
    for partition, _offset, rec, _ in sorted(c.recs, key=lambda x: (x[0], x[1])):
        by_partition[partition].append(rec.model_version)
    for seq in by_partition.values():
        if "tiny-2" in seq:
            first = seq.index("tiny-2")
            assert set(seq[first:]) == {"tiny-2"}, seq
    # and it happened within a few reload polls of the bundle appearing
    first_new = min(r.emitted_ts for _, _, r, _ in c.recs if r.model_version == "tiny-2")
    assert first_new - reloaded_at < 5.0
    text = worker.get("/metrics")[1].decode()
    assert 'recstream_model_reloads_total{result="ok"} 2.0' in text
    assert 'recstream_model_info{bucket="control",version="tiny-2"} 1.0' in text
