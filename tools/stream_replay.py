"""A dataset and a split time T as a :class:`~tools.prequential.Replay`.

The past (interactions before T) seeds the users' sequences; the stream is every
interaction at or after T (and before ``end``, when given), in time order with
file order breaking ties, as ``training.split`` orders them.
"""

from __future__ import annotations

import numpy as np

from tools.prequential import NewItem, Replay, StreamEvent
from training.data.types import Dataset
from training.split import split_time, time_order

__all__ = ["build_replay", "replay_for_quantiles"]


def build_replay(dataset: Dataset, t: float, end: float | None = None) -> Replay:
    """The replay of ``dataset`` split at time ``t`` (events with ``ts >= end`` left out)."""
    inter = dataset.interactions
    cat = dataset.catalog
    order = time_order(inter)
    ts = inter.ts[order]
    users = [inter.user_ids[u] for u in inter.user[order]]
    items = [cat.item_ids[i] for i in inter.item[order]]
    cut = int(np.searchsorted(ts, t, side="left"))  # first event at or after t
    stop = len(order) if end is None else int(np.searchsorted(ts, end, side="left"))
    if stop < cut:
        raise ValueError(f"the stream ends ({end}) before it starts ({t})")
    history = [StreamEvent(i, users[i], items[i], float(ts[i])) for i in range(cut)]
    events = [StreamEvent(i - cut, users[i], items[i], float(ts[i])) for i in range(cut, stop)]
    warm = frozenset(items[:cut])
    new_items = {}
    for e in events:
        if e.item_id not in warm and e.item_id not in new_items:
            r = cat.rows[e.item_id]
            new_items[e.item_id] = NewItem(cat.titles[r], cat.texts[r], dict(cat.attributes[r]))
    return Replay(
        history=history,
        events=events,
        warm_items=warm,
        known_users=frozenset(users[:cut]),
        new_items=new_items,
        split_time=float(t),
        end_time=end,
    )


def replay_for_quantiles(dataset: Dataset, start: float, end: float | None = None) -> Replay:
    """The replay from the ``start``-quantile interaction's time to the ``end``-quantile's."""
    t = split_time(dataset.interactions, start)
    stop = None if end is None else split_time(dataset.interactions, end)
    return build_replay(dataset, t, stop)
