"""``recstream ab report``: live HR@k and MRR@k per bucket and model version, from the topics.

The clicks on ``user-events`` and the lists on ``recommendations`` are joined by
the rule the worker applies live, with the worker's own code for it
(``stream.feedback``): the lists are replayed in the order the worker sent them
(a user's partition of ``recommendations``) through the same bounded memory (the
last ``per_user`` lists of each user), and each click, at its own answer, is
judged against the newest kept list with ``emitted_ts <= ts``. So the answer to
the click itself and any later answer never count, whatever the clocks say, and
a click the worker could not judge because it lagged more than ``per_user`` of
that user's answers behind is ``no_recommendation`` here too. What the report
does not replay (the worker's per-worker user bound, its empty memory after a
restart or a rebalance) is in ``stream.feedback``'s docstring.

HR@k = hits / judged clicks and MRR@k = Σ 1/rank / judged clicks per
(bucket, model version) of the judged list, and per bucket (all versions
pooled). The difference canary − control has a 95 % percentile interval from a
seeded bootstrap over users: each bucket's users are resampled with
replacement, independently (the buckets are disjoint sets of users), and the
statistic is recomputed as a ratio of sums.

Reading Kafka is :mod:`tools.ab_kafka`; the picture is :mod:`tools.ab_plot`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.feedback import HIT, Shown, ShownLists, judge

__all__ = [
    "Click",
    "Diff",
    "Group",
    "Judged",
    "Report",
    "Sent",
    "bootstrap_diff",
    "build_report",
    "join",
    "sent_from_record",
]

CONTROL, CANARY = "control", "canary"
UNKNOWN = "unknown"  # a record without a bucket (older workers)


@dataclass(frozen=True, slots=True)
class Sent:
    """One ``recommendations`` record, as the report needs it."""

    user_id: str
    trigger_event_id: str
    shown: Shown
    order: tuple[int, int]  # (partition, offset): the order the worker sent them


@dataclass(frozen=True, slots=True)
class Click:
    """One ``user-events`` record of type ``click``."""

    event_id: str
    user_id: str
    item_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class Judged:
    """A click and the list it was judged against (``shown`` None: no earlier list)."""

    click: Click
    shown: Shown | None
    rank: int | None
    answered_by: Shown | None  # the answer to the click itself; None: not read, not judged

    @property
    def answered(self) -> bool:
        return self.answered_by is not None


def join(sent: Iterable[Sent], clicks: Iterable[Click], k: int, *, per_user: int) -> list[Judged]:
    """Judge every click as the worker did when it answered it (the module's rule).

    The lists are replayed in the order the worker sent them through the worker's own
    bounded memory (:meth:`stream.feedback.ShownLists.answered`, ``per_user`` lists per
    user: the worker's ``RECSTREAM_WORKER_FEEDBACK_LISTS_PER_USER``); a click is judged
    at its answer (the first, if it was answered twice). A click whose answer was not
    read is not judged (``answered_by`` None): the worker judges a click when it
    answers it. Judged clicks come back in the order of ``clicks``.
    """
    wanted = {c.event_id: c for c in clicks}
    lists = ShownLists(per_user, max_users=None)  # every user: see stream.feedback
    done: dict[str, Judged] = {}
    # One user's lists are in one partition: (partition, offset) is the order the
    # worker sent them; users in different partitions do not interact (no user bound).
    for s in sorted(sent, key=lambda s: s.order):
        c = wanted.get(s.trigger_event_id)
        if c is None or c.user_id != s.user_id or c.event_id in done:
            lists.answered(s.user_id, None, s.shown)
            continue
        judged = lists.answered(s.user_id, c.ts, s.shown)
        rank = judge(judged, c.item_id, k)[1] if judged is not None else None
        done[c.event_id] = Judged(c, judged, rank, s.shown)
    return [done.get(c.event_id) or Judged(c, None, None, None) for c in wanted.values()]


def sent_from_record(value: dict[str, Any], partition: int, offset: int) -> Sent:
    """A ``recommendations`` record (its JSON value) as the report needs it; a record
    without ``bucket`` (older workers) is in bucket ``unknown``."""
    shown = Shown(
        float(value["emitted_ts"]),
        tuple(str(i["item_id"]) for i in value["items"]),
        str(value["model_version"]),
        str(value.get("bucket") or UNKNOWN),
    )
    return Sent(str(value["user_id"]), str(value["trigger_event_id"]), shown, (partition, offset))


@dataclass
class Group:
    """The judged clicks of one (bucket, model version), or of one bucket."""

    bucket: str
    model_version: str  # "*" for a whole bucket
    clicks: int = 0
    hits: int = 0
    rr: float = 0.0
    users: set[str] = field(default_factory=set)

    @property
    def hr(self) -> float:
        return self.hits / self.clicks if self.clicks else math.nan

    @property
    def mrr(self) -> float:
        return self.rr / self.clicks if self.clicks else math.nan


@dataclass(frozen=True)
class Diff:
    """canary − control of one statistic, with its bootstrap interval."""

    statistic: str  # "hr" or "mrr"
    value: float
    low: float
    high: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass
class Report:
    k: int
    groups: list[Group]  # per (bucket, model version)
    buckets: list[Group]  # per bucket, versions pooled
    no_recommendation: dict[tuple[str, str], int]  # by the click's own answer's labels
    diffs: list[Diff]
    bucket_intervals: dict[str, dict[str, tuple[float, float]]]  # bucket -> stat -> (lo, hi)
    clicks_read: int
    lists_read: int
    per_user: int  # the lists per user join() kept (the worker's setting)
    unanswered: int = 0  # clicks whose answer was not read: not judged, as in the worker

    def to_json(self) -> dict[str, Any]:
        def g(x: Group) -> dict[str, Any]:
            return {
                "bucket": x.bucket,
                "model_version": x.model_version,
                "clicks": x.clicks,
                "users": len(x.users),
                "hits": x.hits,
                f"hr@{self.k}": x.hr,
                f"mrr@{self.k}": x.mrr,
            }

        return {
            "k": self.k,
            "clicks_read": self.clicks_read,
            "lists_read": self.lists_read,
            "unanswered": self.unanswered,
            "per_user_lists": self.per_user,
            "groups": [g(x) for x in self.groups],
            "buckets": [
                {**g(x), "interval95": self.bucket_intervals.get(x.bucket)} for x in self.buckets
            ],
            "no_recommendation": [
                {"bucket": b, "model_version": v, "clicks": n}
                for (b, v), n in sorted(self.no_recommendation.items())
            ],
            "difference_canary_minus_control": [
                {
                    "statistic": f"{d.statistic}@{self.k}",
                    "value": d.value,
                    "interval95": [d.low, d.high],
                    "excludes_zero": d.excludes_zero,
                    "resamples": d.resamples,
                }
                for d in self.diffs
            ],
        }


def _per_user(judged: list[Judged], bucket: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clicks, hits, Σ 1/rank) per user of ``bucket``'s judged lists, users in a fixed order."""
    acc: dict[str, list[float]] = {}
    for j in judged:
        if j.shown is None or j.shown.bucket != bucket:
            continue
        row = acc.setdefault(j.click.user_id, [0.0, 0.0, 0.0])
        row[0] += 1
        if j.rank is not None:
            row[1] += 1
            row[2] += 1.0 / j.rank
    users = sorted(acc)
    arr = np.array([acc[u] for u in users], dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _resampled_sums(rows: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, columns) sums over users drawn with replacement (multinomial weights)."""
    n = rows.shape[0]
    out = np.empty((resamples, rows.shape[1]))
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start)  # (b, n)
        out[start:stop] = weights @ rows
    return out


def bootstrap_diff(
    judged: list[Judged], *, resamples: int = 2000, seed: int = 0
) -> tuple[list[Diff], dict[str, dict[str, tuple[float, float]]]]:
    """canary − control of HR and MRR with 95 % intervals, and each bucket's own interval."""
    rng = np.random.default_rng(seed)
    ratios: dict[str, np.ndarray] = {}
    points: dict[str, tuple[float, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    for bucket in (CONTROL, CANARY):
        clicks, hits, rr = _per_user(judged, bucket)
        if clicks.size == 0:
            continue
        sums = _resampled_sums(np.stack([clicks, hits, rr], axis=1), resamples, rng)
        ratios[bucket] = np.stack([sums[:, 1] / sums[:, 0], sums[:, 2] / sums[:, 0]], axis=1)
        points[bucket] = (hits.sum() / clicks.sum(), rr.sum() / clicks.sum())
        lo, hi = np.percentile(ratios[bucket], [2.5, 97.5], axis=0)
        intervals[bucket] = {"hr": (lo[0], hi[0]), "mrr": (lo[1], hi[1])}
    diffs = []
    if CONTROL in ratios and CANARY in ratios:
        delta = ratios[CANARY] - ratios[CONTROL]
        lo, hi = np.percentile(delta, [2.5, 97.5], axis=0)
        for i, stat in enumerate(("hr", "mrr")):
            value = points[CANARY][i] - points[CONTROL][i]
            diffs.append(Diff(stat, float(value), float(lo[i]), float(hi[i]), resamples))
    return diffs, intervals


def build_report(
    judged: list[Judged],
    *,
    k: int,
    per_user: int,
    lists_read: int,
    resamples: int = 2000,
    seed: int = 0,
) -> Report:
    """Group what :func:`join` judged (``k`` and ``per_user`` as it was called with)."""
    groups: dict[tuple[str, str], Group] = {}
    buckets: dict[str, Group] = {}
    none: dict[tuple[str, str], int] = defaultdict(int)
    unanswered = 0
    for j in judged:
        if j.answered_by is None:
            unanswered += 1
            continue
        if j.shown is None:
            none[(j.answered_by.bucket, j.answered_by.model_version)] += 1
            continue
        for g in (
            groups.setdefault(
                (j.shown.bucket, j.shown.model_version),
                Group(j.shown.bucket, j.shown.model_version),
            ),
            buckets.setdefault(j.shown.bucket, Group(j.shown.bucket, "*")),
        ):
            g.clicks += 1
            g.users.add(j.click.user_id)
            if j.rank is not None:
                g.hits += 1
                g.rr += 1.0 / j.rank
    diffs, intervals = bootstrap_diff(judged, resamples=resamples, seed=seed)
    return Report(
        k=k,
        groups=sorted(
            groups.values(), key=lambda g: (g.bucket != CONTROL, g.bucket, g.model_version)
        ),
        buckets=sorted(buckets.values(), key=lambda g: (g.bucket != CONTROL, g.bucket)),
        no_recommendation=dict(none),
        diffs=diffs,
        bucket_intervals=intervals,
        clicks_read=len(judged),
        lists_read=lists_read,
        unanswered=unanswered,
        per_user=per_user,
    )


def outcome(j: Judged) -> str:
    """The outcome name the worker's counter would use for this click ("unanswered": the
    answer was not read, the click was not judged)."""
    if j.answered_by is None:
        return "unanswered"
    if j.shown is None:
        return "no_recommendation"
    return HIT if j.rank is not None else "miss"
