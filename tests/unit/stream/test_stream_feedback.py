"""Live feedback: the judging rule, its bounded memory, its metrics, and the processor's
per-bucket routing feeding it (what ``Worker.handle_batch`` does per answer)."""

from __future__ import annotations

import json

import pytest

from recstream.schemas import Recommendation
from recstream.settings import TopicNames
from stream.buckets import CANARY, CONTROL, Buckets, Canary
from stream.feedback import LiveFeedback, Shown, ShownLists, judge
from stream.messages import InMessage
from stream.metrics import WorkerMetrics
from stream.processing import Answer, BatchProcessor
from stream.settings import WorkerSettings
from stream.testing import FakeRecommender

TOPICS = TopicNames()
ITEMS = {f"m{i}": (f"Movie {i}", "drama") for i in range(30)}


def shown(ts: float, *items: str, version: str = "v1", bucket: str = CONTROL) -> Shown:
    return Shown(ts, tuple(items), version, bucket)


def test_judge_hit_rank_miss_and_cutoff() -> None:
    s = shown(1.0, "a", "b", "c", "d")
    assert judge(s, "a", 10) == ("hit", 1)
    assert judge(s, "c", 10) == ("hit", 3)
    assert judge(s, "z", 10) == ("miss", None)
    assert judge(s, "d", 3) == ("miss", None)  # below rank k is a miss
    assert judge(None, "a", 10) == ("no_recommendation", None)


def test_lists_before_a_click_and_their_bounds() -> None:
    lists = ShownLists(per_user=3, max_users=2)
    lists.remember("u", shown(1.0, "a"))
    lists.remember("u", shown(2.0, "b"))
    lists.remember("u", shown(3.0, "c"))
    assert lists.before("u", 2.5) == shown(2.0, "b")
    assert lists.before("u", 3.0) == shown(3.0, "c")  # emitted at the click's ts counts
    assert lists.before("u", 0.5) is None  # nothing was on its way before then
    lists.remember("u", shown(4.0, "d"))  # per_user=3: the list at 1.0 is forgotten
    assert lists.before("u", 1.5) is None
    lists.remember("v", shown(1.0, "x"))
    lists.remember("w", shown(1.0, "y"))  # max_users=2: u (least recently sent) goes
    assert lists.before("u", 9.0) is None and len(lists) == 2
    assert lists.before("v", 9.0) == shown(1.0, "x")


