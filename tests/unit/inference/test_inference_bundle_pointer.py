"""A bundles root's pointer (CURRENT) is confined to the root; a bad one keeps the old model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.bundle.pointer import CURRENT, find_latest, resolve_bundle
from inference.errors import BundlePointerError
from inference.testing import build_tiny_bundle
from inference.types import Recommender
from stream.metrics import WorkerMetrics
from stream.model import ModelHolder
from stream.overlay import ItemOverlay
from stream.testing import load_fake_bundle


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root`` with bundle v1, and a sealed bundle ``evil`` outside it."""
    root, outside = tmp_path / "bundles", tmp_path / "elsewhere"
    build_tiny_bundle(root, version="v1", n_items=10, dim=4)
    build_tiny_bundle(outside, version="evil", n_items=10, dim=4)
    return root, outside / "evil"


def _point(root: Path, name: str, pointer: str = CURRENT) -> None:
    tmp = root / f"{pointer}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, root / pointer)


@pytest.mark.parametrize("name", ["ABSOLUTE", "../elsewhere/evil", "..", ".", "v1/../../x", ""])
def test_a_pointer_naming_anything_but_a_direct_child_is_refused(
    layout: tuple[Path, Path], name: str
) -> None:
    root, evil = layout
    _point(root, str(evil) if name == "ABSOLUTE" else name)
    with pytest.raises(BundlePointerError, match="names"):
        resolve_bundle(root)


def test_a_symlink_leading_out_of_the_root_is_refused(layout: tuple[Path, Path]) -> None:
    root, evil = layout
    (root / "v2").symlink_to(evil, target_is_directory=True)
    _point(root, "v2")
    with pytest.raises(BundlePointerError, match="leads out"):
        resolve_bundle(root)
    os.remove(root / CURRENT)
    assert find_latest(root) == root / "v1"  # nor does the newest-bundle fallback follow it


def test_a_symlink_to_a_sibling_and_a_plain_name_are_followed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "stable").symlink_to(root / "v1", target_is_directory=True)
    _point(root, "stable")
    assert resolve_bundle(root) == root / "v1"
    _point(root, "v1")
    assert resolve_bundle(root) == root / "v1"


def test_staging_directories_are_not_bundles(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "v9.tmp-abc").mkdir()
    _point(root, "v9.tmp-abc")
    with pytest.raises(BundlePointerError, match="staging"):
        resolve_bundle(root)


def test_a_second_pointer_is_a_parameter_without_fallback(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert resolve_bundle(root, "CANDIDATE", fallback_newest=False) is None
    build_tiny_bundle(root, version="v2", n_items=10, dim=4)
    _point(root, "v2", "CANDIDATE")
    assert resolve_bundle(root, "CANDIDATE", fallback_newest=False) == root / "v2"
    assert resolve_bundle(root) == root / "v2"  # CURRENT absent: the newest
    _point(root, "v1")
    assert resolve_bundle(root) == root / "v1"


async def test_the_worker_keeps_serving_when_the_pointer_leads_out(
    layout: tuple[Path, Path],
) -> None:
    root, evil = layout

    def loader(path: Path) -> Recommender:
        return load_fake_bundle(path)

    metrics = WorkerMetrics()
    holder = ModelHolder(root, loader=loader, metrics=metrics, overlay=ItemOverlay())
    assert await holder.maybe_reload() and holder.version == "v1"
    for name in (str(evil), "../elsewhere/evil"):
        _point(root, name)
        assert await holder.maybe_reload() is False
        assert holder.version == "v1" and holder.path == root / "v1"
