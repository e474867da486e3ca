"""Canary buckets on a real broker and real workers: promote and rollback mid-stream,
a candidate that fails verification, and a click counted against the user's last list."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pytest

from inference.bundle.pointer import write_pointer
from stream.buckets import Buckets
from tools import bundles

pytestmark = pytest.mark.integration

SHARE = 0.5
CANARY_ENV = {"RECSTREAM_WORKER_CANARY_SHARE": str(SHARE)}


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of the Prometheus text exposition (labels in any order)."""
    for line in text.splitlines():
        m = re.match(r"^([a-z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m[1] != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
        if got == labels:
            return float(m[3])
    return None


async def wait_state(worker, pred, timeout: float = 60.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(worker.readiness)
        if state and pred(state):
            return state
        await asyncio.sleep(0.2)
    raise AssertionError(f"worker state never matched: {state}\n{worker.tail_log(20)}")


async def test_promote_and_rollback_mid_stream_answer_every_event_once(
    workers, make_client, tiny_bundle_root, tmp_path: Path
) -> None:
    from inference.testing import build_tiny_bundle

    root = tmp_path / "bundles"
    shutil.copytree(tiny_bundle_root, root)  # tiny-1
    await asyncio.to_thread(build_tiny_bundle, root, n_items=200, dim=32, version="tiny-2", seed=1)
    write_pointer(root, "CURRENT", "tiny-1")
    bundles.candidate(root, "tiny-2")
    worker = workers.start(root, extra=CANARY_ENV)
    await asyncio.to_thread(worker.wait_ready, 120)
    await wait_state(worker, lambda s: s["buckets"]["canary"]["serving"])
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "recstream_model_info", version="tiny-1", bucket="control") == 1
    assert metric(text, "recstream_model_info", version="tiny-2", bucket="canary") == 1
    for bucket in ("control", "canary"):
        assert (metric(text, "recstream_model_memory_bytes", bucket=bucket) or 0) > 0

    sent: list[str] = []
    async with make_client() as c:

        async def stream_events(n: int, rate: float) -> None:
            for i in range(n):
                eid, user = f"e{i}", f"user{i % 41}"
                if i % 5 == 0:
                    await c.query(eid, user, "funny comedy")
                else:
                    await c.click(eid, user, f"i{(i * 7) % 200}")
                sent.append(eid)
                await asyncio.sleep(1.0 / rate)

        producer = asyncio.create_task(stream_events(700, 100.0))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(bundles.promote, root)
        await wait_state(
            worker,
            lambda s: s["model_version"] == "tiny-2" and not s["buckets"]["canary"]["serving"],
        )
        await asyncio.sleep(1.0)
        await asyncio.to_thread(bundles.rollback, root)
        await wait_state(worker, lambda s: s["model_version"] == "tiny-1")
        await producer
        await c.wait_recs(sent, timeout=90)
        await asyncio.sleep(1.0)  # anything answered twice would arrive by now

    ids = [r.trigger_event_id for _, _, r, _ in c.recs]
    assert len(ids) == len(set(ids)) == len(sent) == 700, "every event answered exactly once"
    # Buckets follow the documented hash; the canary only ever served tiny-2.
    assign = Buckets("recstream", SHARE)
    for _, _, r, _ in c.recs:
        if r.bucket == "canary":
            assert assign.of(r.user_id) == "canary" and r.model_version == "tiny-2"
    # Per output partition (one user's answers stay in order): canary phase (control
    # tiny-1 beside canary tiny-2), then promoted (control tiny-2 for everyone), then
    # rolled back (control tiny-1); no answer from an earlier phase after a later one.
    phases = {"A": 0, "B": 1, "C": 2}
    seen = set()
    by_partition: dict[int, list[str]] = defaultdict(list)
    for partition, _offset, r, _ in sorted(c.recs, key=lambda x: (x[0], x[1])):
        by_partition[partition].append(f"{r.bucket}:{r.model_version}")
    for seq in by_partition.values():
        phase = "A"
        for token in seq:
            if token == "control:tiny-2":
                assert phases[phase] <= phases["B"], seq
                phase = "B"
            elif token == "control:tiny-1" and phase == "B":
                phase = "C"
            elif token == "canary:tiny-2":
                assert phase == "A", seq
            seen.add((phase, token))
    assert {("A", "canary:tiny-2"), ("A", "control:tiny-1"), ("B", "control:tiny-2")} <= seen
    assert ("C", "control:tiny-1") in seen
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "recstream_model_info", version="tiny-1", bucket="control") == 1
    assert metric(text, "recstream_model_info", version="tiny-2", bucket="canary") is None
    # tiny-1 loaded, tiny-2 loaded, tiny-2 handed over (no load), tiny-1 loaded again
    assert metric(text, "recstream_model_reloads_total", result="ok") == 3


