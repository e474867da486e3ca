"""Bundle verification refuses anything but the sealed files; the writer seals atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import FORMAT, Manifest, find_latest, load_bundle, staging, verify_bundle
from inference.bundle.manifest import IndexEntry, SequenceEncoderEntry, TextEncoderEntry
from inference.errors import (
    BundleFileMissingError,
    BundleHashError,
    BundleManifestError,
    BundleNotFoundError,
    BundleUnexpectedFileError,
)
from inference.testing import build_tiny_bundle, genre_of
from recstream.errors import BundleError


def test_sealed_bundle_loads_with_consistent_arrays(flat_bundle: Path) -> None:
    b = load_bundle(flat_bundle)
    assert b.version == "tiny-flat"
    assert b.vectors.shape == (200, 32) and b.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(b.vectors, axis=1), 1.0, atol=1e-5)
    assert b.popularity.shape == (200,) and b.popularity.max() == pytest.approx(1.0)
    assert b.items[3].attributes["genre"] == genre_of(3) == "action"
    assert set(b.manifest.files) == {p.name for p in flat_bundle.iterdir()} - {"manifest.json"}


def test_modified_file_is_refused_naming_it(bundle_copy: Path) -> None:
    path = bundle_copy / "item_vectors.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleHashError, match=r"item_vectors\.npy.*modified") as err:
        load_bundle(bundle_copy)
    assert err.value.path == "item_vectors.npy"
    assert isinstance(err.value, BundleError)


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "index.faiss").unlink()
    with pytest.raises(BundleFileMissingError, match=r"index\.faiss"):
        verify_bundle(bundle_copy)


def test_unlisted_extra_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "sub").mkdir()
    (bundle_copy / "sub" / "evil.onnx").write_bytes(b"x")
    with pytest.raises(BundleUnexpectedFileError, match=r"sub/evil\.onnx"):
        verify_bundle(bundle_copy)


def test_manifest_without_a_required_file_is_incomplete(bundle_copy: Path) -> None:
    mpath = bundle_copy / "manifest.json"
    manifest = json.loads(mpath.read_text())
    del manifest["files"]["popularity.npy"]
    (bundle_copy / "popularity.npy").unlink()
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(BundleManifestError, match=r"popularity\.npy.*incomplete"):
        verify_bundle(bundle_copy)


def test_garbage_manifest_and_missing_dir(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleManifestError):
        verify_bundle(bundle_copy)
    with pytest.raises(BundleNotFoundError, match=r"manifest\.json missing"):
        verify_bundle(tmp_path / "nope")


def test_find_latest_skips_unsealed_dirs(tmp_path: Path) -> None:
    build_tiny_bundle(tmp_path, version="v1", n_items=20, dim=8)
    newest = build_tiny_bundle(tmp_path, version="v2", n_items=20, dim=8)
    (tmp_path / "v3.tmp-abc").mkdir()
    assert find_latest(tmp_path) == newest
    assert find_latest(tmp_path / "empty") is None


# -- the writer -------------------------------------------------------------------------


def _manifest(version: str, **extra: object) -> Manifest:
    return Manifest(
        version=version,
        created_at="2026-01-01T00:00:00Z",
        dataset="unit",
        dim=4,
        text_encoder=TextEncoderEntry(),
        sequence_encoder=SequenceEncoderEntry(),
        index=IndexEntry(),
        **extra,  # type: ignore[arg-type]
    )


def _write(root: Path, version: str = "v1", **extra: object) -> Path:
    with staging(root, version) as stage:
        (stage.path / "items.jsonl").write_text('{"item_id": "a"}\n')
        (stage.path / "item_vectors.npy").write_bytes(b"vectors")
        return stage.seal(_manifest(version, **extra))


def test_sealed_bundle_lists_every_file_and_leaves_no_staging(tmp_path: Path) -> None:
    path = _write(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert path == tmp_path / "v1" and [p.name for p in tmp_path.iterdir()] == ["v1"]
    assert sorted(manifest["files"]) == ["item_vectors.npy", "items.jsonl"]
    assert manifest["format"] == FORMAT and oct(path.stat().st_mode & 0o777) == "0o755"


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(BundleError, match="already exists"):
        _write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # the failed staging is removed


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staging(tmp_path, "v1") as stage:
        (stage.path / "items.jsonl").write_text("{}\n")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


def test_subdirectories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a plain file"), staging(tmp_path, "v1") as stage:
        (stage.path / "sub").mkdir()
        stage.seal(_manifest("v1"))


def test_manifest_is_json_safe_and_says_only_what_the_writer_set(tmp_path: Path) -> None:
    path = _write(tmp_path, metrics={"ok": 1.5, "bad": float("nan"), "inf": [float("inf")]})
    text = (path / "manifest.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    body = json.loads(text)
    assert body["metrics"] == {"ok": 1.5, "bad": None, "inf": [None]}
    assert "fusion" not in body and "config" not in body  # not set: not written
    assert "int8_file" not in body["text_encoder"]  # an entry's unset None is not written
    assert body["text_encoder"]["file"] == "text_encoder.onnx"  # its defaults are


# -- hash check and load read the same bytes ----------------------------------------


def test_a_file_swapped_right_after_its_hash_check_is_not_what_gets_loaded(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker (or a careless copy) replaces item_vectors.npy the moment its sha256
    has been computed: what serves must still be the bytes that were checked."""
    from inference.recommender import OnnxRecommender

    vpath = bundle_copy / "item_vectors.npy"
    original = vpath.read_bytes()
    good = np.load(vpath)
    evil = bytearray(original)
    header = len(original) - good.nbytes
    evil[header:] = (-good).astype(np.float32).tobytes()  # same size, every vector flipped
    real_sha256 = hashlib.sha256

    class Swapping:
        """hashlib.sha256, but swaps the vector file once its content was hashed."""

        def __init__(self, data: bytes = b"") -> None:
            self._h, self._seen = real_sha256(data), bytearray(data)

        def update(self, data: bytes) -> None:
            self._h.update(data)
            self._seen += data

        def hexdigest(self) -> str:
            if bytes(self._seen) == original:
                vpath.write_bytes(bytes(evil))
            return self._h.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Swapping)
    rec = OnnxRecommender.load(bundle_copy)
    monkeypatch.undo()
    assert vpath.read_bytes() == bytes(evil), "the swap happened"
    served = rec.index.vectors[: len(good)]
    np.testing.assert_array_equal(served, good)
