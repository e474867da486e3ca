"""Writing and verifying model bundles (docs/bundle.md, format 1).

A bundle is built in ``<root>/<version>.tmp-*`` and renamed into place once
every file and the manifest (sha256 of every file) are written, so a reader
never sees half a bundle. :func:`verify_bundle` is the load-time check; it
duplicates the serving loader's check on purpose until ``inference.bundle``
lands on main (training must not depend on an unmerged module).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from inference.bundle import sha256_file, verify_files
from training.errors import BundleError

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"


def staging_dir(root: Path, version: str) -> Path:
    """A fresh ``<root>/<version>.tmp-XXXX`` directory to write a bundle into."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{version}.tmp-", dir=root))


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: readers in other languages would refuse the manifest."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def finalize_bundle(staging: Path, root: Path, manifest: dict[str, Any]) -> Path:
    """Hash every file, write the manifest, rename ``staging`` to ``root/<version>``."""
    version = manifest["version"]
    files = sorted(p for p in staging.iterdir() if p.name != MANIFEST)
    if any(not p.is_file() for p in files):
        raise BundleError(f"bundle staging dir {staging} contains a subdirectory")
    manifest = {**manifest, "format": FORMAT, "files": {p.name: sha256_file(p) for p in files}}
    tmp = staging / (MANIFEST + ".part")
    text = json.dumps(_json_safe(manifest), indent=2, sort_keys=True, allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, staging / MANIFEST)
    final = root / version
    if final.exists():
        raise BundleError(f"bundle {final} already exists; versions are never overwritten")
    os.chmod(staging, 0o755)  # mkdtemp makes it 0700; readers may be other users
    os.rename(staging, final)  # atomic on one filesystem
    log.info("wrote bundle %s", final)
    return final


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def verify_bundle(path: Path) -> dict[str, Any]:
    """Check a bundle's manifest and every sha256; returns the manifest or raises BundleError.

    Refuses: a missing/unparsable manifest, another format, a listed file that is
    missing or modified, and a file in the directory the manifest does not list.
    """
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path} is not a bundle: no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: unsupported bundle format {manifest.get('format')!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{mpath}: no 'files' table")
    verify_files(path, files)  # the serving loader's own file check
    return manifest
