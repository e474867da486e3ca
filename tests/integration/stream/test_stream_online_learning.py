"""Online item learning on a real broker with two workers (stream.learning): clicks on a
new item teach it, both workers serve what it learned, and after a kill -9 and restart the
learned state is back (from the table's changelog) with every click folded exactly once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest

from inference.online import LearnedItem
from inference.testing import genre_of
from tests.integration.reliability.faults import table_from_changelog

pytestmark = pytest.mark.integration

# the tiny bundle's genres (inference.testing): 200 items, item iN has genre_of(N)
COMEDY = [f"i{r}" for r in range(200) if genre_of(r) == "comedy"]
HORROR = [f"i{r}" for r in range(200) if genre_of(r) == "horror"]
GENRES = ("comedy", "horror", "romance", "action", "scifi", "documentary")
ONLINE = {  # learning on; from the first 20 users (the default waits for 100)
    "RECSTREAM_WORKER_ONLINE_LEARNING": "true",
    "RECSTREAM_INFERENCE_ONLINE__CENTRE_WARMUP": "20",
    "RECSTREAM_INFERENCE_ONLINE__LR_NEW": "0.5",
    "RECSTREAM_INFERENCE_ONLINE__BOUND_NEW": "1.0",
}


def _metric(worker: Any, name: str) -> float:
    text = worker.get("/metrics")[1].decode()
    found = re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return sum(float(x) for x in found)


async def _settled(a: Any, b: Any) -> None:
    deadline = time.monotonic() + 120
    while True:
        ra, rb = a.readiness(), b.readiness()
        if ra and rb and ra["ready"] and rb["ready"]:
            parts = sorted(ra["input_partitions"] + rb["input_partitions"])
            if parts == [0, 1, 2, 3] and ra["input_partitions"] and rb["input_partitions"]:
                return
        assert time.monotonic() < deadline, f"partitions never settled: {ra} {rb}"
        await asyncio.sleep(0.5)


async def _probe(c: Any, user: str, items: list[str], tag: str) -> list[str]:
    """``user`` clicks ``items``; the items of the answer to the last click."""
    ids = [f"{tag}-{user}-{n}" for n in range(len(items))]
    for eid, item in zip(ids, items, strict=True):
        await c.click(eid, user, item)
    await c.wait_recs(ids, timeout=60)
    rec = c.rec_for(ids[-1])
    assert rec is not None
    return [it.item_id for it in rec.items]


async def test_clicks_teach_a_new_item_on_both_workers_and_survive_kill9(
    workers, make_client, tiny_bundle_root
) -> None:
    app_id = f"it-learn-{uuid.uuid4().hex[:8]}"
    a = workers.start(tiny_bundle_root, app_id=app_id, extra=ONLINE)
    b = workers.start(tiny_bundle_root, app_id=app_id, extra=ONLINE)
    await asyncio.gather(asyncio.to_thread(a.wait_ready, 120), asyncio.to_thread(b.wait_ready, 120))
    await _settled(a, b)
    async with make_client() as c:
        await c.item("new-1", "upsert", "Untitled", "a film about a story")
        await c.wait_for(
            lambda: all(_metric(w, "recstream_index_items") == 201 for w in (a, b)), 60
        )
        # users of every taste, so each worker knows what all users share
        sent = []
        for g in GENRES:
            items = [f"i{r}" for r in range(200) if genre_of(r) == g]
            for n in range(4):
                for k in range(3):
                    eid = f"warm-{g}-{n}-{k}"
                    await c.click(eid, f"{g}-{n}", items[-1 - n - k])
                    sent.append(eid)
        await c.wait_recs(sent, timeout=60)
        # twelve comedy fans (spread over both workers' partitions) click the new item
        clicks = 0
        for n in range(12):
            fan = f"fan-{n}"
            await _probe(c, fan, COMEDY[(n % 6) * 3 : (n % 6) * 3 + 3], "hist")
            await c.click(f"new-click-{n}", fan, "new-1")
            clicks += 1
        await c.wait_recs([f"new-click-{n}" for n in range(12)], timeout=60)
        # both workers apply what the learner folded
        await c.wait_for(
            lambda: all(_metric(w, "recstream_learned_items") >= 1 for w in (a, b)), 30
        )
        learned = await table_from_changelog(workers.settings, app_id, "item_learned")
        assert LearnedItem.from_json(learned["new-1"]).clicks == clicks
        # a comedy lover on each worker is now shown it, a horror lover is not
        shown = {}
        for n in range(8):
            user = f"probe-{n}"
            top = await _probe(c, user, COMEDY[:20], "probe")
            owner = a if a.get(f"/users/{user}/recommendations")[0] == 200 else b
            shown.setdefault(owner.web_port, []).append("new-1" in top)
        assert set(shown) == {a.web_port, b.web_port}, "probes reached both workers"
        assert all(all(v) for v in shown.values()), shown
        for n in range(4):
            assert "new-1" not in await _probe(c, f"critic-{n}", HORROR[:20], "critic")

        # kill -9 one worker; restart it: the table comes back from its changelog
        a.proc.kill()
        a.proc.wait()
        a2 = workers.start(tiny_bundle_root, app_id=app_id, extra=ONLINE)
        await asyncio.to_thread(a2.wait_ready, 180)
        await _settled(a2, b)
        assert _metric(a2, "recstream_learned_items") >= 1  # applied before it was ready
        for n in range(12, 15):  # more clicks fold onto the restored state
            fan = f"fan-{n}"
            await _probe(c, fan, COMEDY[3:6], "hist")
            await c.click(f"new-click-{n}", fan, "new-1")
            clicks += 1
        await c.wait_recs([f"new-click-{n}" for n in range(12, 15)], timeout=60)
        await asyncio.sleep(3.0)
        learned = await table_from_changelog(workers.settings, app_id, "item_learned")
        # every click folded once: none lost with the killed worker, none folded twice
        assert LearnedItem.from_json(learned["new-1"]).clicks == clicks
        for n in range(4):
            user = f"again-{n}"
            top = await _probe(c, user, COMEDY[:20], "again")
            assert "new-1" in top, user
