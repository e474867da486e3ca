"""``recstream ab report``'s join rule, statistics and bootstrap interval (no Kafka)."""

from __future__ import annotations

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
        Click("c5", "a", "i6", 103.0),  # c2's list (102.5): hit at rank 1 (no own answer read)
        Click("c3", "b", "x1", 99.0),  # nothing before: no recommendation
        Click("c4", "d", "z3", 200.0),  # its own answer never counts, whatever the clocks say
    ]
    judged = join(lists, clicks, k=10)
    got = [(j.click.event_id, outcome(j), j.rank) for j in judged]
    assert got == [
        ("c1", "hit", 2),
        ("c2", "hit", 2),
        ("c5", "hit", 1),
        ("c3", "no_recommendation", None),
        ("c4", "miss", None),
    ]
    assert judged[3].answered_by is not None and judged[3].answered_by.items == ("x1",)
    # the cut-off k
    assert [outcome(j) for j in join(lists, clicks[:1], k=1)] == ["miss"]


def test_report_groups_versions_buckets_and_no_recommendation() -> None:
    lists = [
        sent("a", "q0", 100.0, "i1 i2 i3 i4", 0, version="v1"),
        sent("a", "c1", 101.0, "i5", 1, version="v1"),
        sent("b", "q1", 100.0, "i1 i2", 2, version="v2", bucket="canary"),
        sent("b", "c2", 101.0, "i9", 3, version="v2", bucket="canary"),
        sent("c", "c3", 101.0, "i9", 4, version="v2", bucket="canary"),
        sent("e", "q3", 100.0, "i1", 5, version="v0"),  # an older control version
    ]
    clicks = [
        Click("c1", "a", "i4", 100.5),  # control v1: hit, rank 4
        Click("c9", "a", "i7", 102.0),  # control v1 (c1's list): miss
        Click("c2", "b", "i1", 100.5),  # canary v2: hit, rank 1
        Click("c3", "c", "i1", 100.5),  # no earlier list; its answer: canary v2
        Click("c4", "e", "i1", 100.5),  # control v0: hit, rank 1
    ]
    report = build_report(join(lists, clicks, 10), k=10, lists_read=len(lists), resamples=200)
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
    assert data["groups"][0]["hr@10"] == 1.0 and data["clicks_read"] == 5


def synthetic(n_users: int, p_control: float, p_canary: float, seed: int) -> list:
    """Users with 5-15 clicks each, hits with the bucket's probability at rank 1-10."""
    rng = np.random.default_rng(seed)
    lists, clicks, offset = [], [], 0
    for u in range(n_users):
        bucket, p = ("canary", p_canary) if u % 2 else ("control", p_control)
        user = f"u{u}"
        for c in range(int(rng.integers(5, 16))):
            items = [f"i{j}" for j in range(10)]
            lists.append(sent(user, f"{user}-q{c}", 10.0 * c, " ".join(items), offset,
                              bucket=bucket))  # fmt: skip
            offset += 1
            target = items[int(rng.integers(10))] if rng.random() < p else "other"
            clicks.append(Click(f"{user}-c{c}", user, target, 10.0 * c + 1))
    return join(lists, clicks, 10)


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
