"""``recstream ab report`` against a hand-built pair of topics on the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recstream.settings import Settings, TopicNames
from tools.ab_kafka import read_range_sync
from tools.ab_report import build_report, join

pytestmark = pytest.mark.integration

BASE = time.time() - 3 * 3600  # the story happens three hours ago
START, END = BASE + 100.0, BASE + 200.0


def rec(user: str, trigger: str, at: float, items: list[str], version: str, bucket: str) -> dict:
    return {
        "user_id": user,
        "trigger_event_id": trigger,
        "trigger": "event",
        "items": [{"item_id": i, "score": 1.0, "sources": ["sequence"]} for i in items],
        "model_version": version,
        "bucket": bucket,
        "event_ts": at - 0.01,
        "emitted_ts": at,
    }


def click(eid: str, user: str, item: str, at: float, kind: str = "click") -> dict:
    return {"event_id": eid, "user_id": user, "item_id": item, "type": kind, "ts": at}


TEN = [f"m{i}" for i in range(10)]
# (topic kind, key, value or raw bytes, record timestamp)
STORY: list[tuple[str, str, Any, float]] = [
    # a (control, v1): shown m0..m9 at +90 (before the range: read thanks to the lookback)
    ("recs", "a", rec("a", "a-q", BASE + 90, TEN, "v1", "control"), BASE + 90),
    ("events", "a", click("a-c1", "a", "m3", BASE + 110), BASE + 110),  # hit, rank 4
    ("recs", "a", rec("a", "a-c1", BASE + 110.2, ["n1", "n2"], "v1", "control"), BASE + 110.2),
    ("events", "a", click("a-c2", "a", "zz", BASE + 120), BASE + 120),  # miss (n1, n2)
    ("recs", "a", rec("a", "a-c2", BASE + 120.2, ["p1"], "v1", "control"), BASE + 120.2),
    ("events", "a", click("a-v", "a", "p1", BASE + 121, kind="view"), BASE + 121),  # not a click
    # b (canary, v2): shown at +105, clicks its first item at +130: hit, rank 1
    ("recs", "b", rec("b", "b-q", BASE + 105, TEN, "v2", "canary"), BASE + 105),
    ("events", "b", click("b-c1", "b", "m0", BASE + 130), BASE + 130),
    ("recs", "b", rec("b", "b-c1", BASE + 130.2, ["q1"], "v2", "canary"), BASE + 130.2),
    # b clicks again, but that click's answer is not on the topic: not judged
    ("events", "b", click("b-c2", "b", "q1", BASE + 135), BASE + 135),
    # c: a click with no earlier list (its answer is canary, v2)
    ("events", "c", click("c-c1", "c", "m0", BASE + 140), BASE + 140),
    ("recs", "c", rec("c", "c-c1", BASE + 140.2, TEN, "v2", "canary"), BASE + 140.2),
    # d: shown long before the lookback: its click counts as no_recommendation too
    ("recs", "d", rec("d", "d-q", BASE - 4000, TEN, "v1", "control"), BASE - 4000),
    ("events", "d", click("d-c1", "d", "m0", BASE + 150), BASE + 150),
    ("recs", "d", rec("d", "d-c1", BASE + 150.2, TEN, "v1", "control"), BASE + 150.2),
    # e (control, v1): a click outside the range (after --to) is not counted
    ("recs", "e", rec("e", "e-q", BASE + 150, TEN, "v1", "control"), BASE + 150),
    ("events", "e", click("e-c1", "e", "m0", END + 10), END + 10),
    # garbage on both topics: skipped and counted
    ("recs", "x", b"{not json", BASE + 160),
    ("events", "x", b"[1, 2]", BASE + 160),
]


async def produce(bootstrap: str, topics: TopicNames) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for kind, key, value, ts in STORY:
            topic = topics.recommendations if kind == "recs" else topics.user_events
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            await producer.send_and_wait(topic, raw, key=key.encode(), timestamp_ms=int(ts * 1000))
    finally:
        await producer.stop()


def test_report_numbers_on_hand_built_topics(kafka, fresh_topics: TopicNames, tmp_path: Path):  # type: ignore[no-untyped-def]
    asyncio.run(produce(kafka.bootstrap, fresh_topics))
    settings = Settings(bootstrap=kafka.bootstrap, topics=fresh_topics)
    read = read_range_sync(settings, START, END, lookback_s=3600.0, progress=False)
    assert read.skipped == {fresh_topics.recommendations: 1, fresh_topics.user_events: 1}
    assert {c.event_id for c in read.clicks} == {"a-c1", "a-c2", "b-c1", "b-c2", "c-c1", "d-c1"}
    assert "d-q" not in {s.trigger_event_id for s in read.sent}  # older than the lookback
    judged = join(read.sent, read.clicks, 10, per_user=4)
    report = build_report(judged, k=10, per_user=4, lists_read=len(read.sent), resamples=200)
    groups = {(g.bucket, g.model_version): (g.clicks, g.hits, g.rr) for g in report.groups}
    assert groups == {("control", "v1"): (2, 1, 0.25), ("canary", "v2"): (1, 1, 1.0)}
    assert report.no_recommendation == {("canary", "v2"): 1, ("control", "v1"): 1}
    assert report.unanswered == 1

    # the command itself: JSON out, and a PNG a person can open
    env = {
        "RECSTREAM_BOOTSTRAP": kafka.bootstrap,
        **{f"RECSTREAM_TOPICS__{k.upper()}": v for k, v in fresh_topics.model_dump().items()},
    }
    from recstream.cli import app

    png = tmp_path / "ab.png"
    args = ["ab", "report", "--from", str(START), "--to", str(END), "--json", "--plot", str(png)]
    result = CliRunner().invoke(app, args, env={**os.environ, **env})
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    by = {(g["bucket"], g["model_version"]): g for g in out["groups"]}
    assert by[("control", "v1")]["hr@10"] == 0.5 and by[("control", "v1")]["mrr@10"] == 0.125
    assert by[("canary", "v2")]["hr@10"] == 1.0
    assert out["unanswered"] == 1 and out["per_user_lists"] == 4  # the worker's default
    (hr, mrr) = out["difference_canary_minus_control"]
    assert hr["value"] == pytest.approx(0.5) and mrr["value"] == pytest.approx(0.875)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
