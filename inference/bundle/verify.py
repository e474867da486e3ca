"""The one bundle verifier: every listed file present and intact, nothing else beside them.

:func:`open_bundle` reads ``manifest.json`` once and checks the directory listing
(a listed file missing, a file not listed); it reads no other file. Then each file
is read once by :meth:`BundleFiles.read`, which hashes exactly the bytes it
returns: whatever is built from them (ONNX sessions, the tokenizer, arrays, the
FAISS index) is built from verified bytes, with no window in which a file could be
swapped between its check and its load. :meth:`BundleFiles.verify_rest` hashes,
in 1 MiB chunks, the files nobody read; :func:`verify_bundle` is that alone.
Errors are :class:`~recstream.errors.BundleError` subclasses naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from inference.bundle.manifest import MANIFEST, Manifest
from inference.errors import (
    BundleFileMissingError,
    BundleHashError,
    BundleNotFoundError,
    BundleUnexpectedFileError,
)

__all__ = ["BundleFiles", "open_bundle", "sha256_file", "verify_bundle"]

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in chunks (for files too large to hold)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


class BundleFiles:
    """A bundle directory whose manifest and listing checked out; files read verified."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._verified: set[str] = set()

    def read(self, name: str) -> bytes:
        """The bytes of ``name``, read once and checked against the manifest's sha256."""
        data = self._file(name).read_bytes()
        self._check(name, hashlib.sha256(data).hexdigest())
        return data

    def verify_rest(self) -> Manifest:
        """Hash every listed file not read yet (streamed); returns the manifest."""
        for name in sorted(self.manifest.files.keys() - self._verified):
            self._check(name, sha256_file(self._file(name)))
        return self.manifest

    def _file(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise BundleUnexpectedFileError(name)
        fpath = self.path / name
        if not fpath.is_file():
            raise BundleFileMissingError(name)
        return fpath

    def _check(self, name: str, actual: str) -> None:
        expected = self.manifest.files[name]
        if actual != expected.lower():
            raise BundleHashError(name, expected, actual)
        self._verified.add(name)


def open_bundle(path: Path) -> BundleFiles:
    """Read and check ``manifest.json`` and the directory listing; hashes come with reads."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir() or not mpath.is_file():
        raise BundleNotFoundError(
            f"no bundle at {path} ({MANIFEST} missing): point at a <bundle_dir>/<version> "
            "directory written by `recstream train` or inference.testing.build_tiny_bundle"
        )
    manifest = Manifest.parse(mpath.read_bytes(), str(mpath))
    on_disk = {
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p != mpath
    }
    for name in sorted(on_disk - manifest.files.keys()):
        raise BundleUnexpectedFileError(name)
    for name in sorted(manifest.files.keys() - on_disk):
        raise BundleFileMissingError(name)
    return BundleFiles(path, manifest)


def verify_bundle(path: Path) -> Manifest:
    """Check the manifest and every file's sha256; return the manifest."""
    return open_bundle(path).verify_rest()
