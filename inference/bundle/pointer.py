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

Pointers are changed by :func:`write_pointer` / :func:`remove_pointer` (what
``recstream bundles`` uses): a temporary file written and fsynced beside the
pointer, then renamed over it, so a reader sees the old or the new name, never
a partial one. By hand: ``echo VERSION > CURRENT.tmp && mv CURRENT.tmp CURRENT``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

from inference.bundle.manifest import MANIFEST, STAGING_MARK, created_ts
from inference.errors import BundlePointerError

__all__ = [
    "CANDIDATE",
    "CURRENT",
    "PREVIOUS",
    "bundle_created_ts",
    "find_latest",
    "read_pointer",
    "remove_pointer",
    "resolve_bundle",
    "write_pointer",
]

log = logging.getLogger(__name__)

CURRENT = "CURRENT"  # what serves (the control bucket)
CANDIDATE = "CANDIDATE"  # the canary bucket's bundle, if any
PREVIOUS = "PREVIOUS"  # what CURRENT named before the last promote (what rollback restores)


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


def read_pointer(root: Path, pointer: str) -> Path | None:
    """The bundle directory ``<root>/<pointer>`` names (None if that file does not exist);
    the same checks as :func:`resolve_bundle`, with no fallback."""
    pfile = Path(root) / pointer
    return _follow(Path(root), pfile) if pfile.exists() else None


def write_pointer(root: Path, pointer: str, version: str) -> Path:
    """Make ``<root>/<pointer>`` name ``version`` atomically (write, fsync, rename); the
    bundle it names is returned. Refused like a bad pointer is refused when read."""
    root = Path(root)
    _check_pointer_name(pointer)
    target = _named(root, version, root / pointer)  # the checks a reader will apply
    tmp = root / f".{pointer}.{uuid.uuid4().hex[:8]}.new"
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / pointer)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(root)
    return target


def remove_pointer(root: Path, pointer: str) -> bool:
    """Delete ``<root>/<pointer>``; False if there was none."""
    _check_pointer_name(pointer)
    try:
        (Path(root) / pointer).unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(Path(root))
    return True


def _check_pointer_name(pointer: str) -> None:
    if not pointer or not pointer.isidentifier() or pointer != pointer.upper():
        raise BundlePointerError(f"{pointer!r} is not a pointer name (e.g. {CURRENT})")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _follow(root: Path, pfile: Path) -> Path:
    try:
        name = pfile.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundlePointerError(f"{pfile} is unreadable: {exc}") from exc
    return _named(root, name, pfile)


def _named(root: Path, name: str, pfile: Path) -> Path:
    """The bundle directory ``name`` designates inside ``root`` (``pfile`` for errors)."""
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or "\n" in name
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
