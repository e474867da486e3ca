"""A verified bundle in memory: the catalog arrays, and the model files as verified bytes.

Memory (what is held, for a catalog of N items of dimension D): :func:`load_bundle`
reads ``items.jsonl``, ``item_vectors.npy`` (N·D·4 bytes, viewed in place, not
copied) and ``popularity.npy`` once each; the ONNX files, the tokenizer and
``index.faiss`` are read only when :meth:`Bundle.read` asks for them, one at a
time, and are not kept. The serving core (:class:`inference.recommender.OnnxRecommender`)
builds its live index from the vectors (it copies them into its own growable
array) and its FAISS index from the bytes of ``index.faiss``, then drops the
bundle: while a bundle loads, the vector bytes and the bytes of the one file being
built are held besides what serving keeps (at 1M × 384: about 1.5 GB each for the
vectors and a flat index), and nothing of it afterwards.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle.manifest import ITEM_VECTORS, ITEMS, POPULARITY, Manifest
from inference.bundle.verify import BundleFiles, open_bundle
from inference.errors import BundleManifestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: manifest, catalog, vectors, popularity; model files on request."""

    path: Path
    manifest: Manifest
    items: list[Item]
    vectors: np.ndarray  # (N, D) float32, L2-normalised, row = item index (read-only)
    popularity: np.ndarray  # (N,) float32 in [0, 1]
    files: BundleFiles = field(repr=False)  # where the model files are read from, verified

    @property
    def version(self) -> str:
        return self.manifest.version

    def file(self, name: str) -> Path:
        """Where ``name`` is on disk (for display; load through :meth:`read`)."""
        return self.path / name

    def read(self, name: str) -> bytes:
        """A file's bytes, read now and checked against the manifest (not kept here)."""
        return self.files.read(name)


def load_bundle(path: Path) -> Bundle:
    """Open and check a bundle, then read its catalog arrays (each file read once)."""
    files = open_bundle(path)
    manifest = files.manifest
    items = parse_items(files.read(ITEMS), ITEMS)
    vectors = parse_npy(files.read(ITEM_VECTORS), ITEM_VECTORS)
    popularity = parse_npy(files.read(POPULARITY), POPULARITY).astype(np.float32)
    n, dim = len(items), manifest.dim
    if vectors.dtype != np.float32 or vectors.shape != (n, dim):
        raise BundleManifestError(
            f"{ITEM_VECTORS} is {vectors.dtype}{vectors.shape}, expected float32({n}, {dim})"
        )
    if popularity.shape != (n,):
        raise BundleManifestError(f"{POPULARITY} has shape {popularity.shape}, expected ({n},)")
    if len({it.item_id for it in items}) != n:
        raise BundleManifestError(f"{ITEMS} repeats an item_id")
    log.info("loaded bundle %s (%d items, dim %d) from %s", manifest.version, n, dim, files.path)
    return Bundle(files.path, manifest, items, vectors, popularity, files)


def parse_items(data: bytes, name: str = ITEMS) -> list[Item]:
    """``items.jsonl``: one JSON object per line, line i = row i."""
    items = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
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
            raise BundleManifestError(f"{name} line {lineno}: {exc}") from exc
    return items


def parse_npy(data: bytes, name: str) -> np.ndarray:
    """An ``.npy`` file's array as a read-only view of ``data`` (no copy, nothing pickled)."""
    from numpy.lib import format as npy

    buf = io.BytesIO(data)
    try:
        major, minor = npy.read_magic(buf)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(buf)
        else:
            shape, fortran, dtype = npy.read_array_header_2_0(buf)
    except ValueError as exc:
        raise BundleManifestError(f"{name} is not a .npy array: {exc}") from exc
    if dtype.hasobject:
        raise BundleManifestError(f"{name} holds Python objects; bundles hold plain arrays")
    count = int(np.prod(shape, dtype=np.int64))
    try:
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell())
    except ValueError as exc:
        raise BundleManifestError(f"{name} is truncated: {exc}") from exc
    return flat.reshape(shape, order="F" if fortran else "C")
