"""``recstream ab report``'s join rule, statistics and bootstrap interval (no Kafka)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stream.feedback import Shown
from tools.ab_report import Click, Sent, bootstrap_diff, build_report, join, outcome


def sent(user: str, trigger: str, ts: float, items: str, offset: int, *, version: str = "v1",
         bucket: str = "control", partition: int = 0) -> Sent:  # fmt: skip
    return Sent(
        user, trigger, Shown(ts, tuple(items.split()), version, bucket), (partition, offset)
    )


def test_each_click_is_judged_against_the_newest_earlier_list_never_its_own_answer() -> None:
    lists = [
        sent("a", "q0", 100.0, "i1 i2 i3", 0),
        sent("a", "c1", 101.5, "i4 i5", 1),  # the answer to click c1
        sent("a", "c2", 102.5, "i6", 2),
        sent("b", "c3", 100.0, "x1", 3),  # b's only list answers b's own click
        # skewed clocks: c4's answer claims to be emitted before c4 happened
        sent("d", "q1", 50.0, "z1 z2", 4),
        sent("d", "c4", 199.0, "z3", 5),
    ]
    clicks = [
        Click("c1", "a", "i2", 101.0),  # q0's list: a hit at rank 2
        Click("c2", "a", "i2", 101.2),  # c1's list was emitted at 101.5, after: still q0's
        Click("c5", "a", "i6", 103.0),  # its answer was not read: not judged (nor by a worker)
        Click("c3", "b", "x1", 99.0),  # nothing before: no recommendation
        Click("c4", "d", "z3", 200.0),  # its own answer never counts, whatever the clocks say
    ]
    judged = join(lists, clicks, k=10, per_user=4)
    got = [(j.click.event_id, outcome(j), j.rank) for j in judged]
    assert got == [
        ("c1", "hit", 2),
        ("c2", "hit", 2),
        ("c5", "unanswered", None),
        ("c3", "no_recommendation", None),
        ("c4", "miss", None),
    ]
    assert judged[3].answered_by is not None and judged[3].answered_by.items == ("x1",)
    # the cut-off k
    assert [outcome(j) for j in join(lists, clicks[:1], k=1, per_user=4)] == ["miss"]
    # the bound: keeping one list, c2 (at 101.2, answered after c1's list of 101.5) finds
    # only c1's list, emitted after it: no recommendation, as a worker keeping one finds
    assert [outcome(j) for j in join(lists, clicks[:2], k=10, per_user=1)] == [
        "hit",
        "no_recommendation",
    ]


def test_report_groups_versions_buckets_and_no_recommendation() -> None:
    lists = [
        sent("a", "q0", 100.0, "i1 i2 i3 i4", 0, version="v1"),
        sent("a", "c1", 101.0, "i5", 1, version="v1"),
        sent("b", "q1", 100.0, "i1 i2", 2, version="v2", bucket="canary"),
        sent("b", "c2", 101.0, "i9", 3, version="v2", bucket="canary"),
        sent("c", "c3", 101.0, "i9", 4, version="v2", bucket="canary"),
        sent("e", "q3", 100.0, "i1", 5, version="v0"),  # an older control version
        sent("a", "c9", 102.1, "i8", 6, version="v1"),
        sent("e", "c4", 100.6, "i2", 7, version="v1"),
    ]
    clicks = [
        Click("c1", "a", "i4", 100.5),  # control v1: hit, rank 4
        Click("c9", "a", "i7", 102.0),  # control v1 (c1's list): miss
        Click("c2", "b", "i1", 100.5),  # canary v2: hit, rank 1
        Click("c3", "c", "i1", 100.5),  # no earlier list; its answer: canary v2
        Click("c4", "e", "i1", 100.5),  # control v0: hit, rank 1
        Click("c6", "e", "i1", 101.0),  # its answer was not read: not judged
    ]
    judged = join(lists, clicks, 10, per_user=4)
    report = build_report(judged, k=10, per_user=4, lists_read=len(lists), resamples=200)
    groups = {(g.bucket, g.model_version): (g.clicks, g.hits, g.rr) for g in report.groups}
    assert groups == {
        ("control", "v0"): (1, 1, 1.0),
        ("control", "v1"): (2, 1, 0.25),
        ("canary", "v2"): (1, 1, 1.0),
    }
    control = next(g for g in report.buckets if g.bucket == "control")
    assert (control.hr, control.mrr) == (pytest.approx(2 / 3), pytest.approx(1.25 / 3))
    assert report.no_recommendation == {("canary", "v2"): 1}
    data = report.to_json()
    assert report.unanswered == 1 and outcome(judged[-1]) == "unanswered"
    assert data["groups"][0]["hr@10"] == 1.0 and data["clicks_read"] == 6
    assert data["unanswered"] == 1 and data["per_user_lists"] == 4


def synthetic(n_users: int, p_control: float, p_canary: float, seed: int) -> list:
    """Users with 5-15 clicks each, hits with the bucket's probability at rank 1-10."""
    rng = np.random.default_rng(seed)
    lists, clicks, offset = [], [], 0
    for u in range(n_users):
        bucket, p = ("canary", p_canary) if u % 2 else ("control", p_control)
        user = f"u{u}"
        items = [f"i{j}" for j in range(10)]
        n = int(rng.integers(5, 16))
        for c in range(n + 1):  # list c answers event c (a click from 1 on), at 10 c
            lists.append(sent(user, f"{user}-e{c}", 10.0 * c, " ".join(items), offset,
                              bucket=bucket))  # fmt: skip
            offset += 1
        for c in range(n):  # click c + 1 follows list c
            target = items[int(rng.integers(10))] if rng.random() < p else "other"
            clicks.append(Click(f"{user}-e{c + 1}", user, target, 10.0 * c + 1))
    return join(lists, clicks, 10, per_user=4)


