"""``recstream bundles``: what a bundles root serves, and canary rollouts by its pointers.

A bundles root holds sealed bundles and up to three pointer files
(:mod:`inference.bundle.pointer`): ``CURRENT`` (the control bucket),
``CANDIDATE`` (the canary bucket) and ``PREVIOUS`` (what ``CURRENT`` named before
the last promote). Workers follow them (``stream.rollout``); every change here is
a pointer file replaced atomically (write, fsync, rename), in an order a worker
polling at any moment can follow:

- ``candidate VERSION``: verify VERSION, then ``CANDIDATE`` := VERSION (the
  canary starts); ``candidate --clear`` removes ``CANDIDATE`` (the canary stops).
- ``promote``: verify the candidate, ``PREVIOUS`` := what serves now, ``CURRENT``
  := the candidate (workers hand the canary's model to the control: nothing is
  loaded again), then ``CANDIDATE`` is removed.
- ``rollback``: verify ``PREVIOUS``, ``CURRENT`` := it, then ``PREVIOUS`` is
  removed (one step back; the version rolled back from stays on disk).

Each command refuses, changing nothing, when the bundle it would point at is not
sealed or fails verification (every file's sha256). Concurrent commands on one
root are serialised by a lock file (``.pointers.lock``).
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundle.manifest import MANIFEST, STAGING_MARK, Manifest
from inference.bundle.pointer import (
    CANDIDATE,
    CURRENT,
    PREVIOUS,
    read_pointer,
    remove_pointer,
    resolve_bundle,
    write_pointer,
)
from inference.bundle.verify import verify_bundle
from recstream.errors import BundleError, ConfigError

log = logging.getLogger(__name__)

__all__ = ["Change", "candidate", "clear_candidate", "promote", "rollback", "status"]

Verify = Callable[[Path], Manifest]
LOCK = ".pointers.lock"


@dataclass(frozen=True)
class Change:
    """What a command did: each pointer's version before and after (None: no file)."""

    before: dict[str, str | None]
    after: dict[str, str | None]

    def lines(self) -> list[str]:
        return [
            f"{name}: {self.before.get(name) or '-'} -> {self.after.get(name) or '-'}"
            for name in (CURRENT, CANDIDATE, PREVIOUS)
            if self.before.get(name) != self.after.get(name)
        ]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    if not root.is_dir():
        raise ConfigError(f"{root} is not a bundles root (no such directory)")
    with (root / LOCK).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pointers(root: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in (CURRENT, CANDIDATE, PREVIOUS):
        target = read_pointer(root, name)
        out[name] = None if target is None else target.name
    return out


def _verified(root: Path, version: str, verify: Verify) -> None:
    path = root / version
    try:
        verify(path)
    except BundleError as exc:
        raise BundleError(
            f"refusing: bundle {version} in {root} failed verification: {exc}"
        ) from exc


def candidate(root: Path, version: str, verify: Verify = verify_bundle) -> Change:
    """Start (or move) the canary: ``CANDIDATE`` := ``version`` once it verifies."""
    with _locked(root):
        before = _pointers(root)
        serving = resolve_bundle(root, CURRENT)
        if serving is not None and serving.name == version:
            raise ConfigError(f"refusing: {version} is what {CURRENT} serves already")
        _verified(root, version, verify)
        write_pointer(root, CANDIDATE, version)
        return Change(before, _pointers(root))


def clear_candidate(root: Path) -> Change:
    """Stop the canary (its users return to the control)."""
    with _locked(root):
        before = _pointers(root)
        if not remove_pointer(root, CANDIDATE):
            raise ConfigError(f"no {CANDIDATE} pointer in {root}: no canary to stop")
        return Change(before, _pointers(root))


def promote(root: Path, verify: Verify = verify_bundle) -> Change:
    """The candidate becomes ``CURRENT``; what served before is kept as ``PREVIOUS``."""
    with _locked(root):
        before = _pointers(root)
        new = before[CANDIDATE]
        if new is None:
            raise ConfigError(
                f"no {CANDIDATE} pointer in {root}: set one with `recstream bundles candidate`"
            )
        _verified(root, new, verify)
        serving = resolve_bundle(root, CURRENT)  # CURRENT, or the newest bundle without it
        if serving is not None and serving.name != new:
            write_pointer(root, PREVIOUS, serving.name)
        write_pointer(root, CURRENT, new)  # workers hand the canary's model over here
        remove_pointer(root, CANDIDATE)
        return Change(before, _pointers(root))


def rollback(root: Path, verify: Verify = verify_bundle) -> Change:
    """``CURRENT`` := ``PREVIOUS`` (what served before the last promote)."""
    with _locked(root):
        before = _pointers(root)
        old = before[PREVIOUS]
        if old is None:
            raise ConfigError(f"no {PREVIOUS} pointer in {root}: nothing to roll back to")
        _verified(root, old, verify)
        write_pointer(root, CURRENT, old)
        remove_pointer(root, PREVIOUS)
        return Change(before, _pointers(root))


def status(root: Path, *, verify: Verify | None = None) -> dict[str, Any]:
    """Every pointer (and what it names, or why it names nothing usable) and every bundle."""
    pointers: dict[str, Any] = {}
    for name in (CURRENT, CANDIDATE, PREVIOUS):
        entry: dict[str, Any] = {"version": None}
        try:
            target = read_pointer(root, name)
        except BundleError as exc:
            entry["problem"] = str(exc)
            target = None
        if target is not None:
            entry["version"] = target.name
            if verify is not None:
                try:
                    verify(target)
                    entry["verified"] = True
                except BundleError as exc:
                    entry["verified"] = False
                    entry["problem"] = str(exc)
        pointers[name] = entry
    serving = None
    try:
        found = resolve_bundle(root, CURRENT)
        serving = None if found is None else found.name
    except BundleError:
        pass
    bundles = []
    for child in sorted(Path(root).glob("*")):
        mpath = child / MANIFEST
        if STAGING_MARK in child.name or not mpath.is_file():
            continue
        try:
            meta = json.loads(mpath.read_text())
            created = str(meta.get("created_at", ""))
        except ValueError:
            created = "unreadable manifest"
        bundles.append({"version": child.name, "created_at": created})
    return {"root": str(root), "pointers": pointers, "serving": serving, "bundles": bundles}
