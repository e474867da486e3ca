"""User state survives a worker restart (tables rebuilt from their changelog topics)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from inference.testing import genre_of

pytestmark = pytest.mark.integration


async def changelog_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> end offset, for the partitions holding records."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: end for tp, end in ends.items() if end > 0}
    finally:
        await consumer.stop()


def persisted_offsets(
    tables: Path, table: str, partitions: dict[int, int]
) -> dict[int, int | None]:
    """What each partition's RocksDB store recorded as its acknowledged changelog offset."""
    from rocksdict import AccessType, Rdict

    out: dict[int, int | None] = {}
    for p in partitions:
        db = Rdict(str(tables / f"{table}-{p}.db"), access_type=AccessType.read_only())
        try:
            raw = db.get(b"__faust\x00offset__")
            out[p] = None if raw is None else int(raw)
        finally:
            db.close()
    return out


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
    if store == "rocksdb://":
        # The store knows how far its changelog is acknowledged, so a restart reads only
        # what comes after (before: it re-read everything since the previous restart).
        ends = await changelog_ends(workers.settings.bootstrap, f"{group}-user_sequence-changelog")
        data = workers.settings.state_dir / "worker" / group / "v1" / "tables"
        assert persisted_offsets(data, "user_sequence", ends) == {p: e - 1 for p, e in ends.items()}

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