async def test_a_failing_candidate_leaves_everyone_on_control_and_clicks_are_judged(
    workers, make_client, tiny_bundle_root, tmp_path: Path
) -> None:
    from inference.testing import build_tiny_bundle

    root = tmp_path / "bundles"
    shutil.copytree(tiny_bundle_root, root)
    bad = await asyncio.to_thread(
        build_tiny_bundle, root, n_items=200, dim=32, version="tiny-bad", seed=2
    )
    manifest = json.loads((bad / "manifest.json").read_text())
    with (bad / sorted(manifest["files"])[0]).open("ab") as fh:
        fh.write(b"tampered")
    write_pointer(root, "CURRENT", "tiny-1")
    write_pointer(root, "CANDIDATE", "tiny-bad")  # by hand: `bundles candidate` refuses it
    worker = workers.start(root, extra=CANARY_ENV)
    await asyncio.to_thread(worker.wait_ready, 120)
    # the first reason is the transient "loading tiny-bad"; wait for the verdict
    state = await wait_state(worker, lambda s: "failed" in (s["buckets"]["canary"]["reason"] or ""))
    canary = state["buckets"]["canary"]
    assert canary["serving"] is False and canary["share"] == 0.0
    assert "tiny-bad failed to load/verify" in canary["reason"]
    assert "sha256" in canary["reason"] or "hash" in canary["reason"]

    async with make_client() as c:
        users = [f"user{i}" for i in range(30)]
        for i, user in enumerate(users):
            await c.query(f"q{i}", user, "funny comedy")
        await c.wait_recs([f"q{i}" for i in range(len(users))])
        assert {(r.bucket, r.model_version) for _, _, r, _ in c.recs} == {("control", "tiny-1")}
        assert any(Buckets("recstream", SHARE).of(u) == "canary" for u in users)
        # a click on the third item of the user's last list: a hit at rank 3
        last = c.rec_for("q0")
        assert last is not None and len(last.items) >= 3
        await c.click("c0", "user0", last.items[2].item_id)
        await c.click("c1", "user1", "not-in-any-list")
        await c.wait_recs(["c0", "c1"])
    text = worker.get("/metrics")[1].decode()
    labels = {"model_version": "tiny-1", "bucket": "control"}
    assert metric(text, "recstream_online_feedback_total", **labels, outcome="hit") == 1
    assert metric(text, "recstream_online_feedback_total", **labels, outcome="miss") == 1
    assert metric(text, "recstream_online_feedback_rank_bucket", **labels, le="2.0") == 0
    assert metric(text, "recstream_online_feedback_rank_bucket", **labels, le="3.0") == 1
    rr = metric(text, "recstream_online_feedback_reciprocal_rank_total", **labels)
    assert rr == pytest.approx(1 / 3)
    assert (metric(text, "recstream_model_reloads_total", result="failed") or 0) >= 1
    assert "tiny-bad failed to load/verify" in worker.log_file.read_text()