def test_bootstrap_interval_finds_a_real_difference_and_not_a_null_one() -> None:
    real = synthetic(400, 0.20, 0.30, seed=1)
    diffs, intervals = bootstrap_diff(real, resamples=1000, seed=0)
    hr = next(d for d in diffs if d.statistic == "hr")
    assert hr.low < hr.value < hr.high and hr.excludes_zero and hr.low > 0
    lo, hi = intervals["canary"]["hr"]
    assert lo < 0.30 < hi
    null = synthetic(400, 0.25, 0.25, seed=2)
    (hr0, mrr0) = bootstrap_diff(null, resamples=1000, seed=0)[0]
    assert not hr0.excludes_zero and not mrr0.excludes_zero
    # seeded: the same interval again; another seed moves it a little, not the point
    again = bootstrap_diff(real, resamples=1000, seed=0)[0][0]
    other = bootstrap_diff(real, resamples=1000, seed=9)[0][0]
    assert (again.low, again.high) == (hr.low, hr.high)
    assert other.value == hr.value and other.low != hr.low
    assert math.isclose(other.low, hr.low, abs_tol=0.02)


def test_one_bucket_only_has_no_difference() -> None:
    judged = [j for j in synthetic(50, 0.2, 0.2, seed=3) if j.shown and j.shown.bucket == "control"]
    diffs, intervals = bootstrap_diff(judged, resamples=200)
    assert diffs == [] and set(intervals) == {"control"}


def test_when_parses_relative_epoch_and_iso_times() -> None:
    import typer

    from tools.cli import _when

    now = 1_000_000.0
    assert _when("-2h", now) == now - 7200 and _when("-30m", now) == now - 1800
    assert _when("now", now) == now and _when("12.5", now) == 12.5
    assert _when("1970-01-02T00:00:00Z", now) == 86400.0
    assert _when("1970-01-02T00:00:00", now) == 86400.0  # no zone: UTC
    with pytest.raises(typer.BadParameter):
        _when("yesterday", now)


# -- the shared rule: the worker and the report count the same outcomes ----------------


