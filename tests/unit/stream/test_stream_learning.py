"""Online item learning as the worker runs it, in memory (stream.learning): the batch's
clicks become item-feedback records, the learner folds them once each into the learned
table, a catalog delete forgets an item, and every worker's applier serves the table."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.online import LearnedItem
from inference.recommender import OnnxRecommender
from inference.settings import OnlineSettings
from inference.testing import build_tiny_bundle, genre_of
from inference.types import Request
from recstream.schemas import ItemFeedback, ItemUpdate, decode
from recstream.settings import TopicNames
from stream.codec import dumps
from stream.learning import FeedbackMaker, LearnedFollower, Learner, forget_record
from stream.messages import InMessage, OutMessage
from stream.metrics import WorkerMetrics
from stream.processing import BatchProcessor
from stream.settings import WorkerSettings
from stream.testing import FakeRecommender

TOPICS = TopicNames()
ONLINE = OnlineSettings(lr_new=0.5, bound_new=1.0, centre_warmup=0, popularity=False)


class RecordingTable(dict[str, Any]):
    """A dict table that keeps the changelog records its writes would produce."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.records.append((dumps(key), dumps(value)))

    def __delitem__(self, key: str) -> None:  # as TableView: absent is no error
        self.pop(key, None)
        self.records.append((dumps(key), None))

    def drain(self) -> list[tuple[bytes, bytes | None]]:
        out, self.records = self.records, []
        return out


def _follower(models: Callable[[], Sequence[Any]]) -> LearnedFollower:
    """A learned-state follower over ``models`` that is fed records by hand (no broker)."""
    return LearnedFollower(bootstrap="unused", topic="t", models=models, metrics=WorkerMetrics())


def _dlq(msg: InMessage, reason: str, error: str) -> OutMessage:
    return OutMessage(TOPICS.dlq, msg.key, json.dumps({"reason": reason}).encode())


class Pipeline:
    """One worker's processor + feedback, one learner, and the appliers of two workers."""

    def __init__(self, model: Any, model2: Any, online: OnlineSettings = ONLINE) -> None:
        self.model = model
        self.sequences: dict[str, Any] = {}
        self.proc = BatchProcessor(
            settings=WorkerSettings(store="memory://"),
            topics=TOPICS,
            model=lambda: self.model,
            sequences=self.sequences,
            interests={},
            metrics=WorkerMetrics(),
        )
        self.feedback = FeedbackMaker(TOPICS.item_feedback, online)
        self.table = RecordingTable()
        self.learner = Learner(table=self.table, changelog=None, online=online, dead_letter=_dlq)
        self.appliers = [
            LearnedFollower(
                bootstrap="unused",
                topic="unit-item_learned-changelog",
                models=lambda m=m: [m],
                metrics=WorkerMetrics(),
                clock=lambda: 2000.0,
            )
            for m in (model, model2)
        ]
        self.models = (model, model2)
        self.offset = 0

    def clicks(self, events: list[tuple[str, str]], *, replay_from: int | None = None) -> None:
        """Users click items (one batch), through everything a click goes through."""
        msgs = []
        for user, item in events:
            if replay_from is not None:
                offset, replay_from = replay_from, replay_from + 1
            else:
                offset, self.offset = self.offset, self.offset + 1
            ts = 1000.0 + offset
            value = {"event_id": f"e{offset}", "user_id": user, "item_id": item, "ts": ts}
            value["type"] = "click"
            msgs.append(InMessage(TOPICS.user_events, 0, offset, user.encode(), dumps(value)))
        out = self.proc.process(msgs)
        self.deliver(self.feedback.records([self.model], out.clicks))

    def deliver(self, feedback: list[OutMessage]) -> list[OutMessage]:
        """item-feedback → the learner → its changelog → every worker's applier."""
        fb = [
            InMessage(m.topic, 0, i, m.key, m.value)
            for i, m in enumerate(feedback)
            if m.topic == TOPICS.item_feedback
        ]
        out = self.learner.process(fb)
        records = self.table.drain()
        for applier in self.appliers:
            applier.apply_records(records)
        return out.messages


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("learning"), n_items=200, dim=32)


def _ids(genre: str) -> list[str]:
    return [f"i{r}" for r in range(200) if genre_of(r) == genre]  # inference.testing ids


def _top(rec: OnnxRecommender, history: list[str]) -> list[str]:
    req = Request(user_id="probe", history=tuple(history), exclude=frozenset(history), k=10)
    return [it.item_id for it in rec.recommend_batch([req])[0].items]


def _everyone_clicks(pipe: Pipeline) -> None:
    for genre in ("comedy", "horror", "romance", "action", "scifi", "documentary"):
        items = _ids(genre)
        pipe.clicks([(f"{genre}-{n}", items[-1 - n - k]) for n in range(4) for k in range(3)])


