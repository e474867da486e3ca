"""Replay event synthesis, tail formatting, changelog batching, catalog follower handling."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from recstream.errors import ConfigError
from recstream.schemas import ItemUpdate, Limits, RecItem, Recommendation, SearchText, UserEvent
from stream.catalog import CatalogFollower
from stream.messages import InMessage
from stream.overlay import ItemOverlay
from stream.state import ChangelogBatch, TableView
from stream.testing import FakeRecommender
from tools.replay import dataset_events, query_for, text_only_users
from tools.tail import Titles, format_rec


@dataclass
class _Catalog:
    item_ids: list[str]
    g: dict[int, list[str]]

    def genres(self, row: int) -> list[str]:
        return self.g[row]

    def year(self, row: int) -> int | None:
        return 1995


@dataclass
class _Interactions:
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    user_ids: list[str]


@dataclass
class _Dataset:
    catalog: _Catalog
    interactions: _Interactions
    name: str = "fake"


def fake_dataset(n: int = 2000) -> _Dataset:
    rng = np.random.default_rng(1)
    cat = _Catalog([f"m{i}" for i in range(10)], {i: ["Comedy", "Drama"] for i in range(10)})
    ts = rng.integers(0, 50, size=n).astype(np.float64)  # many ties
    inter = _Interactions(
        rng.integers(0, 5, size=n).astype(np.int32),
        rng.integers(0, 10, size=n).astype(np.int32),
        ts,
        [f"u{i}" for i in range(5)],
    )
    return _Dataset(cat, inter)


def test_replay_keeps_time_order_and_mixes_about_20_percent_queries() -> None:
    ds = fake_dataset()
    events = list(dataset_events(ds, query_fraction=0.2, seed=3))
    clicks = [e for e in events if e.kind == "user_events"]
    queries = [e for e in events if e.kind == "search_text"]
    assert len(clicks) == 2000
    assert 0.17 < len(queries) / len(events) < 0.23
    # clicks in stable time order: ties keep file order
    order = np.argsort(ds.interactions.ts, kind="stable")
    assert [c.body["item_id"] for c in clicks] == [f"m{ds.interactions.item[i]}" for i in order]
    # bodies validate against the schemas once ts is stamped
    for e in events[:50]:
        model = UserEvent if e.kind == "user_events" else SearchText
        model.model_validate({**e.body, "ts": 1.0})
    assert len({e.body["event_id"] for e in events}) == len(events)
    # a query precedes the click it describes, by the same user
    i = next(i for i, e in enumerate(events) if e.kind == "search_text")
    assert events[i + 1].kind == "user_events" and events[i + 1].user_id == events[i].user_id
    with pytest.raises(ConfigError):
        list(dataset_events(ds, query_fraction=1.0))


def test_query_text_mentions_a_genre() -> None:
    rng = np.random.default_rng(0)
    texts = {query_for(["Comedy"], 1994, rng) for _ in range(50)}
    assert all("comedy" in t for t in texts)
    assert any("90s" in t for t in texts)
    assert query_for([], None, rng)  # never empty
    users = text_only_users(["a", "b"])
    assert len({u.user_id for u in users}) == 2 and all(u.kind == "search_text" for u in users)


def test_tail_shows_titles_scores_sources_and_latency(tmp_path: Path) -> None:
    b = tmp_path / "v1"
    b.mkdir()
    (b / "manifest.json").write_text(json.dumps({"version": "v1", "created_at": "x"}))
    (b / "items.jsonl").write_text(json.dumps({"item_id": "m1", "title": "Toy Story"}) + "\n")
    titles = Titles.from_bundle(tmp_path)
    rec = Recommendation(
        user_id="u",
        trigger_event_id="e1",
        trigger="event",
        items=[
            RecItem(item_id="m1", score=0.9, sources=["sequence", "query"], because="m1"),
            RecItem(item_id="zz", score=0.5, sources=["popular"]),
        ],
        model_version="v1",
        event_ts=100.0,
        emitted_ts=100.002,
    )
    text = format_rec(rec, titles, received_ts=100.0125)
    assert "Toy Story" in text and "zz" in text and "sequence+query" in text
    assert "12.5 ms" in text and "because 'Toy Story'" in text
    assert Titles.from_bundle(tmp_path / "missing")("m1") == "m1"


@dataclass
class _Topic:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class _Table:
    changelog_topic: _Topic
    data: dict = field(default_factory=dict)


def test_demo_summary_counts_only_the_events_this_run_published() -> None:
    from tools.demo import LatencyLog
    from tools.replay import Planned

    def rec(event_id: str, event_ts: float) -> Recommendation:
        return Recommendation(
            user_id="u", trigger_event_id=event_id, trigger="event", items=[],
            model_version="v1", event_ts=event_ts, emitted_ts=event_ts,
        )  # fmt: skip

    log = LatencyLog()
    for i in range(3):
        log.sent(Planned("user_events", "u", {}), {"event_id": f"now-{i}", "ts": 1000.0})
    log.add(rec("earlier-run-7", 10.0), received=1000.0)  # replayed by a restarted worker
    for i in range(3):
        log.add(rec(f"now-{i}", 1000.0), received=1000.005 + i * 0.001)
    summary = log.summary()
    assert "3 recommendations for this run's 3 events" in summary
    assert "p99 7.0 ms" in summary and "1 for an earlier run's events not counted" in summary


def test_table_view_coalesces_changelog_per_key_and_partition() -> None:
    batch = ChangelogBatch()
    view = TableView(_Table(_Topic("app-user_sequence-changelog")), batch)
    batch.partition = 2
    view["u1"] = [["m1", 1.0]]
    view["u1"] = [["m1", 1.0], ["m2", 2.0]]
    batch.partition = 3
    view["u2"] = {"text": "x"}
    assert view.get("u1") == [["m1", 1.0], ["m2", 2.0]] and view.get("nope") is None
    out = batch.drain()
    assert [(m.partition, m.key, json.loads(m.value)) for m in out] == [
        (2, b'"u1"', [["m1", 1.0], ["m2", 2.0]]),
        (3, b'"u2"', {"text": "x"}),
    ]
    assert {m.topic for m in out} == {"app-user_sequence-changelog"}
    assert batch.drain() == []


class _Holder:
    def __init__(self, current: FakeRecommender | None, bucket: str = "control") -> None:
        self.current = current
        self.created_ts = 0.0
        self.bucket = bucket


async def test_catalog_follower_applies_records_and_dead_letters_bad_ones() -> None:
    rec = FakeRecommender({"m1": ("One", "")})
    canary = FakeRecommender({"m1": ("One", "")}, version="fake-2")
    dead: list[tuple[str, str]] = []

    async def dead_letter(msg: InMessage, reason: str, error: str) -> None:
        dead.append((reason, error))

    overlay = ItemOverlay()
    follower = CatalogFollower(
        bootstrap="unused:1",
        topic="item-updates",
        holders=[_Holder(rec), _Holder(canary, "canary")],  # type: ignore[list-item]
        overlay=overlay,
        dead_letter=dead_letter,
    )
    up = ItemUpdate(item_id="n1", op="upsert", title="New", text="t", ts=5.0)
    await follower._handle(InMessage("item-updates", 0, 0, b"n1", up.model_dump_json().encode()))
    await follower._handle(InMessage("item-updates", 0, 1, b"m1", b'{"item_id":"m1"}'))
    await follower._handle(InMessage("item-updates", 0, 2, None, None))  # a tombstone of nothing
    assert rec.title("n1") == "New" and canary.title("n1") == "New"  # every serving model
    assert [r for r, _ in dead] == ["schema", "key_mismatch"]
    assert len(overlay) == 1
    # before a model is loaded, updates are only recorded (replayed at load)
    follower.holders = [_Holder(None)]  # type: ignore[list-item]
    gone = ItemUpdate(item_id="m1", op="delete", ts=6.0)
    await follower._handle(InMessage("item-updates", 0, 3, b"m1", gone.model_dump_json().encode()))
    assert rec.title("m1") == "One" and len(overlay) == 2


async def test_a_tombstone_deletes_the_item_its_key_names() -> None:
    # item-updates is compacted: a delete may reach a worker as a null value only.
    rec = FakeRecommender({"m1": ("One", ""), "m2": ("Two", "")})
    dead: list[str] = []

    async def dead_letter(msg: InMessage, reason: str, error: str) -> None:
        dead.append(reason)

    overlay = ItemOverlay()
    follower = CatalogFollower(
        bootstrap="unused:1",
        topic="item-updates",
        holders=[_Holder(rec)],  # type: ignore[list-item]
        overlay=overlay,
        dead_letter=dead_letter,
        clock=lambda: 7.0,
    )
    await follower._handle(InMessage("item-updates", 0, 0, b"m1", None))
    assert dead == [] and rec.title("m1") is None and rec.title("m2") == "Two"
    reloaded = FakeRecommender({"m1": ("One", "")})  # a hot reload gets the delete too
    overlay.replay(reloaded, created_ts=0.0)
    assert len(overlay) == 1 and reloaded.title("m1") is None
    await follower._handle(InMessage("item-updates", 0, 1, b"\xff", None))
    await follower._handle(InMessage("item-updates", 0, 2, b"x" * 300, None))
    assert dead == ["invalid_utf8", "schema"] and rec.title("m2") == "Two"


async def test_the_catalog_applies_the_configured_limits_and_its_key() -> None:
    rec = FakeRecommender({"m1": ("One", "")})
    dead: list[str] = []

    async def dead_letter(msg: InMessage, reason: str, error: str) -> None:
        dead.append(reason)

    limits = Limits(max_message_bytes=2048, max_text_chars=100, max_future_skew_s=60.0)
    follower = CatalogFollower(
        bootstrap="unused:1",
        topic="item-updates",
        holders=[_Holder(rec)],  # type: ignore[list-item]
        overlay=ItemOverlay(),
        dead_letter=dead_letter,
        limits=limits,
    )
    now = time.time()

    def up(item: str, **kw: object) -> bytes:
        return json.dumps({"item_id": item, "op": "upsert", "title": "T", "ts": now, **kw}).encode()

    for i, (key, value) in enumerate(
        [
            (b"a", up("a", text="x" * 3000)),  # 3 KB > max_message_bytes
            (b"b", up("b", text="y" * 101)),  # > max_text_chars
            (b"c", up("c", title="z" * 101)),  # a title is bounded like a text
            (b"d", up("d", ts=now + 3600)),  # beyond the allowed clock skew
            (b"m1", up("e")),  # keyed by another item: compaction would mix them
            (b"f", up("f", text="fine")),
        ]
    ):
        await follower._handle(InMessage("item-updates", 0, i, key, value))
    assert dead == ["too_large", "text_too_long", "text_too_long", "schema", "key_mismatch"]
    assert [rec.title(i) for i in "abcdef"] == [None, None, None, None, None, "T"]
