"""Online item learning (inference.online) on its own and on a small synthetic stream
through the serving path: a new item clicked by one taste joins that taste's top 10
and nobody else's; a replayed click moves it no further; versions do not mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.online import (
    Feedback,
    LearnedItem,
    PopularityScale,
    feedback_for,
    feedback_step,
    fold,
    served_popularity,
)
from inference.recommender import OnnxRecommender
from inference.settings import InferenceSettings, OnlineSettings
from inference.testing import genre_of
from inference.types import Request

S = OnlineSettings(lr_new=0.5, bound_new=1.0, lr_trained=0.05, bound_trained=0.2, popularity=False)


def _fb(step: np.ndarray, *, offset: int = 0, trained: bool = False, version: str = "v1",
        created: float = 1.0, partition: int = 0) -> Feedback:  # fmt: skip
    return Feedback("x", version, step.astype(np.float32), trained, partition, offset, created)


def test_the_step_is_the_tangent_towards_the_user() -> None:
    v = np.array([1.0, 0.0, 0.0], np.float32)
    u = np.array([0.6, 0.8, 0.0], np.float32)
    g = feedback_step(u, v)
    assert g == pytest.approx([0.0, 0.8, 0.0])  # no component along v itself
    assert feedback_step(v, v) == pytest.approx([0.0, 0.0, 0.0])  # already there: no step


def test_fold_bounds_the_delta_and_new_items_learn_faster() -> None:
    step = np.array([0.0, 1.0, 0.0])
    new = trained = None
    for i in range(50):
        new = fold(new, _fb(step, offset=i), S)
        trained = fold(trained, _fb(step, offset=i, trained=True), S)
    assert new is not None and trained is not None
    assert np.linalg.norm(new.delta) == pytest.approx(S.bound_new, rel=1e-5)
    assert np.linalg.norm(trained.delta) == pytest.approx(S.bound_trained, rel=1e-5)
    one_new = fold(None, _fb(step), S)
    one_trained = fold(None, _fb(step, trained=True), S)
    assert one_new is not None and one_trained is not None
    assert np.linalg.norm(one_new.delta) > np.linalg.norm(one_trained.delta)
    assert new.clicks == 50


def test_a_replayed_click_teaches_nothing_and_partitions_are_apart() -> None:
    step = np.array([0.0, 1.0, 0.0])
    state = fold(None, _fb(step, offset=7), S)
    assert state is not None
    assert fold(state, _fb(step, offset=7), S) is None  # the same click again
    assert fold(state, _fb(step, offset=3), S) is None  # an earlier one, replayed
    other = fold(state, _fb(step, offset=3, partition=1), S)  # another input partition
    assert other is not None and other.clicks == 2
    assert other.applied == {0: 7, 1: 3}


def test_versions_do_not_mix() -> None:
    step = np.array([0.0, 1.0, 0.0])
    old = fold(None, _fb(step, version="v1", created=1.0), S)
    assert old is not None
    newer = fold(old, _fb(-step, version="v2", created=2.0, offset=1), S)
    assert newer is not None and newer.version == "v2" and newer.clicks == 1
    assert newer.delta == pytest.approx(-S.lr_new * step)  # started over, nothing of v1
    assert fold(newer, _fb(step, version="v1", created=1.0, offset=9), S) is None  # straggler


def test_learned_item_round_trips_through_json() -> None:
    state = fold(None, _fb(np.array([0.25, -1.0, 0.5]), offset=4, partition=2), S)
    assert state is not None
    back = LearnedItem.from_json(state.to_json())
    assert back.version == state.version and back.clicks == 1
    assert back.applied == {2: 4}
    assert np.array_equal(back.delta, state.delta)


def test_non_finite_feedback_is_ignored() -> None:
    assert fold(None, _fb(np.array([np.nan, 0.0, 0.0])), S) is None


# -- a synthetic stream through the serving path ----------------------------------------


def _rows(genre: str) -> list[int]:
    return [r for r in range(200) if genre_of(r) == genre]


def _top(rec: OnnxRecommender, user: str, history: list[str]) -> list[str]:
    req = Request(user_id=user, history=tuple(history), exclude=frozenset(history), k=10)
    return [it.item_id for it in rec.recommend_batch([req])[0].items]


def _click(
    rec: OnnxRecommender,
    learned: dict[str, LearnedItem],
    item: str,
    history: list[str],
    offset: int,
) -> None:
    """What the worker and the learner do for one click (tools.stream_rankers.ServingRanker)."""
    req = Request(user_id="clicker", history=tuple(history), exclude=frozenset(history), k=10)
    u = rec.recommend_batch([req])[0].user_vector
    fb = feedback_for(
        rec, item, u, source_partition=0, source_offset=offset, created_ts=0.0, ts=float(offset)
    )
    assert fb is not None
    state = fold(learned.get(item), fb, S)
    if state is not None:
        learned[item] = state
        assert rec.apply_learned({item: state}) == 1


def test_a_new_item_clicked_by_one_taste_reaches_that_taste_only(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle)
    ids = [f"i{r}" for r in range(rec.n_items)]  # inference.testing.tiny_items
    comedy = [ids[r] for r in _rows("comedy")]
    horror = [ids[r] for r in _rows("horror")]
    rec.upsert_item("new", "Untitled", "a film about a story")  # text says nothing of taste
    # Two users who did not click it: a comedy fan who has seen 20 of the 25 comedies (the
    # tiny catalog's comedies are near-identical vectors: the 5 left fill the top 5 of any
    # comedy lover), and a horror fan. A top 10 is those 5 and the best of the rest.
    fan, critic = comedy[:20], horror[:20]
    assert "new" not in _top(rec, "fan", fan)
    assert "new" not in _top(rec, "critic", critic)

    learned: dict[str, LearnedItem] = {}
    for n in range(3):  # three comedy users click it, each with three comedies behind them
        _click(rec, learned, "new", comedy[3 * n : 3 * n + 3], offset=n)
    assert learned["new"].clicks == 3
    assert "new" in _top(rec, "fan", fan)
    assert "new" not in _top(rec, "critic", critic)

    # a replayed click (same source offset) moves it no further
    vec = rec.item_vector("new")
    _click(rec, learned, "new", comedy[6:9], offset=2)
    assert learned["new"].clicks == 3
    assert np.array_equal(rec.item_vector("new"), vec)

    # trained items drift too, but less per click than a new one
    target = horror[5]
    start = rec.item_vector(target)
    assert start is not None
    _click(rec, learned, target, comedy[:3], offset=10)
    moved = rec.item_vector(target)
    assert moved is not None
    assert 0 < float(np.linalg.norm(moved - start)) < 0.2
    assert learned[target].clicks == 1


def test_user_vector_is_the_one_an_answer_carries(flat_bundle: Path) -> None:
    # the prequential evaluator teaches with it what the worker teaches with an answer's
    rec = OnnxRecommender.load(flat_bundle)
    history = ["i3", "i40", "gone", "i7"]  # an unknown id is skipped, as when ranking
    answer = rec.recommend_batch([Request(user_id="u", history=tuple(history), k=10)])[0]
    assert answer.user_vector is not None
    vec = rec.user_vector(history)
    assert vec is not None and np.allclose(vec, answer.user_vector, atol=1e-6)
    assert not np.allclose(vec, rec.user_vector(["i3"]))  # it depends on the history
    assert rec.user_vector(["gone"]) is None and rec.user_vector([]) is None


def test_a_deleted_item_comes_back_without_what_it_learned(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle)
    rec.upsert_item("new", "Untitled", "a film about a story")
    text_vec = rec.item_vector("new")
    step = np.full(rec.dim, 0.1, np.float32)
    state = fold(None, Feedback("new", rec.model_version, step, False, 0, 0, 0.0, 1.0), S)
    assert rec.apply_learned({"new": state}) == 1
    assert not np.allclose(rec.item_vector("new"), text_vec)
    rec.delete_item("new")
    assert rec.base_vector("new") is None and rec.apply_learned({"new": None}) == 0
    rec.upsert_item("new", "Untitled", "a film about a story")
    assert np.allclose(rec.item_vector("new"), text_vec)


def test_clicks_are_counted_with_decay_in_event_time() -> None:
    h = 100.0
    s = OnlineSettings(popularity_half_life_s=h)
    one = fold(None, Feedback("x", "v1", None, False, 0, 0, 1.0, 1000.0), s)
    assert one is not None and one.count == 1.0 and one.count_ts == 1000.0
    assert one.delta is None  # a count-only click moves no vector
    two = fold(one, Feedback("x", "v1", None, False, 0, 1, 1.0, 1100.0), s)
    assert two is not None and two.count == pytest.approx(1.5) and two.count_ts == 1100.0
    late = fold(two, Feedback("x", "v1", None, False, 1, 0, 1.0, 1000.0), s)
    assert late is not None and late.count == pytest.approx(2.0) and late.count_ts == 1100.0
    scale = PopularityScale(clicks_at_max=4.0, as_of=900.0)
    # prior 0.25 (one click at as_of) plus 2 clicks as of 1100 = 2 half-lives after as_of
    assert served_popularity(0.25, late, scale, h) == pytest.approx(0.25 + 2.0 * 4.0 / 4.0)
    assert served_popularity(0.25, None, scale, h) == 0.25


def test_learned_popularity_reaches_the_served_prior(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle, InferenceSettings(online=OnlineSettings()))
    rec.popularity_scale = PopularityScale(clicks_at_max=10.0, as_of=0.0)
    rec.upsert_item("new", "Untitled", "a film about a story")
    assert "new" not in rec.index.popular(5).tolist()
    state = None
    for i in range(30):  # 30 clicks at as_of: 3x the most popular bundle item
        state = fold(state, Feedback("new", rec.model_version, None, False, 0, i, 0.0, 0.0), S)
    assert rec.apply_learned({"new": state}) == 1
    assert rec.index.popular(1).tolist() == [rec.index.row("new")]
    rec.apply_learned({"new": None})  # its state gone: back to what it was published with
    assert "new" not in rec.index.popular(5).tolist()
