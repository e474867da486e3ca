"""``recstream ab report``: live HR@k and MRR@k per bucket and model version, from the topics.

The clicks on ``user-events`` and the lists on ``recommendations`` are joined by
the rule the worker applies live (``stream.feedback``): a click at ``ts`` is
judged against the newest list sent to that user with ``emitted_ts <= ts``. As in
the worker, the answer to the click itself and any answer after it (in the
user's partition of ``recommendations``, the order the worker sent them) never
count, whatever the clocks say. Unlike the worker, nothing is forgotten: every
list read is available (the worker keeps a user's last few, in memory).

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

from stream.feedback import HIT, Shown, judge

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
    answered_by: Shown | None  # the answer to the click itself, if read


def join(sent: Iterable[Sent], clicks: Iterable[Click], k: int) -> list[Judged]:
    """Judge every click against the user's newest earlier list (the module's rule)."""
    by_user: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        by_user[s.user_id].append(s)
    own_index: dict[str, tuple[str, int]] = {}  # trigger event id -> (user, index)
    for user, lists in by_user.items():
        lists.sort(key=lambda s: s.order)
        for i, s in enumerate(lists):
            own_index.setdefault(s.trigger_event_id, (user, i))  # a replayed answer: the first
    out = []
    for c in clicks:
        lists = by_user.get(c.user_id, [])
        own = own_index.get(c.event_id)
        upto = own[1] if own is not None and own[0] == c.user_id else len(lists)
        judged = None
        for s in reversed(lists[:upto]):
            if s.shown.emitted_ts <= c.ts:
                judged = s.shown
                break
        rank = judge(judged, c.item_id, k)[1] if judged is not None else None
        answered = lists[upto].shown if upto < len(lists) else None
        out.append(Judged(c, judged, rank, answered))
    return out


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
    judged: list[Judged], *, k: int, lists_read: int, resamples: int = 2000, seed: int = 0
) -> Report:
    groups: dict[tuple[str, str], Group] = {}
    buckets: dict[str, Group] = {}
    none: dict[tuple[str, str], int] = defaultdict(int)
    for j in judged:
        if j.shown is None:
            a = j.answered_by
            key = (a.bucket, a.model_version) if a is not None else (UNKNOWN, UNKNOWN)
            none[key] += 1
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
    )


def outcome(j: Judged) -> str:
    """The outcome name the worker's counter would use for this click."""
    if j.shown is None:
        return "no_recommendation"
    return HIT if j.rank is not None else "miss"
