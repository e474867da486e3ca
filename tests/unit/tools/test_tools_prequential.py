"""The prequential evaluator against hand-worked streams: rank before apply, buckets
counted right, no event sees its own future (tools.prequential, tools.stream_rankers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from inference.recommender import OnnxRecommender
from inference.settings import OnlineSettings
from inference.testing import build_tiny_bundle, genre_of
from tools.prequential import (
    NewItem,
    Replay,
    StreamEvent,
    event_labels,
    prequential_ranks,
    report,
)
from tools.stream_rankers import ServingRanker, TrendingRanker

R1 = 1.0 / math.log2(3.0)  # NDCG of a hit at rank 1 (0-based)


def _ev(i: int, user: str, item: str, ts: float | None = None) -> StreamEvent:
    return StreamEvent(i, user, item, float(100 + i if ts is None else ts))


class CountingRanker:
    """Serves items by clicks learned so far (ties by id) and records what it was told,
    so the test can check that ranking an event never saw it or anything after it."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.learned: list[int] = []
        self.ranked: list[int] = []

    def top(self, event: StreamEvent) -> Sequence[str]:
        assert self.learned == list(range(event.index)), "ranked after learning its future"
        self.ranked.append(event.index)
        return sorted(self.counts, key=lambda i: (-self.counts[i], i))

    def learn(self, event: StreamEvent) -> None:
        assert self.ranked[-1] == event.index, "learned before being ranked"
        self.learned.append(event.index)
        self.counts[event.item_id] = self.counts.get(event.item_id, 0) + 1


def _hand_replay() -> Replay:
    events = [
        _ev(0, "u1", "N"),  # nothing learned yet: miss; N new, 0 clicks before
        _ev(1, "u2", "A"),  # served [N]: miss; A warm; u2 new
        _ev(2, "u2", "N"),  # served [A, N] (1-1, by id): rank 1; N has 1 click before
        _ev(3, "u1", "A"),  # served [N, A] (2-1): rank 1
        _ev(4, "u3", "B"),  # served [A, N] (2-2, by id): miss; u3 new
    ]
    return Replay(
        history=[_ev(-2, "u1", "A", 1.0), _ev(-1, "u1", "B", 2.0)],
        events=events,
        warm_items=frozenset({"A", "B"}),
        known_users=frozenset({"u1"}),
        new_items={"N": NewItem("N", "N", {})},
        split_time=100.0,
    )


def test_hand_worked_stream_ranks_before_it_learns() -> None:
    replay = _hand_replay()
    ranker = CountingRanker()
    ranks = prequential_ranks(replay, ranker, k=10, progress=False)
    assert ranks.tolist() == [10, 10, 1, 1, 10]
    assert ranker.learned == [0, 1, 2, 3, 4]

    buckets, new_user = event_labels(replay)
    assert buckets == ["0", "warm", "1-4", "warm", "warm"]
    assert new_user.tolist() == [False, True, True, False, True]

    out = report(ranks, buckets, new_user, k=10)
    assert out["all"] == pytest.approx({"ndcg@10": 2 * R1 / 5, "hr@10": 0.4, "n": 5})
    assert out["warm_items"] == pytest.approx({"ndcg@10": R1 / 3, "hr@10": 1 / 3, "n": 3})
    assert out["new_items"]["0"] == {"ndcg@10": 0.0, "hr@10": 0.0, "n": 1}
    assert out["new_items"]["1-4"] == pytest.approx({"ndcg@10": R1, "hr@10": 1.0, "n": 1})
    assert out["new_items"]["5-19"] == {"ndcg@10": None, "hr@10": None, "n": 0}
    assert out["new_users"] == pytest.approx({"ndcg@10": R1 / 3, "hr@10": 1 / 3, "n": 3})


def test_new_item_buckets_count_clicks_before_the_event() -> None:
    events = [_ev(i, f"u{i}", "X") for i in range(25)] + [_ev(25, "u0", "W")]
    replay = Replay([], events, frozenset({"W"}), frozenset(), {}, 100.0)
    buckets, _ = event_labels(replay)
    assert buckets == ["0"] + ["1-4"] * 4 + ["5-19"] * 15 + ["20+"] * 5 + ["warm"]


def test_a_miss_beyond_k_and_a_hit_at_the_last_place() -> None:
    class Fixed:
        def top(self, event: StreamEvent) -> Sequence[str]:
            return [f"i{j}" for j in range(12)]

        def learn(self, event: StreamEvent) -> None:
            pass

    events = [_ev(0, "u", "i9"), _ev(1, "u", "i10")]
    replay = Replay([], events, frozenset({"i9", "i10"}), frozenset({"u"}), {}, 100.0)
    ranks = prequential_ranks(replay, Fixed(), k=10, progress=False)
    assert ranks.tolist() == [9, 10]  # the 11th item is a miss at k = 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("prequential"), n_items=120, dim=32)


