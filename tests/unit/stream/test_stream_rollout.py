"""Rollout: control (CURRENT) and canary (CANDIDATE) holders, at most two bundles held."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inference.types import Recommender
from recstream.errors import BundleError
from stream.buckets import Buckets
from stream.metrics import WorkerMetrics
from stream.overlay import ItemOverlay
from stream.rollout import Rollout
from stream.testing import FakeRecommender


def seal(root: Path, version: str, created_at: str = "2026-01-01T00:00:00Z") -> Path:
    d = root / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"version": version, "created_at": created_at}))
    return d


def point(root: Path, pointer: str, version: str | None) -> None:
    if version is None:
        (root / pointer).unlink()
        return
    tmp = root / f"{pointer}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / pointer)


class Loads:
    """A loader that counts loads and checks no more than two models are ever open."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.open: list[FakeRecommender] = []
        self.most_open = 0

    def __call__(self, path: Path) -> Recommender:
        version = json.loads((path / "manifest.json").read_text())["version"]
        if version.startswith("broken"):
            raise BundleError(f"{path}: sha256 mismatch for item_vectors.npy")
        self.open = [r for r in self.open if not r.closed]
        rec = FakeRecommender({"m1": ("One", "")}, version=version)
        self.open.append(rec)
        self.most_open = max(self.most_open, len(self.open))
        self.loaded.append(version)
        return rec


def rollout(root: Path, loads: Loads, share: float = 0.5) -> tuple[Rollout, WorkerMetrics]:
    metrics = WorkerMetrics()
    r = Rollout(
        root, loader=loads, metrics=metrics, overlay=ItemOverlay(), buckets=Buckets("s", share)
    )
    return r, metrics


def info(metrics: WorkerMetrics, version: str, bucket: str) -> float | None:
    return metrics.registry.get_sample_value(
        "recstream_model_info", {"version": version, "bucket": bucket}
    )


async def test_no_candidate_everyone_in_control_and_readiness_says_why(tmp_path: Path) -> None:
    seal(tmp_path, "v1")
    r, _ = rollout(tmp_path, Loads())
    await r.maybe_reload()
    assert r.control.version == "v1" and r.canary.current is None
    assert r.canary_for_batch() is None
    state = r.state()["canary"]
    assert state["serving"] is False and state["share"] == 0.0
    assert "no CANDIDATE pointer" in state["reason"]


async def test_a_candidate_that_fails_verification_leaves_everyone_on_control(
    tmp_path: Path,
) -> None:
    seal(tmp_path, "v1")
    seal(tmp_path, "broken-v2")
    point(tmp_path, "CURRENT", "v1")
    point(tmp_path, "CANDIDATE", "broken-v2")
    loads = Loads()
    r, metrics = rollout(tmp_path, loads)
    await r.maybe_reload()
    assert r.control.version == "v1" and r.canary_for_batch() is None
    reason = r.state()["canary"]["reason"]
    assert "broken-v2 failed to load/verify" in reason and "sha256 mismatch" in reason
    assert (
        metrics.registry.get_sample_value("recstream_model_reloads_total", {"result": "failed"})
        == 1
    )
    await r.maybe_reload()  # not retried every poll
    assert (
        metrics.registry.get_sample_value("recstream_model_reloads_total", {"result": "failed"})
        == 1
    )
    # a fixed candidate serves once the pointer moves to it
    seal(tmp_path, "v3")
    point(tmp_path, "CANDIDATE", "v3")
    await r.maybe_reload()
    canary = r.canary_for_batch()
    assert canary is not None and canary.recommender.model_version == "v3"
    assert r.state()["canary"] == {
        "pointer": "CANDIDATE",
        "model_version": "v3",
        "serving": True,
        "share": 0.5,
        "configured_share": 0.5,
        "reason": None,
    }
    assert info(metrics, "v1", "control") == 1 and info(metrics, "v3", "canary") == 1


