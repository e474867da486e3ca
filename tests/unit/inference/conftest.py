"""Real tiny bundles (ONNX + tokenizers + FAISS), built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.recommender import OnnxRecommender
from inference.testing import build_tiny_bundle


@pytest.fixture(scope="session")
def bundles_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def flat_bundle(bundles_root: Path) -> Path:
    return build_tiny_bundle(bundles_root, version="tiny-flat", with_int8=True)


@pytest.fixture(scope="session")
def hnsw_bundle(bundles_root: Path) -> Path:
    return build_tiny_bundle(bundles_root, version="tiny-hnsw", index_kind="hnsw", n_items=400)


@pytest.fixture
def bundle_copy(flat_bundle: Path, tmp_path: Path) -> Path:
    """A private copy a test may tamper with."""
    return Path(shutil.copytree(flat_bundle, tmp_path / flat_bundle.name))


@pytest.fixture
def rec(flat_bundle: Path) -> OnnxRecommender:
    """A fresh recommender per test (tests mutate its index)."""
    return OnnxRecommender.load(flat_bundle)


@pytest.fixture
def hnsw_rec(hnsw_bundle: Path) -> OnnxRecommender:
    return OnnxRecommender.load(hnsw_bundle)
