"""RecBole atomic files (``<name>.inter`` / ``<name>.item``) -> :class:`Dataset`.

Format: UTF-8, tab-separated, a header of ``field:type`` names, one row per line
(``\\r\\n`` endings occur: ml-1m). Columns are found by name, not position:
interactions need ``user_id``, ``item_id``, ``timestamp``; items use ``item_id``,
a title (``movie_title``), a year (``release_year``) and genres (``class`` or
``genre``, space-separated), all optional. Items that occur in ``.inter`` but not
in ``.item`` get a catalog row whose text is their id (counted in the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from recstream.errors import DataError
from training.data.text import display_title, item_text
from training.data.types import Catalog, Dataset, Interactions

__all__ = ["load_atomic", "read_atomic"]

log = logging.getLogger(__name__)

_TITLE = ("movie_title", "title")
_YEAR = ("release_year", "year")
_GENRES = ("class", "genre", "genres")
_DROP_GENRES = {"unknown"}  # ml-100k's placeholder, not a genre


def read_atomic(path: Path) -> dict[str, list[str]]:
    """Columns of one atomic file by bare field name (``item_id:token`` -> ``item_id``)."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 ({exc.reason})") from exc
    if not lines:
        raise DataError(f"{path} is empty (expected a header of field:type names)")
    names = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    cols: list[list[str]] = [[] for _ in names]
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != len(names):
            raise DataError(f"{path}:{lineno}: {len(parts)} fields, header has {len(names)}")
        for col, value in zip(cols, parts, strict=True):
            col.append(value)
    return dict(zip(names, cols, strict=True))


def load_atomic(directory: Path, name: str | None = None) -> Dataset:
    """Load ``<directory>/<name>.inter`` (+ ``.item`` if present); name defaults to the dir name."""
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    if not inter_path.is_file():
        raise DataError(f"no {inter_path.name} in {directory}")
    inter = read_atomic(inter_path)
    for col in ("user_id", "item_id", "timestamp"):
        if col not in inter:
            raise DataError(f"{inter_path} has no {col} column (has {sorted(inter)})")
    item_path = directory / f"{name}.item"
    items = read_atomic(item_path) if item_path.is_file() else {"item_id": []}
    if "item_id" not in items:
        raise DataError(f"{item_path} has no item_id column")

    ids, titles, texts, attrs = _catalog_columns(items)
    rows = {item_id: i for i, item_id in enumerate(ids)}
    missing = 0
    for item_id in inter["item_id"]:
        if item_id not in rows:  # an interaction on an item the .item file lacks
            rows[item_id] = len(ids)
            ids.append(item_id)
            titles.append(item_id)
            texts.append(item_id)
            attrs.append({})
            missing += 1
    if missing:
        log.warning("%s: %d items occur only in .inter; their text is their id", name, missing)

    user_rows: dict[str, int] = {}
    user = np.fromiter(
        (user_rows.setdefault(u, len(user_rows)) for u in inter["user_id"]),
        dtype=np.int32,
        count=len(inter["user_id"]),
    )
    item = np.fromiter((rows[i] for i in inter["item_id"]), np.int32, len(inter["item_id"]))
    try:
        ts = np.asarray(inter["timestamp"], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{inter_path}: a timestamp is not a number ({exc})") from exc
    return Dataset(
        name=name,
        catalog=Catalog(ids, titles, texts, attrs),
        interactions=Interactions(user=user, item=item, ts=ts, user_ids=list(user_rows)),
    )


def _catalog_columns(
    items: dict[str, list[str]],
) -> tuple[list[str], list[str], list[str], list[dict]]:
    ids = list(items["item_id"])
    title_col = next((items[c] for c in _TITLE if c in items), ids)
    year_col = next((items[c] for c in _YEAR if c in items), [""] * len(ids))
    genre_col = next((items[c] for c in _GENRES if c in items), [""] * len(ids))
    titles, texts, attrs = [], [], []
    for raw_title, raw_year, raw_genres in zip(title_col, year_col, genre_col, strict=True):
        title = display_title(raw_title)
        year = _parse_year(raw_year)
        genres = [g for g in raw_genres.split() if g not in _DROP_GENRES]
        titles.append(title)
        texts.append(item_text(title, year, genres))
        attrs.append({"year": year, "genres": genres})
    return ids, titles, texts, attrs


def _parse_year(raw: str) -> int | None:
    try:
        year = int(float(raw))
    except ValueError:
        return None
    return year if 1800 <= year <= 2100 else None