def _genre_rows(genre: str, n: int) -> list[int]:
    return [r for r in range(120) if genre_of(r) == genre][:n]


def test_serving_ranker_ranks_from_the_state_before_the_event(tiny: Path) -> None:
    rec = OnnxRecommender.load(tiny)
    ids = [f"i{r}" for r in range(rec.n_items)]  # inference.testing.tiny_items
    comedy = [ids[r] for r in _genre_rows("comedy", 6)]
    history = [_ev(-5 + j, "u", comedy[j], float(j)) for j in range(5)]
    replay = Replay(history, [], frozenset(ids), frozenset({"u"}), {}, 100.0)
    probe = ServingRanker(rec, replay, created_ts=0.0, online=None)
    first = probe.top(_ev(0, "u", "?"))[0]  # what u is served from its 5 clicks

    # u's next click is exactly that item: ranked before applying it, it is a hit at 0;
    # had the event been applied first, it would be excluded as consumed (a miss)
    events = [_ev(0, "u", first), _ev(1, "u", first)]
    replay = Replay(history, events, frozenset(ids), frozenset({"u"}), {}, 100.0)
    ranker = ServingRanker(OnnxRecommender.load(tiny), replay, created_ts=0.0, online=None)
    ranks = prequential_ranks(replay, ranker, k=10, progress=False)
    assert ranks.tolist() == [0, 10]  # the second click sees the first: now consumed


def test_serving_ranker_publishes_a_new_item_before_its_first_click(tiny: Path) -> None:
    rec = OnnxRecommender.load(tiny)
    ids = [f"i{r}" for r in range(rec.n_items)]  # inference.testing.tiny_items
    new = NewItem("Laugh Riot", "a funny comedy film with jokes", {"genres": ["comedy"]})
    events = [_ev(0, "fresh", "new-1"), _ev(1, "fresh", ids[0])]
    replay = Replay([], events, frozenset(ids), frozenset(), {"new-1": new}, 100.0)
    ranker = ServingRanker(rec, replay, created_ts=0.0, online=None)
    assert rec.index.row("new-1") is None
    prequential_ranks(replay, ranker, k=10, progress=False)
    assert rec.index.row("new-1") is not None
    assert ranker.summary()["new_items_published"] == 1


def test_online_learning_moves_only_the_clicked_item_and_only_after_its_rank(
    tiny: Path,
) -> None:
    rec = OnnxRecommender.load(tiny)
    ids = [f"i{r}" for r in range(rec.n_items)]  # inference.testing.tiny_items
    comedy = [ids[r] for r in _genre_rows("comedy", 8)]
    horror = [ids[r] for r in _genre_rows("horror", 9)]
    history = [_ev(-16 + j, "u", comedy[j], float(j)) for j in range(8)]
    history += [_ev(-8 + j, "w", horror[j], float(j)) for j in range(8)]
    events = [_ev(0, "u", horror[8])]
    replay = Replay(history, events, frozenset(ids), frozenset({"u", "w"}), {}, 100.0)
    before = rec.index.vectors.copy()
    learn = OnlineSettings(centre_warmup=2)  # the two users in the history make the centre
    ranker = ServingRanker(rec, replay, created_ts=0.0, online=learn)
    ranks = prequential_ranks(replay, ranker, k=10, progress=False)
    after = rec.index.vectors
    moved = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert moved.tolist() == [rec.index.row(horror[8])]
    assert ranker.learned[horror[8]].clicks == 1
    # ranked with the vector it had before the click taught it anything
    fresh = ServingRanker(OnnxRecommender.load(tiny), replay, created_ts=0.0, online=None)
    assert prequential_ranks(replay, fresh, k=10, progress=False).tolist() == ranks.tolist()


def test_trending_ranks_by_decayed_clicks_and_excludes_the_users_items() -> None:
    history = [_ev(-3, "a", "X", 0.0), _ev(-2, "b", "X", 0.0), _ev(-1, "c", "Y", 99.0)]
    events = [_ev(0, "d", "Y", 100.0), _ev(1, "a", "Y", 101.0)]
    replay = Replay(history, events, frozenset({"X", "Y"}), frozenset("abc"), {}, 100.0)
    # half-life 10 s: X's two clicks at t=0 weigh ~2^-10 each by t=100, Y's one ~0.93
    ranker = TrendingRanker(replay, half_life_s=10.0, k=10)
    assert list(ranker.top(events[0])) == ["Y", "X"]
    slow = TrendingRanker(replay, half_life_s=1e9, k=10)  # no decay: X (2) beats Y (1)
    assert list(slow.top(events[0])) == ["X", "Y"]
    # event 1: X and Y tie at 2 (X first by age), but "a" clicked X before: excluded
    ranks = prequential_ranks(replay, TrendingRanker(replay, half_life_s=1e9), progress=False)
    assert ranks.tolist() == [1, 0]
