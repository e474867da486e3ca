"""What the prequential evaluator replays a stream through (:class:`tools.prequential.Ranker`).

- :class:`ServingRanker`: the worker's own code on in-memory state (the stream's
  ``BatchProcessor`` over dicts, the ONNX recommender, ``item-updates`` applied
  as the catalog follower applies them) plus, when on, online item learning
  (:mod:`inference.online`) exactly as the worker and the learner do it: each
  click's step from the user vector the worker computes to answer the click,
  folded into the item's bounded delta, applied to the index before the next
  event is ranked.
- :class:`TrendingRanker`: trending popularity alone, a baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from inference.online import LearnedItem, UserCentre, feedback_for, fold
from inference.recommender import OnnxRecommender
from inference.settings import OnlineSettings
from recstream.schemas import ItemUpdate, UserEvent
from recstream.settings import TopicNames
from stream.metrics import WorkerMetrics
from stream.overlay import apply_update
from stream.processing import BatchProcessor
from stream.settings import WorkerSettings
from tools.prequential import Replay, StreamEvent

__all__ = ["ServingRanker", "TrendingRanker"]


def _click(e: StreamEvent) -> UserEvent:
    # trusted values built here (no decoding to exercise): skip pydantic's validation
    return UserEvent.model_construct(
        event_id=str(e.index), user_id=e.user_id, item_id=e.item_id, type="click", ts=e.ts
    )


class ServingRanker:
    """The serving path of one worker, fed one event at a time."""

    def __init__(
        self,
        recommender: OnnxRecommender,
        replay: Replay,
        *,
        created_ts: float,
        online: OnlineSettings | None,
        k: int = 10,
        worker: WorkerSettings | None = None,
        learn_from: Literal["before", "after"] = "after",
    ) -> None:
        ws = (worker or WorkerSettings()).model_copy(update={"top_k": k, "passthrough": False})
        self.recommender = recommender
        self.replay = replay
        self.created_ts = created_ts
        self.online = online
        # which user vector teaches the clicked item: the one the worker computes to
        # answer the click ("after": the history includes the clicked item), which is
        # what a worker does (stream.processing.Click), or the one that ranked it
        # ("before": a worker does not have it; kept to compare)
        self.learn_from = learn_from
        self.version = recommender.model_version
        self.processor = BatchProcessor(
            settings=ws,
            topics=TopicNames(),
            model=lambda: recommender,
            sequences={},
            interests={},
            metrics=WorkerMetrics(),
        )
        self.learned: dict[str, LearnedItem] = {}
        s = online or OnlineSettings()
        window, warmup = s.centre_window, min(s.centre_warmup, s.centre_window)
        self.centre = UserCentre(recommender.dim, window=window, warmup=warmup)
        self.published: set[str] = set()
        self._user_vector: np.ndarray | None = None
        for e in replay.history:  # the state a worker holds at T
            self.processor.apply(_click(e))
        if online is not None:  # ... and the mean of the users it served last
            self._seed_centre([e.user_id for e in replay.history[-window:]], replay.split_time)

    def _seed_centre(self, users: list[str], ts: float) -> None:
        requests = [self.processor.request_for(u, ts, self.version) for u in dict.fromkeys(users)]
        for start in range(0, len(requests), 256):
            for result in self.recommender.recommend_batch(requests[start : start + 256]):
                if result.user_vector is not None:
                    self.centre.add(result.user_vector)

    def _publish(self, e: StreamEvent) -> None:
        """A new item enters the catalog (item-updates upsert) before its first click."""
        new = self.replay.new_items.get(e.item_id)
        if new is None or e.item_id in self.published:
            return
        update = ItemUpdate(
            item_id=e.item_id,
            op="upsert",
            title=new.title,
            text=new.text,
            attributes=new.attributes,
            ts=e.ts,
        )
        apply_update(self.recommender, update, self.created_ts)
        self.published.add(e.item_id)

    def top(self, event: StreamEvent) -> Sequence[str]:
        self._publish(event)
        request = self.processor.request_for(event.user_id, event.ts, self.version)
        result = self.recommender.recommend_batch([request])[0]
        self._user_vector = result.user_vector
        return [it.item_id for it in result.items]

    def learn(self, event: StreamEvent) -> None:
        self.processor.apply(_click(event))
        u, self._user_vector = self._user_vector, None
        if self.online is None:
            return
        if self.learn_from == "after":
            request = self.processor.request_for(event.user_id, event.ts, self.version)
            u = self.recommender.user_vector(request.history)
        if not self.online.vectors:
            u = None  # counts only
        fb = feedback_for(
            self.recommender,
            event.item_id,
            u,
            source_partition=0,
            source_offset=event.index,
            created_ts=self.created_ts,
            ts=event.ts,
            centre=self.centre,
        )
        state = None if fb is None else fold(self.learned.get(event.item_id), fb, self.online)
        if state is not None:
            self.learned[event.item_id] = state
            self.recommender.apply_learned({event.item_id: state})

    def summary(self) -> dict[str, Any]:
        trained = sum(1 for i in self.learned if (b := self.recommender.base_vector(i)) and b[1])
        return {
            "items_learned": len(self.learned),
            "trained_items_learned": trained,
            "new_items_published": len(self.published),
        }


class TrendingRanker:
    """Items by their clicks so far, each weighing ``2^(age / half_life)`` less (event time);
    the user's last ``exclude_window`` items excluded, as the worker excludes them."""

    def __init__(
        self, replay: Replay, *, half_life_s: float, k: int = 10, exclude_window: int = 100
    ) -> None:
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        self.half_life_s = half_life_s
        self.k = k
        self.exclude_window = exclude_window
        self.columns: dict[str, int] = {}
        self.ids: list[str] = []
        self.scores = np.zeros(1024, np.float64)
        self.t_ref = replay.split_time  # forward decay: a click at t weighs 2^((t - t_ref)/h)
        self.recent: dict[str, list[int]] = {}
        for e in replay.history:
            self.learn(e)

    def _column(self, item_id: str) -> int:
        c = self.columns.get(item_id)
        if c is None:
            c = self.columns[item_id] = len(self.ids)
            self.ids.append(item_id)
            if c >= len(self.scores):
                self.scores = np.concatenate([self.scores, np.zeros(len(self.scores))])
        return c

    def top(self, event: StreamEvent) -> Sequence[str]:
        n = len(self.ids)
        if n == 0:
            return []
        scores = self.scores[:n].copy()
        seen = self.recent.get(event.user_id)
        if seen:
            scores[seen] = -np.inf
        k = min(self.k, n)
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((part, -scores[part]))]  # ties: earlier column first
        return [self.ids[c] for c in order if np.isfinite(scores[c])]

    def learn(self, event: StreamEvent) -> None:
        exponent = (event.ts - self.t_ref) / self.half_life_s
        if exponent > 500:  # rescale before 2^x overflows
            self.scores *= 2.0 ** (-exponent)
            self.t_ref, exponent = event.ts, 0.0
        c = self._column(event.item_id)
        self.scores[c] += math.pow(2.0, exponent)
        recent = self.recent.setdefault(event.user_id, [])
        recent.append(c)
        if len(recent) > self.exclude_window:
            del recent[0]
