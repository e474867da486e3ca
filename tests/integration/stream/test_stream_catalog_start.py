"""At start a worker answers nothing before it has replayed the catalog (item-updates),
and a null value (compaction's tombstone) deletes the item its key names."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

pytestmark = pytest.mark.integration

SURVIVORS = {f"i{n}" for n in range(10)}  # of the tiny bundle's i0..i199
FILLER = 3000  # upserts replayed before the deletes: the catalog takes seconds to catch up


async def test_no_answer_before_the_catalog_caught_up_and_tombstones_delete(
    workers, make_client, tiny_bundle_root
) -> None:
    async with make_client() as c:
        topic = c.topics.item_updates
        sends = []
        for k in range(FILLER):  # items added since the bundle; any of them may be served
            body = {"item_id": f"new-{k}", "op": "upsert", "title": f"New {k}",
                    "text": "a comedy jokes movie" if k % 2 else "a horror fear movie",
                    "ts": time.time()}  # fmt: skip
            sends.append(
                await c.producer.send(
                    topic, json.dumps(body).encode(), key=body["item_id"].encode()
                )
            )
        for n in range(10, 200):  # every other catalog item deleted, last in the topic
            item = f"i{n}"
            if n % 2:  # as compaction leaves a delete: a tombstone
                value = None
            else:
                value = json.dumps({"item_id": item, "op": "delete", "ts": time.time()}).encode()
            sends.append(await c.producer.send(topic, value, key=item.encode()))
        await asyncio.gather(*sends)
        # events already waiting when the worker starts: answered as soon as it may
        events = []
        for n in range(40):
            user = f"u{n}"
            if n % 2:
                await c.query(f"q{n}", user, "funny comedy jokes" if n % 4 == 1 else "horror fear")
            else:
                await c.click(f"c{n}", user, f"i{n % 10}")
            events.append(f"{'q' if n % 2 else 'c'}{n}")

        worker = workers.start(tiny_bundle_root)
        await c.wait_recs(events, timeout=180)
        await asyncio.sleep(1.0)  # a dead letter for a tombstone would be written by now

    allowed = SURVIVORS | {f"new-{k}" for k in range(FILLER)}
    for _, _, rec, _ in c.recs:
        served = {i.item_id for i in rec.items}
        assert served <= allowed, (rec.trigger_event_id, sorted(served - allowed))
        assert rec.items, rec.trigger_event_id
    assert not [d for d in c.dlq if d.topic == topic], [d.reason for d in c.dlq]
    ready = await asyncio.to_thread(worker.wait_ready, 30)
    assert ready["catalog_caught_up"] is True
    text = worker.get("/metrics")[1].decode()
    assert f"recstream_index_items {float(len(SURVIVORS) + FILLER)}" in text