def sample(m: WorkerMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_live_feedback_counts_hit_rank_labels_miss_age_and_no_recommendation() -> None:
    m = WorkerMetrics()
    fb = LiveFeedback(m, k=10, per_user=4, max_users=100)
    # a first click: nothing was sent before, so no_recommendation (labels of its answer)
    fb.observe("u1", "m0", 100.0, shown(100.1, "m3", "m4", "m5", version="v2", bucket=CANARY))
    assert sample(m, "recstream_online_feedback_total", model_version="v2", bucket=CANARY,
                  outcome="no_recommendation") == 1  # fmt: skip
    # a click on the third item of that list: a hit at rank 3, labelled by that list
    fb.observe("u1", "m5", 130.1, shown(130.2, "m9", version="v1", bucket=CONTROL))
    labels = {"model_version": "v2", "bucket": CANARY}
    assert sample(m, "recstream_online_feedback_total", **labels, outcome="hit") == 1
    assert sample(m, "recstream_online_feedback_rank_bucket", **labels, le="2.0") == 0
    assert sample(m, "recstream_online_feedback_rank_bucket", **labels, le="3.0") == 1
    assert sample(m, "recstream_online_feedback_reciprocal_rank_total", **labels) == pytest.approx(
        1 / 3
    )
    assert sample(m, "recstream_online_feedback_age_seconds_sum", **labels) == pytest.approx(30.0)
    # a query answer (no click) is remembered, not judged
    fb.observe("u1", None, 140.0, shown(140.1, "m7", "m8", version="v1", bucket=CONTROL))
    # a click on something else: a miss of the newest list emitted before it
    fb.observe("u1", "m20", 141.0, shown(141.1, "m1", version="v1", bucket=CONTROL))
    v1 = {"model_version": "v1", "bucket": CONTROL}
    assert sample(m, "recstream_online_feedback_total", **v1, outcome="miss") == 1
    assert sample(m, "recstream_online_feedback_total", **v1, outcome="hit") == 0
    assert sample(m, "recstream_online_feedback_rank_count", **v1) == 0


def test_a_click_sent_before_the_latest_answer_is_judged_against_the_one_before() -> None:
    """Events can outrun answers: a list emitted after the click was not seen."""
    m = WorkerMetrics()
    fb = LiveFeedback(m, k=10, per_user=4, max_users=100)
    fb.observe("u", None, 10.0, shown(10.1, "a", "b"))
    fb.observe("u", None, 10.2, shown(10.5, "c", "d"))
    fb.observe("u", "b", 10.3, shown(10.6, "e"))  # sent at 10.3: 10.5's list not yet out
    assert sample(m, "recstream_online_feedback_rank_bucket", model_version="v1",
                  bucket=CONTROL, le="2.0") == 1  # fmt: skip


def test_feedback_off_counts_and_keeps_nothing() -> None:
    m = WorkerMetrics()
    fb = LiveFeedback(m, k=10, per_user=4, max_users=100, enabled=False)
    fb.observe("u", None, 1.0, shown(1.1, "a"))
    fb.observe("u", "a", 2.0, shown(2.1, "b"))
    assert len(fb.lists) == 0
    assert sample(m, "recstream_online_feedback_total", model_version="v1", bucket=CONTROL,
                  outcome="hit") == 0  # fmt: skip


# -- the processor: buckets, one model call per bucket, answers that name them ---------


class Harness:
    def __init__(self, share: float) -> None:
        self.control = FakeRecommender(ITEMS, version="ctl-1")
        self.canary = FakeRecommender(ITEMS, version="can-1")
        self.buckets = Buckets("salt", share)
        self.metrics = WorkerMetrics()
        self.offset = 0
        self.proc = BatchProcessor(
            settings=WorkerSettings(store="memory://"),
            topics=TOPICS,
            model=lambda: self.control,
            canary=lambda: Canary(self.canary, self.buckets),
            sequences={},
            interests={},
            metrics=self.metrics,
            clock=lambda: 1000.5,
        )
        self.feedback = LiveFeedback(self.metrics, k=10, per_user=4, max_users=100)

    def run(self, *values: dict) -> list[Answer]:
        msgs = []
        for v in values:
            self.offset += 1
            topic = TOPICS.search_text if "text" in v else TOPICS.user_events
            key = v["user_id"].encode()
            msgs.append(InMessage(topic, 0, self.offset, key, json.dumps(v).encode()))
        out = self.proc.process(msgs)
        for a in out.recommendations:  # as Worker.handle_batch does
            s = Shown(a.emitted_ts, a.items, a.model_version, a.bucket)
            self.feedback.observe(a.user_id, a.clicked, a.event_ts, s)
        return out.recommendations


def click(eid: str, user: str, item: str, ts: float) -> dict:
    return {"event_id": eid, "user_id": user, "item_id": item, "type": "click", "ts": ts}


def test_a_mixed_batch_calls_each_bucket_model_once_and_names_the_bucket() -> None:
    h = Harness(share=0.5)
    users = [f"user-{i}" for i in range(40)]
    answers = h.run(*(click(f"e{i}", u, "m1", 999.0) for i, u in enumerate(users)))
    assert len(h.control.batches) == 1 and len(h.canary.batches) == 1
    by_bucket = {a.user_id: (a.bucket, a.model_version) for a in answers}
    for u in users:
        want = (CANARY, "can-1") if h.buckets.of(u) == CANARY else (CONTROL, "ctl-1")
        assert by_bucket[u] == want
    assert {b for b, _ in by_bucket.values()} == {CANARY, CONTROL}
    # on the wire: the schema's bucket field, the model that answered
    for a in answers:
        rec = Recommendation.model_validate_json(a.value)
        assert (rec.bucket, rec.model_version) == (a.bucket, a.model_version)
        assert tuple(i.item_id for i in rec.items) == a.items and a.clicked == "m1"


def test_without_a_canary_everyone_is_in_control() -> None:
    h = Harness(share=0.5)
    h.proc.canary = lambda: None
    answers = h.run(*(click(f"e{i}", f"user-{i}", "m1", 999.0) for i in range(20)))
    assert {(a.bucket, a.model_version) for a in answers} == {(CONTROL, "ctl-1")}
    assert h.canary.batches == []


def test_a_click_on_the_last_list_counts_a_hit_with_its_rank_and_labels() -> None:
    h = Harness(share=0.5)
    user = next(f"user-{i}" for i in range(100) if h.buckets.of(f"user-{i}") == CANARY)
    (first,) = h.run(click("e1", user, "m1", 999.0))
    assert first.bucket == CANARY and len(first.items) == 10
    h.run(click("e2", user, first.items[3], 1001.0))  # after 1000.5: seen
    labels = {"model_version": "can-1", "bucket": CANARY}
    assert sample(h.metrics, "recstream_online_feedback_total", **labels, outcome="hit") == 1
    assert sample(h.metrics, "recstream_online_feedback_rank_bucket", **labels, le="3.0") == 0
    assert sample(h.metrics, "recstream_online_feedback_rank_bucket", **labels, le="4.0") == 1
    assert sample(h.metrics, "recstream_online_feedback_total", model_version="ctl-1",
                  bucket=CONTROL, outcome="hit") == 0  # fmt: skip
    # and a query's answer is a list too, but a query is never judged
    h.run({"event_id": "q1", "user_id": user, "text": "drama", "ts": 1002.0})
    assert sample(h.metrics, "recstream_online_feedback_total", **labels, outcome="miss") == 0
