"""One real worker on a real broker: clicks, text-only users, DLQ, endpoints, metrics."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from inference.testing import genre_of

pytestmark = pytest.mark.integration


def genre(item_id: str) -> str:
    return genre_of(int(item_id.removeprefix("i")))


async def test_events_queries_and_bad_messages(workers, make_client, tiny_bundle_root) -> None:
    worker = workers.start(tiny_bundle_root)
    await asyncio.to_thread(worker.wait_ready, 120)
    async with make_client() as c:
        clicks = [("c1", "i0"), ("c2", "i8"), ("c3", "i16"), ("c4", "i24")]  # comedies
        for eid, item in clicks[:2]:
            await c.click(eid, "alice", item)
        bad_json = await c.send("user_events", "alice", b"{oops")
        for eid, item in clicks[2:]:
            await c.click(eid, "alice", item)
        bad_schema = await c.send("search_text", "bob", {"event_id": "x", "user_id": "bob"})
        await c.query("q1", "newcomer", "scary ghost monster")
        event_ids = [eid for eid, _ in clicks] + ["q1"]
        await c.wait_recs(event_ids)
        await c.wait_for(lambda: len(c.dlq) >= 2)
        await asyncio.sleep(1.0)  # anything extra would show up now

        # exactly one recommendation per valid event, naming it
        ids = [r.trigger_event_id for _, _, r, _ in c.recs]
        assert sorted(ids) == sorted(event_ids)
        # never an item the user already consumed (as of that event)
        consumed: set[str] = set()
        for eid, item in clicks:
            consumed.add(item)
            rec = c.rec_for(eid)
            assert rec is not None and rec.trigger == "event" and rec.model_version == "tiny-1"
            assert len(rec.items) == 10
            assert not consumed & {i.item_id for i in rec.items}, (eid, rec.items)
        # with a comedy history the sequence source drives the list
        last = c.rec_for("c4")
        assert last is not None
        assert sum(genre(i.item_id) == "comedy" for i in last.items) >= 6
        assert any("sequence" in i.sources for i in last.items)
        # a text-only new user gets items of the query's genre
        q = c.rec_for("q1")
        assert q is not None and q.trigger == "query"
        assert sum(genre(i.item_id) == "horror" for i in q.items) >= 8, q.items
        assert any("query" in i.sources for i in q.items)

        # malformed inputs went to the DLQ with their coordinates and a reason
        by_reason = {d.reason: d for d in c.dlq}
        assert set(by_reason) == {"invalid_json", "schema"}
        j, s = by_reason["invalid_json"], by_reason["schema"]
        assert (j.topic, j.partition, j.offset, j.raw) == (
            c.topics.user_events,
            bad_json.partition,
            bad_json.offset,
            "{oops",
        )
        assert (s.topic, s.partition, s.offset) == (
            c.topics.search_text,
            bad_schema.partition,
            bad_schema.offset,
        )
        assert "text" in s.error

    # Only the documented endpoints: Faust's table views would serve alice's history and
    # newcomer's query text, its router the cluster layout.
    for path in (
        "/", "/table/", "/table/user_sequence/", "/table/user_sequence/alice/",
        "/table/user_interest/newcomer/", "/table/trending/", "/router/",
        "/router/user_sequence/alice/", "/stats/", "/graph/", "/assignment/",
        "/performance/", "/metrics/", "/users/", "/users/alice", "/nope",
    ):  # fmt: skip
        status, body = worker.get(path)
        assert status == 404, (path, status, body[:200])
        assert b"alice" not in body and b"scary" not in body, path

    # read-only endpoints
    status, body = worker.get("/healthz")
    assert status == 200
    status, body = worker.get("/users/alice/recommendations")
    assert status == 200 and json.loads(body)["trigger_event_id"] == "c4"
    assert worker.get("/users/nobody/recommendations")[0] == 404
    ready = worker.readiness()
    assert ready and ready["ready"] and ready["input_partitions"] == [0, 1, 2, 3]
    status, body = worker.get("/trending")
    assert status == 200 and {"item_id": "i0", "clicks": 1} in json.loads(body)["items"]

    # metrics: the latency histogram with the documented buckets, DLQ by reason
    status, body = worker.get("/metrics")
    text = body.decode()
    assert status == 200
    for le in ("0.001", "0.015", "0.1", "1.0", "+Inf"):
        assert f'recstream_e2e_latency_seconds_bucket{{le="{le}",trigger="event"}}' in text
    count = re.search(r'recstream_e2e_latency_seconds_count\{trigger="event"\} (\S+)', text)
    assert count and float(count.group(1)) == 4.0
    assert re.search(r'recstream_dlq_total\{reason="invalid_json",topic="[^"]+"\} 1\.0', text), (
        "dlq counter"
    )
    assert 'recstream_model_info{bucket="control",version="tiny-1"} 1.0' in text
    assert "recstream_index_items 200.0" in text
    for stage in ("decode", "encode_text", "encode_sequence", "search", "fuse", "produce"):
        assert f'recstream_stage_latency_seconds_count{{stage="{stage}"}}' in text

    # consumer lag per input partition (the "lag growing" alert reads it), set every 5 s
    topic = workers.settings.topics.user_events
    lag = re.compile(rf'recstream_consumer_lag\{{partition="(\d)",topic="{topic}"\}} (\S+)')
    for _ in range(40):
        found = {p: float(v) for p, v in lag.findall(worker.get("/metrics")[1].decode())}
        if len(found) == 4:
            break
        await asyncio.sleep(0.5)
    assert sorted(found) == ["0", "1", "2", "3"], found
    assert all(0 <= v <= 10 for v in found.values()), found  # a handful of events, all answered
