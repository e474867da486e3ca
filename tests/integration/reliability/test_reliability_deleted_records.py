"""Input records deleted before a worker read them (retention, DeleteRecords): the worker
says so, counts them, and goes on from the earliest record that exists.

Before, the restarted worker waited for its committed offset, which no longer existed,
and dropped every later record while /readyz said ready: a silent stall.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from recstream.kafka_admin import client_kwargs
from recstream.settings import Settings
from tests.integration.reliability.faults import Traffic, WorkerPool, drain, wait_until
from tests.integration.reliability.kafkaio import producer

pytestmark = pytest.mark.integration


async def clicks(settings: Settings, prefix: str, n: int) -> dict[str, dict]:
    """``n`` clicks on partition 0 of user-events; event id -> event."""
    p = producer(settings.bootstrap)
    await p.start()
    try:
        events = {
            f"{prefix}{i}": {"event_id": f"{prefix}{i}", "user_id": f"u{i % 7}",
                             "item_id": f"i{i % 50}", "type": "click", "ts": time.time()}
            for i in range(n)
        }  # fmt: skip
        for e in events.values():
            await p.send_and_wait(settings.topics.user_events, json.dumps(e).encode(),
                                  key=e["user_id"].encode(), partition=0)  # fmt: skip
        return events
    finally:
        await p.stop()


async def committed(settings: Settings, group: str) -> int | None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings.bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        meta = offsets.get(TopicPartition(settings.topics.user_events, 0))
        return None if meta is None else meta.offset
    finally:
        await admin.close()


async def delete_before(settings: Settings, offset: int) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(settings.bootstrap))
    await admin.start()
    try:
        tp = TopicPartition(settings.topics.user_events, 0)
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=offset)})
        return low[tp]
    finally:
        await admin.close()


async def test_records_deleted_before_a_restart_are_skipped_counted_and_named(
    rel_settings: Settings, rel_bundle: Path, rel_tmp: Path
) -> None:
    app_id = f"rel-del-{uuid.uuid4().hex[:6]}"
    pool = WorkerPool(rel_settings, rel_bundle, rel_tmp, app_id)
    topic = rel_settings.topics.user_events
    try:
        worker = pool.start()
        await asyncio.to_thread(worker.wait_ready, 180)
        seen = Traffic(events=await clicks(rel_settings, "a", 20))  # offsets 0..19
        recs, _ = await drain(rel_settings, seen, timeout_s=90)
        assert {r["trigger_event_id"] for r in recs} >= set(seen.events)
        await asyncio.to_thread(
            wait_until, lambda: asyncio.run(committed(rel_settings, app_id)) == 20, 30,
            "offset 20 committed",
        )  # fmt: skip
        slot = pool.slot(worker)
        worker.stop()

        missed = await clicks(rel_settings, "b", 30)  # offsets 20..49, while no worker runs
        assert await delete_before(rel_settings, 40) == 40  # 20..39 gone before being read
        worker = pool.start(slot=slot)
        await asyncio.to_thread(worker.wait_ready, 180)
        later = await clicks(rel_settings, "c", 10)  # offsets 50..59
        kept = {e: v for e, v in missed.items() if int(e[1:]) >= 20} | later
        recs, _ = await drain(rel_settings, Traffic(events=kept), timeout_s=90, stall_s=30)
        answered = {r["trigger_event_id"] for r in recs}
        assert set(kept) <= answered, f"{len(set(kept) - answered)} of {len(kept)} never answered"
        assert not answered & {e for e in missed if int(e[1:]) < 20}  # they never reached it
        metrics = worker.get("/metrics")[1].decode()
        line = f'recstream_consumer_skipped_offsets_total{{partition="0",topic="{topic}"}} 20.0'
        assert line in metrics, [m for m in metrics.splitlines() if "skipped" in m]
        assert f"{topic}[0]: offsets 20..39 no longer exist" in worker.log_file.read_text()
        assert not pool.crashed(), pool.crashed()
    finally:
        pool.stop_all()
