"""Online item learning: what a click teaches the clicked item's vector (numpy only).

Derivation. Training scores item ``i`` for a user vector ``u`` with the logit
``s·<u, v_i>`` (``v_i`` unit-norm) and minimises the softmax cross-entropy of the
item the user chose next (training/sequence_train.py). One gradient step of that
loss on the clicked item's row alone moves ``v_i`` along ``(1 - p_i)·s·u``; on
the unit sphere the part that moves it is the tangent component

    g = u - <u, v> v          (zero when v already points at u)

which is also what makes the rule self-limiting: an item its users already
score highly learns little more from them. We drop ``(1 - p_i)`` (it needs the
whole catalog's softmax on the hot path and is ~1 for all but the top item)
and let ``lr`` absorb ``s``.

The same step also pushes every other item ``j`` away from ``u`` by ``p_j·s·u``:
the negatives. Updating only the clicked row drops them, and then every click
moves its item towards what all users share (user vectors of a trained bundle
have a large common component: mean cosine to their mean ~0.7 on ml-100k), so
learned items turn into hubs that win every user's list (measured: warm-item
NDCG@10 fell by more than half). What the negatives cancel, in expectation, is
that common part; so the step is taken from the user's vector less the mean
user vector (:class:`UserCentre`, a running mean each worker keeps of the
users it serves): an item moves towards what is distinctive about the users
who chose it.

An item's learned state is a delta from its base vector (the bundle's trained
vector, or the text vector a new item was published with); the served vector
is ``normalize(base + delta)``. As in "Let It Go? Not Quite" (RecSys 2025) the
delta's norm is bounded (projected after every step), so a few clicks cannot
carry an item anywhere, and items the bundle did not train (text-only vectors:
weak guesses) learn with a larger rate and bound than trained ones (whose
vectors already hold many users' evidence).

Clicks also keep the popularity prior current. The bundle's prior is each
item's click count, decayed with a half-life, as of the end of its training data
(``popularity.npy`` over ``manifest.popularity.clicks_at_max``); the stream adds
its own clicks, decayed with ``popularity_half_life_s`` in event time, so an
item released after training, or one whose audience grew, is weighed by what
users do now (:func:`served_popularity`). It is the same estimate training made,
continued.

Where each part runs: :func:`feedback_step` at the worker that handled the
click (it holds the user's vector and serves the item's current vector),
:func:`fold` where the item's learned state lives (one owner per item), and
:func:`served_vector` at every worker that applies the state to its index.
``fold`` needs no model, so whoever owns the state never loads a bundle.

At-least-once: a state records, per source partition of the clicks, the last
source offset it folded; a click at or before it is a replay (a worker crashed
between learning and committing) and teaches nothing, so a replay never moves
an item twice as far. State is tied to the bundle version it was learned for:
feedback for another version starts the item over (deltas do not carry into
a different vector space) or, when it is older than the state, is dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inference.settings import OnlineSettings

__all__ = [
    "Feedback",
    "LearnedItem",
    "LearningModel",
    "PopularityScale",
    "UserCentre",
    "feedback_for",
    "feedback_step",
    "fold",
    "served_popularity",
    "served_vector",
]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class UserCentre:
    """A running mean of user vectors: exact over the first ``window``, then exponential
    with weight ``1 / window`` (it follows a drifting population). Not ready (no
    learning) before ``warmup`` vectors: an uncentred step would make a hub."""

    def __init__(self, dim: int, *, window: int = 1000, warmup: int = 100) -> None:
        if window < 1 or not 0 <= warmup <= window:
            raise ValueError(f"need window >= 1 and 0 <= warmup <= window: {window}, {warmup}")
        self.window = window
        self.warmup = warmup
        self.n = 0
        self.mean = np.zeros(dim, np.float64)

    @property
    def ready(self) -> bool:
        return self.n >= self.warmup

    def add(self, user_vector: np.ndarray) -> None:
        u = np.asarray(user_vector, np.float64).reshape(-1)
        if u.shape != self.mean.shape or not np.all(np.isfinite(u)):
            return
        self.n += 1
        self.mean += (u - self.mean) / min(self.n, self.window)


def feedback_step(
    user_vector: np.ndarray, item_vector: np.ndarray, centre: np.ndarray | None = None
) -> np.ndarray:
    """(D,) float32: the direction a click moves the item (module docstring):
    ``c - <c, v> v`` with ``c = u - centre``.

    ``user_vector`` is the clicking user's vector before the click (the one that
    ranked the item), ``item_vector`` the item's vector as served at that moment,
    ``centre`` the mean user vector (None: uncentred).
    """
    u = np.asarray(user_vector, np.float64).reshape(-1)
    v = _unit(np.asarray(item_vector, np.float64).reshape(-1))
    if u.shape != v.shape:
        raise ValueError(f"user vector {u.shape} and item vector {v.shape} differ")
    if centre is not None:
        u = u - np.asarray(centre, np.float64).reshape(-1)
    return (u - float(u @ v) * v).astype(np.float32)


@dataclass(frozen=True)
class Feedback:
    """What one click teaches one item (the value of an ``item-feedback`` record)."""

    item_id: str
    version: str  # the bundle version whose vectors produced ``step``
    step: np.ndarray | None  # (D,) float32, :func:`feedback_step`; None: a count only
    trained: bool  # the bundle trained this item's vector (else: text only)
    source_partition: int  # where the click came from, for dedupe: the input partition ...
    source_offset: int  # ... and offset of the click
    created_ts: float = 0.0  # bundle created_at (epoch s): orders versions
    ts: float = 0.0  # the click's event time (epoch s): what the count decays by


@dataclass(frozen=True)
class LearnedItem:
    """An item's learned state for one bundle version (a row of the learned table)."""

    version: str
    created_ts: float  # the version's created_at: feedback for an older one is dropped
    delta: np.ndarray | None  # (D,) float32, ||delta|| <= the bound in force; None: no step yet
    clicks: int  # feedback folded
    count: float = 0.0  # clicks in the stream, each decayed by its age at count_ts
    count_ts: float = 0.0  # event time of the latest click folded
    applied: Mapping[int, int] = field(default_factory=dict)  # source partition -> last offset

    def seen(self, partition: int, offset: int) -> bool:
        last = self.applied.get(partition)
        return last is not None and offset <= last

    def to_json(self) -> dict[str, Any]:
        delta = None
        if self.delta is not None:
            delta = base64.b64encode(np.asarray(self.delta, "<f4").tobytes()).decode("ascii")
        return {
            "version": self.version,
            "created_ts": self.created_ts,
            "delta": delta,
            "clicks": self.clicks,
            "count": self.count,
            "count_ts": self.count_ts,
            "applied": {str(p): o for p, o in self.applied.items()},
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LearnedItem:
        raw = value.get("delta")
        delta = None if raw is None else np.frombuffer(base64.b64decode(raw), dtype="<f4").copy()
        return cls(
            version=str(value["version"]),
            created_ts=float(value.get("created_ts", 0.0)),
            delta=delta,
            clicks=int(value["clicks"]),
            count=float(value.get("count", 0.0)),
            count_ts=float(value.get("count_ts", 0.0)),
            applied={int(p): int(o) for p, o in dict(value.get("applied", {})).items()},
        )


class LearningModel(Protocol):
    """What the clicking worker reads from its serving model (``OnnxRecommender`` has it)."""

    @property
    def model_version(self) -> str: ...

    def item_vector(self, item_id: str) -> np.ndarray | None: ...

    def base_vector(self, item_id: str) -> tuple[np.ndarray, bool] | None: ...


def feedback_for(
    model: LearningModel,
    item_id: str,
    user_vector: np.ndarray | None,
    *,
    source_partition: int,
    source_offset: int,
    created_ts: float,
    ts: float,
    centre: UserCentre | None = None,
) -> Feedback | None:
    """What a click at event time ``ts`` on ``item_id`` by a user whose vector was
    ``user_vector`` teaches it, as the worker that served the click sees it: a step
    and a count, or a count only when there is no step to take (the user had no
    history, so no vector, or ``centre`` is not ready yet); None when the item is
    not in the index. The user's vector is added to ``centre`` either way."""
    base = model.base_vector(item_id)
    served = model.item_vector(item_id)
    if base is None or served is None:
        return None
    step = None
    if user_vector is not None:
        mean = None
        ready = True
        if centre is not None:
            ready = centre.ready
            mean = centre.mean.copy()
            centre.add(user_vector)
        if ready:
            step = feedback_step(user_vector, served, mean)
    return Feedback(
        item_id=item_id,
        version=model.model_version,
        step=step,
        trained=base[1],
        source_partition=source_partition,
        source_offset=source_offset,
        created_ts=created_ts,
        ts=ts,
    )


def fold(state: LearnedItem | None, fb: Feedback, settings: OnlineSettings) -> LearnedItem | None:
    """The item's state after ``fb``; None when ``fb`` teaches nothing.

    Nothing is learned from a replayed click (its source offset was folded
    already), from feedback for a bundle older than the state's, or from a
    non-finite step or time. Feedback for another, newer version starts from zero.
    """
    step = None if fb.step is None else np.asarray(fb.step, np.float32).reshape(-1)
    if (step is not None and not np.all(np.isfinite(step))) or not np.isfinite(fb.ts):
        return None
    if state is not None and state.version != fb.version:
        if fb.created_ts < state.created_ts:
            return None  # a straggler from the bundle being replaced
        state = None
    if state is not None and state.seen(fb.source_partition, fb.source_offset):
        return None
    delta = None if state is None else state.delta
    if step is not None:
        if delta is not None and delta.shape != step.shape:
            return None  # cannot happen within one version; never crash on it
        lr = settings.lr_trained if fb.trained else settings.lr_new
        bound = settings.bound_trained if fb.trained else settings.bound_new
        delta = (np.zeros_like(step) if delta is None else delta) + lr * step
        norm = float(np.linalg.norm(delta))
        if norm > bound:
            delta = delta * (bound / norm)  # projection onto the ball: the hard bound
        delta = delta.astype(np.float32)
    count, count_ts = (0.0, fb.ts) if state is None else (state.count, state.count_ts)
    h = settings.popularity_half_life_s
    if fb.ts >= count_ts:  # decay what was counted to this click's time, then add it
        count, count_ts = count * 2.0 ** ((count_ts - fb.ts) / h) + 1.0, fb.ts
    else:  # a late click: added at its own age
        count += 2.0 ** ((fb.ts - count_ts) / h)
    applied = dict(state.applied) if state is not None else {}
    applied[fb.source_partition] = fb.source_offset
    return LearnedItem(
        version=fb.version,
        created_ts=fb.created_ts,
        delta=delta,
        clicks=(state.clicks if state is not None else 0) + 1,
        count=count,
        count_ts=count_ts,
        applied=applied,
    )


@dataclass(frozen=True)
class PopularityScale:
    """What turns stream counts into the bundle prior's units (``manifest.popularity``)."""

    clicks_at_max: float  # decayed clicks of the most popular item at ``as_of`` (prior 1.0)
    as_of: float  # event time the bundle's prior is as of (its training data's last click)


def served_popularity(
    prior: float, state: LearnedItem | None, scale: PopularityScale, half_life_s: float
) -> float:
    """An item's popularity as served, in units where the prior is ``2^((t - as_of)/h)``
    times its value at time t (a common factor that fusion's standardisation ignores):
    ``prior + count * 2^((count_ts - as_of) / h) / clicks_at_max``. Finite for any
    time within ~1,000 half-lives of ``as_of``; the caller rescales beyond float32."""
    if state is None or state.count <= 0:
        return float(prior)
    exponent = min((state.count_ts - scale.as_of) / half_life_s, 1000.0)
    return float(prior + state.count * 2.0**exponent / max(scale.clicks_at_max, 1e-12))


def served_vector(base: np.ndarray, delta: np.ndarray | None) -> np.ndarray:
    """(D,) float32 unit vector an item is served with: ``normalize(base + delta)``."""
    b = np.asarray(base, np.float32).reshape(-1)
    if delta is None:
        return _unit(b).astype(np.float32)
    return _unit(b + np.asarray(delta, np.float32).reshape(-1)).astype(np.float32)
