"""Bundle verification refuses anything but the sealed files; the handle swaps safely."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import find_latest, load_bundle, verify_bundle
from inference.errors import (
    BundleFileMissingError,
    BundleHashError,
    BundleManifestError,
    BundleNotFoundError,
    BundleUnexpectedFileError,
)
from inference.handle import BundleHandle
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


class _Obj:
    def __init__(self, name: str) -> None:
        self.name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def test_handle_closes_old_object_only_after_last_lease() -> None:
    a, b = _Obj("a"), _Obj("b")
    handle = BundleHandle(a)
    with handle.lease() as got:
        assert got is a
        assert handle.swap(b) is a
        assert not a.closed  # still leased
        with handle.lease() as now:
            assert now is b
    assert a.closed and not b.closed
    handle.swap(_Obj("c"))
    assert b.closed  # unleased: closed at once


def test_handle_swaps_under_concurrent_leases() -> None:
    handle = BundleHandle(_Obj("0"))
    made = [handle.current]
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with handle.lease() as obj:
                if obj.closed:
                    errors.append(f"leased a closed object {obj.name}")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(1, 300):
        new = _Obj(str(i))
        made.append(new)
        handle.swap(new)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert all(o.closed for o in made[:-1]) and not made[-1].closed


def test_handle_without_object_refuses_lease() -> None:
    from inference.errors import InferenceError

    with pytest.raises(InferenceError, match="no bundle loaded"), BundleHandle().lease():
        pass
