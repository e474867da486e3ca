"""Bundle writing is atomic and verification refuses tampered, missing or extra files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.unit.training_models.conftest import random_unit
from training.bundle_files import popularity_prior, training_mask
from training.bundle_io import finalize_bundle, staging_dir, verify_bundle
from training.data.types import Interactions
from training.errors import BundleError
from training.index_build import build_index


def _bundle(root: Path) -> Path:
    stage = staging_dir(root, "v1")
    np.save(stage / "item_vectors.npy", random_unit(5, 4, seed=0))
    (stage / "items.jsonl").write_text('{"item_id": "a"}\n')
    return finalize_bundle(stage, root, {"version": "v1", "dim": 4})


def test_written_bundle_verifies_and_lists_every_file(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    manifest = verify_bundle(path)
    assert path == tmp_path / "v1"
    assert sorted(manifest["files"]) == ["item_vectors.npy", "items.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no staging left behind


def test_modified_file_is_refused(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    with (path / "items.jsonl").open("a") as f:
        f.write('{"item_id": "evil"}\n')
    with pytest.raises(BundleError, match=r"'items\.jsonl' has sha256 .* but manifest\.json says"):
        verify_bundle(path)


def test_missing_extra_and_bad_manifest_are_refused(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    (path / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"not listed in manifest\.json"):
        verify_bundle(path)
    (path / "extra.bin").unlink()
    (path / "item_vectors.npy").unlink()
    with pytest.raises(BundleError, match="missing"):
        verify_bundle(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        verify_bundle(path)
    with pytest.raises(BundleError, match="no manifest"):
        verify_bundle(tmp_path / "nowhere")


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    _bundle(tmp_path)
    with pytest.raises(BundleError, match="already exists"):
        _bundle(tmp_path)
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["format"] == 1


def test_index_kind_follows_catalog_size() -> None:
    x = random_unit(600, 16, seed=0)
    flat = build_index(x, exact_max=1000)
    assert flat.kind == "flat" and flat.recall_at_10 == 1.0
    _, ids = flat.index.search(x[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]  # ids are row numbers
    hnsw = build_index(x, exact_max=100, n_probe_queries=200)
    assert hnsw.kind == "hnsw" and hnsw.params["M"] == 32
    assert 0.9 <= hnsw.recall_at_10 <= 1.0


def test_popularity_uses_training_events_only() -> None:
    # user 0: items 0,1,2,3 (2 and 3 held out); user 1 has only two events (all train)
    inter = Interactions(
        user=np.array([0, 0, 0, 0, 1, 1], np.int32),
        item=np.array([0, 1, 2, 3, 1, 1], np.int32),
        ts=np.array([1.0, 2.0, 3.0, 4.0, 1.0, 1.0]),
        user_ids=["u0", "u1"],
    )
    keep = training_mask(inter)
    assert keep.tolist() == [True, True, False, False, True, True]
    pop = popularity_prior(inter, 4, keep=keep)
    assert pop.dtype == np.float32 and pop.max() == 1.0
    assert pop[1] == 1.0 and pop[2] == 0.0 and pop[3] == 0.0 and 0 < pop[0] < 1