async def test_promote_hands_the_canary_model_over_without_loading_it_again(
    tmp_path: Path,
) -> None:
    for v in ("v1", "v2"):
        seal(tmp_path, v)
    point(tmp_path, "CURRENT", "v1")
    point(tmp_path, "CANDIDATE", "v2")
    loads = Loads()
    r, metrics = rollout(tmp_path, loads)
    await r.maybe_reload()
    canary_model = r.canary.current
    assert r.control.version == "v1" and canary_model is not None
    # `bundles promote`: CURRENT first, then CANDIDATE removed; a poll may fall between
    point(tmp_path, "CURRENT", "v2")
    await r.maybe_reload()
    assert r.control.current is canary_model and r.canary.current is None
    assert loads.loaded == ["v1", "v2"]  # nothing loaded again
    assert "which the control serves" in r.state()["canary"]["reason"]
    point(tmp_path, "CANDIDATE", None)
    await r.maybe_reload()
    assert "no CANDIDATE pointer" in r.state()["canary"]["reason"]
    assert info(metrics, "v2", "control") == 1 and info(metrics, "v2", "canary") is None
    assert info(metrics, "v1", "control") is None


async def test_never_more_than_two_bundles_even_while_loading(tmp_path: Path) -> None:
    for v in ("v1", "v2", "v3", "v4"):
        seal(tmp_path, v)
    point(tmp_path, "CURRENT", "v1")
    point(tmp_path, "CANDIDATE", "v2")
    loads = Loads()
    r, _ = rollout(tmp_path, loads)
    await r.maybe_reload()
    # the candidate moves: the old canary is given up before the new one loads
    point(tmp_path, "CANDIDATE", "v3")
    await r.maybe_reload()
    assert r.canary.version == "v3"
    # rollback-like: CURRENT moves to a bundle nobody holds while the canary serves
    point(tmp_path, "CURRENT", "v4")
    await r.maybe_reload()
    assert r.control.version == "v4"
    assert r.canary.version == "v3"  # given up for the load, loaded again in the same poll
    assert loads.most_open == 2
    assert loads.loaded == ["v1", "v2", "v3", "v4", "v3"]


@pytest.mark.parametrize("why", ["share", "fixed"])
async def test_no_canary_with_zero_share_or_a_fixed_bundle(tmp_path: Path, why: str) -> None:
    for v in ("v1", "v2"):
        seal(tmp_path, v)
    point(tmp_path, "CURRENT", "v1")
    point(tmp_path, "CANDIDATE", "v2")
    loads = Loads()
    source = tmp_path / "v1" if why == "fixed" else tmp_path
    r, _ = rollout(source, loads, share=0.0 if why == "share" else 0.5)
    await r.maybe_reload()
    assert r.control.version == "v1" and r.canary.current is None
    assert loads.loaded == ["v1"]
    reason = r.state()["canary"]["reason"]
    assert ("canary_share is 0" if why == "share" else "fixed bundle directory") in reason


async def test_readiness_says_the_canary_is_loading_while_it_loads(tmp_path: Path) -> None:
    """A first load in progress is a reason too (tools wait on it instead of giving up)."""
    seal(tmp_path, "v1")
    seal(tmp_path, "v2")
    point(tmp_path, "CURRENT", "v1")
    point(tmp_path, "CANDIDATE", "v2")
    seen: list[str | None] = []
    inner = Loads()
    r: Rollout | None = None

    def loader(path: Path) -> Recommender:
        if path.name == "v2":
            assert r is not None
            seen.append(r.state()["canary"]["reason"])
        return inner(path)

    r, _ = rollout(tmp_path, inner)
    r.canary.loader = loader  # the canary's loader looks at readiness mid-load
    await r.maybe_reload()
    assert seen == ["loading v2"]
    assert r.state()["canary"]["reason"] is None and r.canary_for_batch() is not None