def test_worker_and_report_agree_when_a_users_clicks_outrun_the_kept_lists() -> None:
    """A crafted stream through the worker's code (BatchProcessor answers, LiveFeedback
    as Worker.handle_batch feeds it, Prometheus counters) and through the report (the
    answers' wire records, the clicks): user "slow" is answered later and later, so from
    its 8th click on all 4 kept lists were emitted after the click. Both count those
    clicks no_recommendation; keeping every list (the report's old rule) would not."""
    from recstream.settings import TopicNames
    from stream.buckets import Buckets, Canary
    from stream.feedback import LiveFeedback
    from stream.messages import InMessage
    from stream.metrics import WorkerMetrics
    from stream.processing import BatchProcessor
    from stream.settings import WorkerSettings
    from stream.testing import FakeRecommender
    from tools.ab_report import sent_from_record

    topics = TopicNames()
    catalog = {f"m{i}": (f"Movie {i}", "drama") for i in range(40)}
    buckets = Buckets("salt", 0.5)
    slow = next(f"s{i}" for i in range(100) if buckets.of(f"s{i}") == "canary")
    quick = next(f"q{i}" for i in range(100) if buckets.of(f"q{i}") == "control")
    now = [0.0]
    control = FakeRecommender(catalog, version="ctl")
    canary = FakeRecommender(catalog, version="can")
    metrics = WorkerMetrics()
    proc = BatchProcessor(
        settings=WorkerSettings(store="memory://"),
        topics=topics,
        model=lambda: control,
        canary=lambda: Canary(canary, buckets),
        sequences={},
        interests={},
        metrics=metrics,
        clock=lambda: now[0],
    )
    feedback = LiveFeedback(metrics, k=10, per_user=4, max_users=100)
    sent, clicks, last = [], [], {}  # last: user -> items of the last answer
    # (user, ts the event happened, time the worker answers it)
    plan = [(slow, 1000.0 + i, 1000.5 + 2.5 * i) for i in range(14)]
    plan += [(quick, 1000.2 + i, 1000.7 + i) for i in range(14)]
    plan.sort(key=lambda p: p[2])  # the order the worker answers them
    for n, (user, ts, answer_at) in enumerate(plan):
        if n % 5 == 3:  # a query now and then: answered and kept, never judged
            value = {"event_id": f"x{n}", "user_id": user, "text": "drama", "ts": ts}
            topic = topics.search_text
        else:
            prev = last.get(user, ("m39",))
            item = prev[1 + n % 3] if n % 4 and len(prev) > 3 else "m39"  # hits and misses
            value = {"event_id": f"e{n}", "user_id": user, "item_id": item, "type": "click",
                     "ts": ts}  # fmt: skip
            topic = topics.user_events
            clicks.append(Click(f"e{n}", user, item, ts))
        now[0] = answer_at
        out = proc.process([InMessage(topic, 0, n, user.encode(), json.dumps(value).encode())])
        for a in out.recommendations:  # as Worker.handle_batch does
            feedback.observe(a.user_id, a.clicked, a.event_ts,
                             Shown(a.emitted_ts, a.items, a.model_version, a.bucket))  # fmt: skip
            sent.append(sent_from_record(json.loads(a.value), 0, len(sent)))
            last[a.user_id] = a.items

    def prom(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    judged = join(sent, clicks, 10, per_user=4)
    report = build_report(judged, k=10, per_user=4, lists_read=len(sent), resamples=100)
    groups = {(g.bucket, g.model_version): g for g in report.groups}
    assert set(groups) == {("control", "ctl"), ("canary", "can")}
    total = "recstream_online_feedback_total"
    for (bucket, version), g in groups.items():
        labels = {"model_version": version, "bucket": bucket}
        assert g.hits == prom(total, **labels, outcome="hit") > 0
        assert g.clicks - g.hits == prom(total, **labels, outcome="miss") > 0
        assert g.rr == pytest.approx(
            prom("recstream_online_feedback_reciprocal_rank_total", **labels)
        )
        none = report.no_recommendation.get((bucket, version), 0)
        assert none == prom(total, **labels, outcome="no_recommendation")
    # the slow user's late clicks: no kept list before them, in both
    assert report.no_recommendation[("canary", "can")] >= 4
    assert report.unanswered == 0 and report.clicks_read == len(clicks)
    # the stream does exercise the bound: keeping every list judges those clicks
    unbounded = build_report(join(sent, clicks, 10, per_user=100), k=10, per_user=100,
                             lists_read=len(sent), resamples=100)  # fmt: skip
    assert (
        unbounded.no_recommendation.get(("canary", "can"), 0)
        < report.no_recommendation[("canary", "can")]
    )
