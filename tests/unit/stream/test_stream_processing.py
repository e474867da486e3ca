"""BatchProcessor: decoding, DLQ, per-user order, exclusions, query caching, failures."""

from __future__ import annotations

import json

import pytest

from recstream.schemas import DLQRecord, Recommendation
from recstream.settings import TopicNames
from stream.messages import InMessage
from stream.metrics import WorkerMetrics
from stream.processing import BatchProcessor, unpack_vector
from stream.settings import WorkerSettings
from stream.testing import FakeRecommender

TOPICS = TopicNames()
ITEMS = {
    "m1": ("Toy Story", "animation comedy"),
    "m2": ("Heat", "crime thriller"),
    "m3": ("Alien", "horror sci-fi"),
    "m4": ("Scream", "horror slasher"),
    "m5": ("Babe", "comedy family"),
}


def click(eid: str, user: str, item: str, ts: float = 1000.0) -> dict:
    return {"event_id": eid, "user_id": user, "item_id": item, "type": "click", "ts": ts}


def query(eid: str, user: str, text: str, ts: float = 1000.0) -> dict:
    return {"event_id": eid, "user_id": user, "text": text, "ts": ts}


class Harness:
    def __init__(self, passthrough: bool = False, **ws: object) -> None:
        self.model = FakeRecommender(ITEMS)
        self.sequences: dict = {}
        self.interests: dict = {}
        self.metrics = WorkerMetrics()
        self.clicks: list[str] = []
        self.offset = 0
        self.proc = BatchProcessor(
            settings=WorkerSettings(passthrough=passthrough, store="memory://", **ws),  # type: ignore[arg-type]
            topics=TOPICS,
            model=lambda: self.model,
            sequences=self.sequences,
            interests=self.interests,
            metrics=self.metrics,
            on_click=self.clicks.append,
            clock=lambda: 1000.5,
        )

    def msg(self, value: dict | bytes | None, topic: str | None = None) -> InMessage:
        if topic is None:
            topic = (
                TOPICS.search_text
                if isinstance(value, dict) and "text" in value
                else TOPICS.user_events
            )
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        self.offset += 1
        key = value["user_id"].encode() if isinstance(value, dict) and "user_id" in value else b"k"
        return InMessage(topic, 0, self.offset, key, raw)

    def run(self, *values: dict | bytes | None):
        return self.proc.process([self.msg(v) for v in values])

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def recs(out) -> list[Recommendation]:
    return [
        Recommendation.model_validate_json(m.value)
        for m in out.messages
        if m.topic == TOPICS.recommendations
    ]


def dlqs(out) -> list[DLQRecord]:
    return [DLQRecord.model_validate_json(m.value) for m in out.messages if m.topic == TOPICS.dlq]


def test_every_valid_event_gets_one_recommendation_naming_it() -> None:
    h = Harness()
    out = h.run(click("e1", "u1", "m1"), click("e2", "u2", "m2"), query("e3", "u1", "horror"))
    got = recs(out)
    assert [r.trigger_event_id for r in got] == ["e1", "e2", "e3"]
    assert [r.trigger for r in got] == ["event", "event", "query"]
    assert {r.model_version for r in got} == {"fake-1"}
    assert all(r.emitted_ts == 1000.5 and r.event_ts == 1000.0 for r in got)
    assert len(h.model.batches) == 1, "one model call per batch"
    assert h.clicks == ["m1", "m2"]


def test_consumed_items_are_never_recommended_and_state_keeps_order() -> None:
    h = Harness()
    out = h.run(click("e1", "u1", "m1"), click("e2", "u1", "m5"), click("e3", "u1", "m2"))
    got = recs(out)
    consumed: set[str] = set()
    for r, item in zip(got, ["m1", "m5", "m2"], strict=True):
        consumed.add(item)
        assert not consumed & {i.item_id for i in r.items}
    # each request saw the history as of its own event (per-user order inside a batch)
    histories = [req.history for req in h.model.batches[0]]
    assert histories == [("m1",), ("m1", "m5"), ("m1", "m5", "m2")]
    stored = {k: v for k, v in h.sequences["u1"].items() if k != "applied"}
    assert stored == {"items": ["m1", "m5", "m2"], "ts_ms": [1_000_000] * 3}


def test_sequence_is_capped_but_exclusion_window_is_longer() -> None:
    h = Harness(sequence_length=2, exclude_window=3)
    h.run(*[click(f"e{i}", "u", f"m{i}") for i in range(1, 6)])
    last = h.model.batches[0][-1]
    assert last.history == ("m4", "m5")
    assert last.exclude == frozenset({"m3", "m4", "m5"})
    assert h.sequences["u"]["items"] == ["m3", "m4", "m5"]


