"""Live feedback: did the user click what recstream recommended, and at which rank?

**The rule** (one definition, used by the worker and by ``recstream ab report``):
a click (a ``user-events`` record with ``type == "click"``) at time ``ts`` is
judged against the newest recommendation that user was sent with
``emitted_ts <= ts`` (ties keep emission order). The list a click is judged
against was therefore on its way to the user before the click happened; the
answer to the click itself, or to anything the user did later, never counts.

- ``hit``: the clicked item is in that list at rank ``r <= k`` (1-based);
  reciprocal rank ``1/r``.
- ``miss``: it is not, or only below rank ``k``; reciprocal rank 0.
- ``no_recommendation``: no earlier list is known.

HR@k = hits / (hits + misses) and MRR@k = Σ 1/r / (hits + misses): clicks with
no earlier recommendation are counted apart, not in the denominator. Each
hit and miss is labelled with the ``model_version`` and ``bucket`` of the list
that was judged, not of the model serving at the click; a ``no_recommendation``
with those of the answer to the click (the bucket the user is in now).

**One bounded memory, two users.** What a click can be judged against is what
:class:`ShownLists` kept when the click was answered: the last ``per_user`` lists
of that user (``RECSTREAM_WORKER_FEEDBACK_LISTS_PER_USER``), oldest forgotten
first. :meth:`ShownLists.answered` is the one step, per answer in the order they
were sent: a click is judged against the newest kept list emitted before it, then
the answer is kept. The worker calls it live (:class:`LiveFeedback`); ``recstream
ab report`` (``tools.ab_report.join``) calls it while replaying ``recommendations``
in partition order, each click at its own answer, with the same ``per_user``. So
when a worker lags more than ``per_user`` of a user's answers behind that user's
clicks, every kept list is newer than the click and both count it
``no_recommendation``; they count the same outcomes by construction.

What they cannot share: the worker also forgets the least recently answered users
beyond ``max_users`` (``RECSTREAM_WORKER_FEEDBACK_MAX_USERS``, per worker; the
report, which does not know which worker owned which partition, keeps every user),
and its memory is not durable (no table, no changelog): after a rebalance or a
restart the new owner starts empty and a moved user's clicks count as
``no_recommendation`` until that user is sent a new list, while the report still
has the lists on the topic. A replay after a crash judges the replayed clicks
again (at-least-once); the report judges a click once, at its first answer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

from stream.metrics import WorkerMetrics

__all__ = [
    "CLICK",
    "HIT",
    "MISS",
    "NO_RECOMMENDATION",
    "LiveFeedback",
    "Outcome",
    "Shown",
    "ShownLists",
    "judge",
]

Outcome = Literal["hit", "miss", "no_recommendation"]
HIT: Final = "hit"
MISS: Final = "miss"
NO_RECOMMENDATION: Final = "no_recommendation"
CLICK: Final = "click"  # the user-events type that is judged


@dataclass(frozen=True, slots=True)
class Shown:
    """One recommendation list as it was sent to a user."""

    emitted_ts: float
    items: tuple[str, ...]  # item ids, rank 1 first
    model_version: str
    bucket: str


def judge(shown: Shown | None, item_id: str, k: int) -> tuple[Outcome, int | None]:
    """The outcome of clicking ``item_id`` after being shown ``shown``, and the rank of a hit."""
    if shown is None:
        return NO_RECOMMENDATION, None
    try:
        rank = shown.items.index(item_id, 0, k) + 1
    except ValueError:
        return MISS, None
    return HIT, rank


class ShownLists:
    """Per user, the last ``per_user`` lists sent, oldest first; bounded in users too (least
    recently sent forgotten first). ``max_users=None``: every user (the report)."""

    def __init__(self, per_user: int, max_users: int | None) -> None:
        if per_user < 1:
            raise ValueError(f"per_user must be >= 1, got {per_user}")
        self.per_user = per_user
        self.max_users = max_users
        self._by_user: OrderedDict[str, list[Shown]] = OrderedDict()

    def remember(self, user_id: str, shown: Shown) -> None:
        lists = self._by_user.get(user_id)
        if lists is None:
            self._by_user[user_id] = [shown]
            if self.max_users is not None and len(self._by_user) > self.max_users:
                self._by_user.popitem(last=False)
            return
        self._by_user.move_to_end(user_id)
        lists.append(shown)
        if len(lists) > self.per_user:
            del lists[0]

    def answered(self, user_id: str, click_ts: float | None, answer: Shown) -> Shown | None:
        """The rule's one step, for each answer in the order it was sent: if it answers
        a click at ``click_ts``, the list that click is judged against (:meth:`before`;
        None: none kept); then ``answer`` is kept. None for any other event."""
        judged = self.before(user_id, click_ts) if click_ts is not None else None
        self.remember(user_id, answer)
        return judged

    def before(self, user_id: str, ts: float) -> Shown | None:
        """The newest list sent to ``user_id`` with ``emitted_ts <= ts`` (None if none known)."""
        lists = self._by_user.get(user_id)
        if lists:
            for shown in reversed(lists):
                if shown.emitted_ts <= ts:
                    return shown
        return None

    def __len__(self) -> int:
        return len(self._by_user)


class LiveFeedback:
    """Judges each click the worker answers and counts the outcome (``docs/metrics.md``).

    :meth:`observe` is called for every recommendation in the order the worker
    answered the events: a click is judged first, against what was sent before it,
    then the list answering it is remembered. Disabled, it does nothing (the
    cost benchmark's baseline).
    """

    def __init__(
        self,
        metrics: WorkerMetrics,
        *,
        k: int,
        per_user: int,
        max_users: int,
        enabled: bool = True,
    ) -> None:
        self.metrics = metrics
        self.k = k
        self.enabled = enabled
        self.lists = ShownLists(per_user, max_users)
        self._children: dict[tuple[str, str], _Children] = {}

    def observe(self, user_id: str, clicked: str | None, event_ts: float, shown: Shown) -> None:
        """``shown`` answered the event of ``user_id`` at ``event_ts`` (``clicked``: the
        item if that event was a click)."""
        if not self.enabled:
            return
        if clicked is None:
            self.lists.answered(user_id, None, shown)
        else:
            self._count(self.lists.answered(user_id, event_ts, shown), clicked, event_ts, shown)

    def _count(self, judged: Shown | None, clicked: str, ts: float, answer: Shown) -> None:
        if judged is None:  # labelled by the bucket and model that answered the click
            self._labels(answer.model_version, answer.bucket).none.inc()
            return
        rank = judge(judged, clicked, self.k)[1]
        c = self._labels(judged.model_version, judged.bucket)
        if rank is None:
            c.miss.inc()
        else:
            c.hit.inc()
            c.rank.observe(rank)
            c.rr.inc(1.0 / rank)
        c.age.observe(max(0.0, ts - judged.emitted_ts))

    def _labels(self, version: str, bucket: str) -> _Children:
        c = self._children.get((version, bucket))
        if c is None:
            c = self._children[(version, bucket)] = _Children(self.metrics, version, bucket)
        return c


class _Children:
    """The labelled children of one (model_version, bucket): labels() costs µs per call."""

    __slots__ = ("age", "hit", "miss", "none", "rank", "rr")

    def __init__(self, m: WorkerMetrics, version: str, bucket: str) -> None:
        self.hit: Any = m.feedback.labels(version, bucket, HIT)
        self.miss: Any = m.feedback.labels(version, bucket, MISS)
        self.none: Any = m.feedback.labels(version, bucket, NO_RECOMMENDATION)
        self.rank: Any = m.feedback_rank.labels(version, bucket)
        self.rr: Any = m.feedback_rr.labels(version, bucket)
        self.age: Any = m.feedback_age.labels(version, bucket)
