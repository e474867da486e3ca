"""Prequential ("test, then learn") evaluation of a temporal-split bundle on its stream.

A bundle trained with ``recstream train --split temporal`` has seen only what
happened before T. Every interaction from T on is replayed in time order
(file order breaks ties), through the code a worker runs: the stream's
:class:`~stream.processing.BatchProcessor` over in-memory state and the ONNX
recommender, no Kafka. For each event:

1. if its item is new (first seen at or after T) and not yet in the catalog,
   it is published as an ``item-updates`` upsert (its text, the worker's
   :func:`~stream.catalog.apply_update`): the catalog announces an item before
   anyone can click it, and a worker encodes its text with the bundle's tower;
2. the whole catalog is ranked for the event's user from the state before the
   event (history excluded as the worker excludes it) and the event's item is
   scored (NDCG@k, HR@k from its rank in the served top k);
3. the event is applied: the user's sequence and, unless online learning is
   off, what the click teaches the item (:mod:`inference.online`).

So no event is ranked with anything it or a later event taught. Events are
reported in buckets: ``warm_items`` (the item had an interaction before T),
``new_items`` by how many clicks the item has had in the stream before this
event (``"0"``, ``"1-4"``, ``"5-19"``, ``"20+"``), and ``new_users`` (the user had
no interaction before T).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

__all__ = [
    "BUCKETS",
    "Ranker",
    "Replay",
    "StreamEvent",
    "event_labels",
    "prequential_ranks",
    "report",
]

# new items by clicks in the stream before the event: (name, lowest, highest)
BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 0),
    ("1-4", 1, 4),
    ("5-19", 5, 19),
    ("20+", 20, float("inf")),
)
WARM = "warm"


@dataclass(frozen=True)
class StreamEvent:
    """One interaction; ``index`` is its position in the stream (its source offset)."""

    index: int
    user_id: str
    item_id: str
    ts: float


@dataclass(frozen=True)
class NewItem:
    """What the catalog publishes about an item first seen in the stream."""

    title: str
    text: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Replay:
    """A temporal split as a stream: the past that seeds state, and the events to replay."""

    history: list[StreamEvent]  # before T, time order: seeds each user's sequence
    events: list[StreamEvent]  # from T on (until the end bound), time order
    warm_items: frozenset[str]  # items with an interaction before T
    known_users: frozenset[str]  # users with an interaction before T
    new_items: dict[str, NewItem]  # item id -> its catalog entry, for items first seen >= T
    split_time: float
    end_time: float | None = None  # events at or after it are not replayed (None: all)


class Ranker(Protocol):
    """What the evaluator drives: rank from the state before an event, then apply it."""

    def top(self, event: StreamEvent) -> Sequence[str]:
        """The item ids the event's user is served now, best first (at most k)."""
        ...

    def learn(self, event: StreamEvent) -> None:
        """Apply the event (it has been scored)."""
        ...


def event_labels(replay: Replay) -> tuple[list[str], np.ndarray]:
    """Per event: its item bucket (``"warm"`` or a :data:`BUCKETS` name, by the item's
    clicks in the stream BEFORE the event) and whether its user is new (bool (E,))."""
    clicks: dict[str, int] = {}
    buckets: list[str] = []
    for e in replay.events:
        if e.item_id in replay.warm_items:
            buckets.append(WARM)
            continue
        n = clicks.get(e.item_id, 0)
        buckets.append(next(name for name, lo, hi in BUCKETS if lo <= n <= hi))
        clicks[e.item_id] = n + 1
    new_user = np.fromiter(
        (e.user_id not in replay.known_users for e in replay.events), bool, len(replay.events)
    )
    return buckets, new_user


def prequential_ranks(
    replay: Replay,
    ranker: Ranker,
    *,
    k: int = 10,
    progress: bool = True,
    desc: str = "stream",
) -> np.ndarray:
    """(E,) int64: each event's 0-based rank in what its user was served before it, or
    ``k`` when the item was not in the top ``k``. Test first, then learn, event by event."""
    ranks = np.full(len(replay.events), k, dtype=np.int64)
    for i, event in enumerate(tqdm(replay.events, desc=desc, disable=not progress, unit="ev")):
        served = list(ranker.top(event))[:k]
        if event.item_id in served:
            ranks[i] = served.index(event.item_id)
        ranker.learn(event)
    return ranks


def _metrics(ranks: np.ndarray, k: int) -> dict[str, Any]:
    n = len(ranks)
    if n == 0:
        return {f"ndcg@{k}": None, f"hr@{k}": None, "n": 0}
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {f"ndcg@{k}": float(ndcg.mean()), f"hr@{k}": float(hit.mean()), "n": int(n)}


def report(
    ranks: np.ndarray, buckets: Sequence[str], new_user: np.ndarray, *, k: int = 10
) -> dict[str, Any]:
    """The ``"stream"`` block: ``all``, ``warm_items``, ``new_items`` by bucket, ``new_users``."""
    ranks = np.asarray(ranks)
    b = np.asarray(buckets)
    if not (len(ranks) == len(b) == len(new_user)):
        raise ValueError(f"{len(ranks)} ranks, {len(b)} buckets, {len(new_user)} user flags")
    return {
        "all": _metrics(ranks, k),
        "warm_items": _metrics(ranks[b == WARM], k),
        "new_items": {name: _metrics(ranks[b == name], k) for name, _, _ in BUCKETS},
        "new_users": _metrics(ranks[np.asarray(new_user, bool)], k),
    }


def rows(stream: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(label, metrics) in display order, for tables."""
    yield "all", stream["all"]
    yield "warm items", stream["warm_items"]
    for name, _, _ in BUCKETS:
        yield f"new items, {name} clicks", stream["new_items"][name]
    yield "new users", stream["new_users"]


def per_event_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """(E,) NDCG@k of each event (for paired intervals between two runs on one replay)."""
    return np.where(ranks < k, 1.0 / np.log2(np.asarray(ranks) + 2.0), 0.0)
