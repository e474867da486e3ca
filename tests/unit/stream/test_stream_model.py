"""Bundle resolution, hot reload (load aside, verify, swap) and the item overlay."""

from __future__ import annotations

import gc
import json
import os
import weakref
from pathlib import Path

import pytest

from inference.bundle.pointer import bundle_created_ts, resolve_bundle
from inference.types import Recommender
from recstream.errors import BundleError
from recstream.schemas import ItemUpdate
from stream.metrics import WorkerMetrics
from stream.model import ModelHolder
from stream.overlay import ItemOverlay, apply_update
from stream.testing import FakeRecommender


def seal(root: Path, version: str, created_at: str) -> Path:
    d = root / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"version": version, "created_at": created_at}))
    return d


def loader(path: Path) -> Recommender:
    version = json.loads((path / "manifest.json").read_text())["version"]
    if version.startswith("broken"):
        raise BundleError(f"{path}: hash mismatch")
    return FakeRecommender({"m1": ("One", "")}, version=version)


def test_resolve_fixed_latest_and_pointer(tmp_path: Path) -> None:
    assert resolve_bundle(tmp_path) is None
    a = seal(tmp_path, "a", "2026-01-01T00:00:00Z")
    b = seal(tmp_path, "b", "2026-02-01T00:00:00Z")
    (tmp_path / "c.tmp-123").mkdir()
    assert resolve_bundle(tmp_path) == b
    assert resolve_bundle(a) == a
    (tmp_path / "CURRENT").write_text("a\n")
    assert resolve_bundle(tmp_path) == a
    (tmp_path / "CURRENT").write_text("nope")
    with pytest.raises(BundleError, match="not a sealed bundle"):
        resolve_bundle(tmp_path)
    assert bundle_created_ts(b) == pytest.approx(1769904000.0)


async def test_hot_reload_swaps_verifies_and_replays_catalog(tmp_path: Path) -> None:
    metrics = WorkerMetrics()
    overlay = ItemOverlay()
    holder = ModelHolder(tmp_path, loader=loader, metrics=metrics, overlay=overlay)
    assert await holder.maybe_reload() is False and holder.current is None
    seal(tmp_path, "v1", "2026-01-01T00:00:00Z")
    assert await holder.maybe_reload() is True
    assert holder.version == "v1" and holder.loaded.is_set()
    assert await holder.maybe_reload() is False  # unchanged pointer: no reload
    # a catalog change reaches the live model and is remembered
    overlay.record(ItemUpdate(item_id="new", op="upsert", title="New", ts=1.0))
    overlay.record(ItemUpdate(item_id="m1", op="delete", ts=1.0))
    # a broken bundle is refused and the old model keeps serving
    seal(tmp_path, "broken-v2", "2026-02-01T00:00:00Z")
    assert await holder.maybe_reload() is False
    assert holder.version == "v1"
    assert await holder.maybe_reload() is False  # not retried every poll
    seal(tmp_path, "v3", "2026-03-01T00:00:00Z")
    assert await holder.maybe_reload() is True
    new = holder.current
    assert isinstance(new, FakeRecommender) and new.model_version == "v3"
    assert new.warm_ups == 1  # warmed once, before it served
    assert new.title("new") == "New" and new.title("m1") is None
    sample = metrics.registry.get_sample_value
    assert sample("recstream_model_reloads_total", {"result": "ok"}) == 2.0
    assert sample("recstream_model_reloads_total", {"result": "failed"}) == 1.0
    assert sample("recstream_model_info", {"version": "v3", "bucket": "control"}) == 1.0
    assert sample("recstream_model_info", {"version": "v1", "bucket": "control"}) is None
    assert sample("recstream_index_items", {}) == 1.0  # m1 deleted, new added
    # pointer file rolls back atomically to v1
    tmp = tmp_path / "CURRENT.tmp"
    tmp.write_text("v1")
    os.replace(tmp, tmp_path / "CURRENT")
    assert await holder.maybe_reload() is True and holder.version == "v1"


async def test_swap_freezes_the_new_model_and_frees_the_old(tmp_path: Path) -> None:
    def cyclic_loader(path: Path) -> Recommender:
        rec = loader(path)
        rec.self_ref = rec  # type: ignore[attr-defined]  # a cycle: only the GC can free it
        return rec

    holder = ModelHolder(
        tmp_path, loader=cyclic_loader, metrics=WorkerMetrics(), overlay=ItemOverlay()
    )
    try:
        seal(tmp_path, "v1", "2026-01-01T00:00:00Z")
        assert await holder.maybe_reload() is True
        v1 = weakref.ref(holder.current)
        # frozen: full collections no longer walk the serving model
        assert not any(o is holder.current for o in gc.get_objects())
        seal(tmp_path, "v2", "2026-02-01T00:00:00Z")
        assert await holder.maybe_reload() is True
        # the old model was unfrozen and collected before the new one was frozen
        assert v1() is None
        assert not any(o is holder.current for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_old_upserts_do_not_overwrite_trained_items_but_deletes_apply() -> None:
    rec = FakeRecommender({"m1": ("Trained", "")})
    created = 100.0
    assert not apply_update(
        rec, ItemUpdate(item_id="m1", op="upsert", title="Old", ts=50.0), created
    )
    assert rec.title("m1") == "Trained"
    assert apply_update(
        rec, ItemUpdate(item_id="m1", op="upsert", title="Fresh", ts=150.0), created
    )
    assert rec.title("m1") == "Fresh"
    assert apply_update(
        rec, ItemUpdate(item_id="m2", op="upsert", title="Unknown", ts=50.0), created
    )
    assert apply_update(rec, ItemUpdate(item_id="m1", op="delete", ts=10.0), created)
    assert rec.title("m1") is None


def test_overlay_keeps_latest_per_item_in_order() -> None:
    overlay = ItemOverlay()
    overlay.record(ItemUpdate(item_id="a", op="upsert", title="A1", ts=1.0))
    overlay.record(ItemUpdate(item_id="b", op="upsert", title="B", ts=1.0))
    s3 = overlay.record(ItemUpdate(item_id="a", op="delete", ts=2.0))
    rec = FakeRecommender({"a": ("A0", "")})
    assert overlay.replay(rec, 0.0) == s3
    assert rec.title("a") is None and rec.title("b") == "B"
    rec2 = FakeRecommender({})
    assert overlay.replay(rec2, 0.0, after=s3) == s3
    assert rec2.items == {}


async def test_the_swap_closes_the_old_model_and_a_failed_load_closes_nothing(
    tmp_path: Path,
) -> None:
    holder = ModelHolder(tmp_path, loader=loader, metrics=WorkerMetrics(), overlay=ItemOverlay())
    seal(tmp_path, "v1", "2026-01-01T00:00:00Z")
    assert await holder.maybe_reload()
    v1 = holder.current
    assert isinstance(v1, FakeRecommender)
    seal(tmp_path, "broken-v2", "2026-02-01T00:00:00Z")
    assert not await holder.maybe_reload()
    assert not v1.closed and holder.current is v1  # the old model keeps serving
    seal(tmp_path, "v3", "2026-03-01T00:00:00Z")
    assert await holder.maybe_reload()
    assert v1.closed and holder.current is not v1 and not holder.current.closed  # type: ignore[attr-defined]