@pytest.fixture
def pipe(tiny: Path) -> Iterator[Pipeline]:
    yield Pipeline(OnnxRecommender.load(tiny), OnnxRecommender.load(tiny))


def test_a_new_item_clicked_by_one_taste_reaches_it_on_every_worker(pipe: Pipeline) -> None:
    comedy, horror = _ids("comedy"), _ids("horror")
    for rec in pipe.models:
        rec.upsert_item("new", "Untitled", "a film about a story")  # the catalog published it
    # users of every taste click (the workers learn what all users share: the centre) ...
    _everyone_clicks(pipe)
    # ... and three comedy fans, each with three comedies behind them
    for n in range(3):
        pipe.clicks([(f"fan{n}", c) for c in comedy[3 * n : 3 * n + 3]])
    assert "new" not in _top(pipe.model, comedy[:20])
    pipe.clicks([(f"fan{n}", "new") for n in range(3)])
    assert LearnedItem.from_json(pipe.table["new"]).clicks == 3
    for applier, rec in zip(pipe.appliers, pipe.models, strict=True):  # both workers
        assert "new" in _top(rec, comedy[:20])
        assert "new" not in _top(rec, horror[:20])
        assert applier.metrics.learned_items._value.get() >= 1
    v0 = pipe.models[0].item_vector("new")
    v1 = pipe.models[1].item_vector("new")
    assert np.allclose(v0, v1)


def test_a_replayed_click_is_folded_once(pipe: Pipeline) -> None:
    comedy = _ids("comedy")
    _everyone_clicks(pipe)
    pipe.clicks([("fan", c) for c in comedy[:3]])
    before = pipe.model.item_vector(comedy[5])
    offset = pipe.offset
    pipe.clicks([("fan", comedy[5])])
    state = LearnedItem.from_json(pipe.table[comedy[5]])
    vector = pipe.model.item_vector(comedy[5])
    assert not np.allclose(vector, before)  # the click taught it something
    # the worker crashed before committing: the same input offset comes again
    pipe.clicks([("fan", comedy[5])], replay_from=offset)
    assert LearnedItem.from_json(pipe.table[comedy[5]]).clicks == state.clicks == 1
    assert np.array_equal(pipe.model.item_vector(comedy[5]), vector)


def test_a_deleted_item_forgets_what_it_learned(pipe: Pipeline) -> None:
    comedy = _ids("comedy")
    pipe.model.upsert_item("new", "Untitled", "a film about a story")
    text_vector = pipe.model.item_vector("new")
    pipe.clicks([("fan", c) for c in comedy[:3]] + [("fan", "new")])
    assert "new" in pipe.table
    assert not np.allclose(pipe.model.item_vector("new"), text_vector)
    delete = ItemUpdate(item_id="new", op="delete", ts=1500.0)
    pipe.deliver([forget_record(TOPICS.item_feedback, delete)])
    assert "new" not in pipe.table
    assert "new" not in pipe.appliers[0].overlay.latest
    # published again: it starts from its text, nothing of its past clicks
    pipe.model.upsert_item("new", "Untitled", "a film about a story")
    assert np.allclose(pipe.model.item_vector("new"), text_vector)


def test_feedback_records_carry_what_the_learner_needs() -> None:
    model = FakeRecommender({"m1": ("Toy Story", "animation"), "m2": ("Heat", "crime")})
    pipe = Pipeline(model, FakeRecommender(dict(model.items)))
    pipe.clicks([("u", "m1")])  # no history before: the click teaches a count only
    pipe.clicks([("u", "m2")])
    records = pipe.feedback.records([model], pipe.proc.process([]).clicks)
    assert records == []
    value = {"event_id": "x", "user_id": "u", "item_id": "m1", "type": "click", "ts": 1234.5}
    out = pipe.proc.process([InMessage(TOPICS.user_events, 3, 77, b"u", dumps(value))])
    (record,) = pipe.feedback.records([model], out.clicks)
    assert record.topic == TOPICS.item_feedback and record.key == b"m1"
    assert record.value is not None
    fb = decode(ItemFeedback, record.value)
    assert (fb.item_id, fb.op, fb.ts, fb.version) == ("m1", "click", 1234.5, model.model_version)
    assert (fb.source_partition, fb.source_offset, fb.trained) == (3, 77, True)
    assert fb.step is not None  # the user had a history: a step to take
    assert LearnedItem.from_json(pipe.table["m1"]).count >= 1


