"""Which bundle a bundles root designates: a named pointer file, else the newest sealed one.

A **bundles root** holds sealed bundles ``<root>/<version>/`` and pointer files:
``CURRENT`` (what serving serves) and, for the canary buckets planned in
docs/architecture.md, a second name passed as ``pointer``. A pointer holds one
line, the name of a direct child directory of the root; it is confined to the
root: an absolute path, a path with a separator, ``.``/``..``, a staging
directory, or a symlink that leads out of the root is refused with a
:class:`~inference.errors.BundlePointerError` (the caller keeps what it serves).
Without the pointer file, ``fallback_newest`` picks the sealed bundle with the
newest ``created_at``. A path that is itself a bundle (it holds ``manifest.json``)
designates itself.

Promote atomically: ``echo VERSION > CURRENT.tmp && mv CURRENT.tmp CURRENT``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inference.bundle.manifest import MANIFEST, STAGING_MARK, created_ts
from inference.errors import BundlePointerError

__all__ = ["CURRENT", "bundle_created_ts", "find_latest", "resolve_bundle"]

log = logging.getLogger(__name__)

CURRENT = "CURRENT"


def resolve_bundle(
    source: Path, pointer: str = CURRENT, *, fallback_newest: bool = True
) -> Path | None:
    """The version directory ``source`` designates now (None if there is none yet)."""
    source = Path(source)
    if (source / MANIFEST).is_file():
        return source
    pfile = source / pointer
    if pfile.exists():
        return _follow(source, pfile)
    if fallback_newest and source.is_dir():
        return find_latest(source)
    return None


def _follow(root: Path, pfile: Path) -> Path:
    try:
        name = pfile.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundlePointerError(f"{pfile} is unreadable: {exc}") from exc
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or STAGING_MARK in name
    )
    if bad:
        raise BundlePointerError(
            f"{pfile} names {name!r}: a pointer names one bundle directory directly inside "
            f"{root} (no path, no '..', no staging directory)"
        )
    target = _confined(root, root / name)
    if target is None:
        raise BundlePointerError(
            f"{pfile} names {name!r}, which leads out of {root} (a symlink); "
            "pointers are confined to the bundles root"
        )
    if not (target / MANIFEST).is_file():
        raise BundlePointerError(f"{pfile} names {name!r}, which is not a sealed bundle in {root}")
    return target


def _confined(root: Path, child: Path) -> Path | None:
    """``child`` if it is (or is a symlink to) a directory directly inside ``root``."""
    if not child.is_symlink():
        return child
    try:
        real = child.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return root / real.name if real.parent == root.resolve() and real.is_dir() else None


def find_latest(root: Path) -> Path | None:
    """The sealed bundle directly under ``root`` with the newest ``created_at`` (None if none)."""
    best: tuple[str, str, Path] | None = None
    for child in Path(root).glob("*"):
        mpath = child / MANIFEST
        if STAGING_MARK in child.name or not mpath.is_file() or _confined(root, child) is None:
            continue
        try:
            meta = json.loads(mpath.read_text())
            key = (str(meta["created_at"]), str(meta["version"]), child)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring %s: unreadable manifest", child)
            continue
        if best is None or key > best:
            best = key
    return best[2] if best else None


def bundle_created_ts(path: Path) -> float:
    """``created_at`` of the bundle at ``path`` as epoch seconds (0 if unreadable)."""
    try:
        return created_ts(json.loads((Path(path) / MANIFEST).read_text())["created_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
