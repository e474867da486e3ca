"""The one bundle writer (training, ``inference.testing``, benches): write aside, seal, rename.

    with staging(root, version) as stage:         # <root>/<version>.tmp-XXXX
        np.save(stage.path / ITEM_VECTORS, vectors)  # ... every file of docs/bundle.md
        final = stage.seal(manifest)               # <root>/<version>

:meth:`Staging.seal` hashes every file, writes ``manifest.json`` (JSON-safe: NaN
and infinities become null) through a temporary name, and renames the directory
into place: a reader sees a whole bundle or none. A version that exists is never
overwritten; a bundle holds files only (no subdirectories). If the block raises,
the staging directory is removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inference.bundle.manifest import MANIFEST, STAGING_MARK, Manifest
from inference.bundle.verify import sha256_file
from recstream.errors import BundleError

__all__ = ["Staging", "staging"]

log = logging.getLogger(__name__)


class Staging:
    """A bundle being written: ``path`` is the directory to write its files into."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = Path(root)
        self.version = version
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{version}{STAGING_MARK}", dir=self.root))

    def seal(self, manifest: Manifest) -> Path:
        """Hash every file into ``manifest``, write it, rename to ``<root>/<version>``."""
        if manifest.version != self.version:
            raise BundleError(
                f"manifest version {manifest.version!r} is not the staged {self.version!r}"
            )
        final = self.root / self.version
        if final.exists():
            raise BundleError(f"bundle {final} already exists; versions are never overwritten")
        entries = sorted(p for p in self.path.iterdir() if p.name != MANIFEST)
        if any(not p.is_file() or p.is_symlink() for p in entries):
            raise BundleError(f"bundle staging dir {self.path} holds something not a plain file")
        files = {p.name: sha256_file(p) for p in entries}
        part = self.path / (MANIFEST + ".part")
        part.write_text(manifest.to_json(files))
        os.replace(part, self.path / MANIFEST)
        os.chmod(self.path, 0o755)  # mkdtemp makes it 0700; readers may be other users
        os.rename(self.path, final)  # atomic on one filesystem
        log.info("wrote bundle %s", final)
        return final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def staging(root: Path, version: str) -> Iterator[Staging]:
    """A fresh staging directory under ``root``; removed if the block raises."""
    stage = Staging(root, version)
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