def test_learned_states_of_another_version_are_not_applied() -> None:
    model = FakeRecommender({"m1": ("Toy Story", "animation")}, version="v2")
    applier = _follower(lambda: [model])
    old = LearnedItem("v1", 1.0, np.ones(8, np.float32), 1)
    assert applier.apply_records([(dumps("m1"), dumps(old.to_json()))]) == 0
    assert "m1" not in model.learned
    new = LearnedItem("v2", 2.0, np.ones(8, np.float32), 1)
    assert applier.apply_records([(dumps("m1"), dumps(new.to_json()))]) == 1
    assert model.learned["m1"] is not None
    assert applier.apply_records([(dumps("m1"), None)]) == 1  # a tombstone: back to its base
    assert model.learned["m1"] is None


def test_a_reloaded_model_gets_what_was_learned_for_its_version() -> None:
    v1 = FakeRecommender({"m1": ("Toy Story", "animation")}, version="v1")
    serving: list[FakeRecommender] = [v1]
    applier = _follower(lambda: serving)
    state = LearnedItem("v2", 2.0, np.ones(8, np.float32), 1)
    applier.apply_records([(dumps("m1"), dumps(state.to_json()))])  # learned ahead of us
    assert "m1" not in v1.learned
    serving[0] = v2 = FakeRecommender({"m1": ("Toy Story", "animation")}, version="v2")
    applier.sync_model()
    assert v2.learned["m1"] is not None
    assert applier.metrics.learned_items._value.get() == 1


def test_bad_feedback_is_dead_lettered_not_folded() -> None:
    table = RecordingTable()
    learner = Learner(table=table, changelog=None, online=ONLINE, dead_letter=_dlq)
    bad = [
        InMessage(TOPICS.item_feedback, 0, 0, b"x", b"not json"),
        InMessage(TOPICS.item_feedback, 0, 1, b"x", None),
        InMessage(
            TOPICS.item_feedback,
            0,
            2,
            b"x",
            dumps({"item_id": "x", "ts": 1.0, "version": "v", "step": "%%%"}),
        ),
    ]
    out = learner.process(bad)
    assert [json.loads(m.value or b"")["reason"] for m in out.messages] == [
        "invalid_json",
        "empty",
        "schema",
    ]
    assert table == {} and out.folded == 0


def test_a_state_learned_before_the_item_is_live_applies_when_the_catalog_adds_it() -> None:
    # a restarted worker replays item_learned and item-updates at once: the learned
    # state of a new item may arrive before the catalog has made the item live
    model = FakeRecommender({"m1": ("Toy Story", "animation")}, version="v1")
    applier = _follower(lambda: [model])
    state = LearnedItem("v1", 2.0, np.ones(8, np.float32), 1)
    assert applier.apply_records([(dumps("new-1"), dumps(state.to_json()))]) == 0
    assert "new-1" not in model.learned
    model.items["new-1"] = ("A new film", "drama")  # the catalog's upsert
    assert applier.reapply("new-1") == 1
    assert model.learned["new-1"] is not None
    assert applier.reapply("never-learned") == 0


def test_a_replayed_feedback_record_writes_the_items_state_again_without_folding_it() -> None:
    # The store keeps what a killed learner wrote and a restart restores only the changelog
    # after the store's persisted offset, so the replay must bring that write to the
    # changelog (as the user tables do), or a partition move would lose the click.
    model = FakeRecommender({"m1": ("Toy Story", "animation"), "m2": ("Heat", "crime")})
    pipe = Pipeline(model, FakeRecommender(dict(model.items)))
    pipe.clicks([("u", "m1")])
    value = {"event_id": "x", "user_id": "u", "item_id": "m2", "type": "click", "ts": 1234.5}
    out = pipe.proc.process([InMessage(TOPICS.user_events, 3, 77, b"u", dumps(value))])
    (record,) = pipe.feedback.records([model], out.clicks)
    feedback = InMessage(TOPICS.item_feedback, 1, 5, record.key, record.value)
    assert pipe.learner.process([feedback]).folded == 1
    written = pipe.table.drain()
    assert [k for k, _ in written] == [dumps("m2")]
    state = pipe.table["m2"]
    # the same record again (the learner died before committing its input offset)
    assert pipe.learner.process([feedback]).folded == 0
    assert pipe.table["m2"] == state and LearnedItem.from_json(state).clicks == 1
    assert pipe.table.drain() == written  # not folded twice, but written again
    # a replayed forget writes its tombstone again although the store has nothing left
    forget = forget_record(TOPICS.item_feedback, ItemUpdate(item_id="m2", op="delete", ts=2.0))
    again = InMessage(TOPICS.item_feedback, 1, 6, forget.key, forget.value)
    for _ in range(2):
        assert pipe.learner.process([again]).forgotten == 1
        assert "m2" not in pipe.table and pipe.table.drain() == [(dumps("m2"), None)]