def test_text_only_user_gets_query_matches_and_vector_is_cached() -> None:
    h = Harness()
    got = recs(h.run(query("q1", "new", "horror")))
    assert {i.item_id for i in got[0].items[:2]} == {"m3", "m4"}
    cached = h.interests["new"]
    assert cached["model_version"] == "fake-1" and cached["text"] == "horror"
    assert unpack_vector(cached["vector"]).shape == (8,)
    # the next click reuses the cached vector instead of re-encoding the text
    h.run(click("c1", "new", "m1", ts=1001.0))
    req = h.model.batches[-1][0]
    assert req.query == "horror" and req.query_vector is not None
    assert req.query_age_s == pytest.approx(1.0)


def test_cached_vector_of_another_model_version_is_not_reused() -> None:
    h = Harness()
    h.run(query("q1", "u", "horror"))
    h.model = FakeRecommender(ITEMS, version="fake-2")
    h.run(click("c1", "u", "m1", ts=1001.0))
    assert h.model.batches[-1][0].query_vector is None


def test_stale_query_is_dropped() -> None:
    h = Harness(query_ttl_s=10.0)
    h.run(query("q1", "u", "horror", ts=1000.0))
    h.run(click("c1", "u", "m1", ts=1020.0))
    assert h.model.batches[-1][0].query is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (json.dumps({"event_id": "x", "user_id": "u"}).encode(), "schema"),
        (None, "empty"),
        (b"x" * 70_000, "too_large"),
    ],
)
def test_invalid_messages_go_to_dlq_and_neighbours_are_answered(raw, reason) -> None:
    h = Harness()
    msgs = [
        h.msg(click("a", "u", "m1")),
        h.msg(raw, TOPICS.user_events),
        h.msg(click("b", "u", "m2")),
    ]
    out = h.proc.process(msgs)
    assert [r.trigger_event_id for r in recs(out)] == ["a", "b"]
    (d,) = dlqs(out)
    assert (d.topic, d.partition, d.offset, d.reason) == (
        TOPICS.user_events,
        0,
        msgs[1].offset,
        reason,
    )
    if raw == b"\xff\xfe":
        assert d.raw_encoding == "base64"
    assert h.sample("recstream_dlq_total", topic=TOPICS.user_events, reason=reason) == 1.0
    assert h.sample("recstream_events_in_total", topic=TOPICS.user_events) == 3.0


@pytest.mark.parametrize("key", [b"mallory", None, b"u\x00", "ü".encode("latin-1")])
def test_a_record_keyed_other_than_its_user_is_dead_lettered_not_applied(key) -> None:
    # Keyed otherwise, the record sits on another partition than its user's state:
    # applying it would split the user's history between two owners.
    h = Harness()
    good = h.msg(click("a", "ü", "m1"))
    for topic, body in ((TOPICS.user_events, click("b", "ü", "m2")), (None, query("c", "ü", "x"))):
        bad = h.msg(body, topic)
        bad = InMessage(bad.topic, bad.partition, bad.offset, key, bad.value)
        out = h.proc.process([good, bad] if topic else [bad])
        (d,) = dlqs(out)
        assert (d.offset, d.reason, d.topic) == (bad.offset, "key_mismatch", bad.topic)
        assert "mallory" not in d.error  # the key is in the record, not in the error/log
    assert h.sequences["ü"]["items"] == ["m1"]  # the mis-keyed click was not applied
    assert "ü" not in h.interests
    assert h.sample("recstream_dlq_total", topic=TOPICS.user_events, reason="key_mismatch") == 1


def test_model_failure_isolates_the_bad_request() -> None:
    h = Harness()
    h.model.fail_users.add("bad")
    out = h.run(click("a", "ok", "m1"), click("b", "bad", "m1"), click("c", "ok2", "m1"))
    assert [r.trigger_event_id for r in recs(out)] == ["a", "c"]
    assert [d.reason for d in dlqs(out)] == ["processing"]


def test_passthrough_skips_model_and_state() -> None:
    h = Harness(passthrough=True)
    got = recs(h.run(click("a", "u", "m1"), query("b", "u", "x")))
    assert [(r.trigger_event_id, r.items, r.model_version) for r in got] == [
        ("a", [], "passthrough"),
        ("b", [], "passthrough"),
    ]
    assert h.model.batches == [] and h.sequences == {}


def test_every_state_write_happens_in_its_own_messages_context() -> None:
    h = Harness()
    current: list[int] = [-1]
    writes: list[tuple[str, int]] = []

    class Recording(dict):
        def __setitem__(self, key, value) -> None:
            writes.append((key, current[0]))
            super().__setitem__(key, value)

    h.proc.sequences = Recording()
    h.proc.interests = Recording()
    h.proc.on_message = lambda m: current.__setitem__(0, m.partition)
    a = InMessage(TOPICS.search_text, 1, 10, b"a", json.dumps(query("q", "a", "horror")).encode())
    b = InMessage(TOPICS.user_events, 3, 11, b"b", json.dumps(click("c", "b", "m1")).encode())
    h.proc.process([a, b])
    # the query's vector is cached after the model call: still under partition 1
    assert writes == [("a", 1), ("b", 3), ("a", 1)]
