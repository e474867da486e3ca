"""Load and verify a model bundle (format in docs/bundle.md); seal one when writing.

Nothing is loaded before every sha256 in the manifest checks out, and a bundle
with a missing, unlisted or modified file is refused with a
:class:`~recstream.errors.BundleError` subclass that names the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.errors import (
    BundleFileMissingError,
    BundleHashError,
    BundleManifestError,
    BundleNotFoundError,
    BundleUnexpectedFileError,
)
from inference.handle import BundleHandle

__all__ = [
    "Bundle",
    "BundleHandle",
    "Item",
    "Manifest",
    "find_latest",
    "load_bundle",
    "seal_bundle",
    "sha256_file",
    "verify_bundle",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
FIXED_FILES = ("tokenizer.json", "items.jsonl", "item_vectors.npy", "popularity.npy")


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class TextEncoderEntry(_Part):
    file: str = "text_encoder.onnx"
    int8_file: str | None = None
    max_length: int = 64


class SequenceEncoderEntry(_Part):
    file: str = "sequence_encoder.onnx"
    max_length: int = 50


class IndexEntry(_Part):
    file: str = "index.faiss"
    kind: Literal["flat", "hnsw"] = "flat"
    metric: Literal["inner_product"] = "inner_product"
    params: dict[str, Any] = {}


class FusionEntry(_Part):
    """Serving defaults that training chose for this bundle (None: the serving default)."""

    # warm users' popularity weight, chosen on the validation cases (training/prior_tuning.py)
    popularity_weight_warm: float | None = Field(default=None, ge=0)


class Manifest(_Part):
    """manifest.json (unknown keys are kept, so newer writers stay readable)."""

    format: int
    version: str
    created_at: str
    dataset: str
    dim: int
    text_encoder: TextEncoderEntry
    sequence_encoder: SequenceEncoderEntry
    index: IndexEntry
    fusion: FusionEntry = FusionEntry()
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    files: dict[str, str]

    def required_files(self) -> list[str]:
        names = [self.text_encoder.file, self.sequence_encoder.file, self.index.file]
        if self.text_encoder.int8_file:
            names.append(self.text_encoder.int8_file)
        return [*names, *FIXED_FILES]


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle in memory (the index is read by :class:`inference.index.ItemIndex`)."""

    path: Path
    manifest: Manifest
    items: list[Item]
    vectors: np.ndarray  # (N, D) float32, L2-normalised, row = item index (read-only memmap)
    popularity: np.ndarray  # (N,) float32 in [0, 1]

    @property
    def version(self) -> str:
        return self.manifest.version

    def file(self, name: str) -> Path:
        return self.path / name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(path: Path) -> Manifest:
    mpath = path / MANIFEST
    if not path.is_dir() or not mpath.is_file():
        raise BundleNotFoundError(
            f"no bundle at {path} ({MANIFEST} missing): point at a <bundle_dir>/<version> "
            "directory written by `recstream train` or inference.testing.build_tiny_bundle"
        )
    try:
        manifest = Manifest.model_validate(json.loads(mpath.read_text()))
    except (ValueError, ValidationError) as exc:
        raise BundleManifestError(f"{mpath} is not a valid bundle manifest: {exc}") from exc
    if manifest.format != FORMAT:
        raise BundleManifestError(
            f"{mpath} has format {manifest.format}; this reader understands format {FORMAT}"
        )
    for name in manifest.required_files():
        if name not in manifest.files:
            raise BundleManifestError(
                f"{mpath} does not list required file {name!r} under 'files': the bundle is "
                "incomplete; rebuild it"
            )
    return manifest


def verify_bundle(path: Path) -> Manifest:
    """Check the manifest and every file's sha256; return the manifest."""
    path = Path(path)
    manifest = _read_manifest(path)
    verify_files(path, manifest.files)
    return manifest


def verify_files(path: Path, files: Mapping[str, str]) -> None:
    """Every file of ``files`` (name → sha256) present and intact, and no other file
    beside the manifest; raises a :class:`~recstream.errors.BundleError` subclass.
    Also used by training to check what it wrote."""
    on_disk = {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    for name in sorted(on_disk - files.keys()):
        raise BundleUnexpectedFileError(name)
    for name, expected in sorted(files.items()):
        fpath = path / name
        if not fpath.is_file():
            raise BundleFileMissingError(name)
        actual = sha256_file(fpath)
        if actual != expected.lower():
            raise BundleHashError(name, expected, actual)


def _read_items(path: Path) -> list[Item]:
    items = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                obj = json.loads(line)
                items.append(
                    Item(
                        item_id=str(obj["item_id"]),
                        title=str(obj.get("title") or ""),
                        text=str(obj.get("text") or ""),
                        attributes=dict(obj.get("attributes") or {}),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise BundleManifestError(f"{path.name} line {lineno}: {exc}") from exc
    return items


def load_bundle(path: Path) -> Bundle:
    """Verify, then load the catalog arrays (ONNX and FAISS files are opened by their readers)."""
    path = Path(path)
    manifest = verify_bundle(path)
    items = _read_items(path / "items.jsonl")
    # Memory-mapped: the live index copies what it needs, so a 1M-item catalog is
    # not held twice in anonymous memory.
    vectors = np.load(path / "item_vectors.npy", mmap_mode="r", allow_pickle=False)
    popularity = np.load(path / "popularity.npy", allow_pickle=False).astype(np.float32)
    n, dim = len(items), manifest.dim
    if vectors.dtype != np.float32 or vectors.shape != (n, dim):
        raise BundleManifestError(
            f"item_vectors.npy is {vectors.dtype}{vectors.shape}, expected float32({n}, {dim})"
        )
    if popularity.shape != (n,):
        raise BundleManifestError(f"popularity.npy has shape {popularity.shape}, expected ({n},)")
    if len({it.item_id for it in items}) != n:
        raise BundleManifestError("items.jsonl repeats an item_id")
    log.info("loaded bundle %s (%d items, dim %d) from %s", manifest.version, n, dim, path)
    return Bundle(path, manifest, items, vectors, popularity)


def seal_bundle(tmp_dir: Path, manifest: dict[str, Any], final_dir: Path) -> Path:
    """Hash every file of ``tmp_dir`` into ``manifest['files']``, write it, rename into place.

    For writers (training, tests): the rename makes the bundle appear complete or not at all.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    files = {
        p.relative_to(tmp_dir).as_posix(): sha256_file(p)
        for p in sorted(tmp_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    body = {**manifest, "format": FORMAT, "files": files}
    (tmp_dir / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_dir, final_dir)
    return final_dir


def find_latest(bundle_dir: Path) -> Path | None:
    """The sealed bundle under ``bundle_dir`` with the newest ``created_at`` (None if none)."""
    best: tuple[str, str, Path] | None = None
    for child in Path(bundle_dir).glob("*"):
        mpath = child / MANIFEST
        if ".tmp" in child.name or not mpath.is_file():
            continue
        try:
            meta = json.loads(mpath.read_text())
            key = (str(meta["created_at"]), str(meta["version"]), child)
        except (ValueError, KeyError):
            log.warning("ignoring %s: unreadable manifest", child)
            continue
        if best is None or key > best:
            best = key
    return best[2] if best else None
