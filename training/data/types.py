"""The in-memory shape of a training dataset: what every loader returns (``training.data``).

Rows of :class:`Interactions` stay in FILE ORDER. Anything that needs time order
sorts stably on ``ts`` so timestamp ties keep file order: MovieLens has ~75% of
its interactions in (user, timestamp) ties, and breaking them by item id leaks
the id order into the next-item target (breaking them by id inflated NDCG@10 by ~20 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recstream.errors import DataError

__all__ = ["Catalog", "Dataset", "Interactions", "SearchLog"]


@dataclass(frozen=True)
class Catalog:
    """Items, one row each; row ``i`` is the item's index everywhere (vectors, scores)."""

    item_ids: list[str]  # row i <-> external item id (MovieLens ids as str)
    titles: list[str]  # display title
    texts: list[str]  # what the text tower reads: title + year + genres (+ text attribute)
    attributes: list[dict[str, Any]]  # e.g. {"year": 1995, "genres": ["Comedy", "Drama"]}
    rows: dict[str, int] = field(init=False, repr=False, compare=False)  # item id -> row

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if not (len(self.titles) == len(self.texts) == len(self.attributes) == n):
            raise DataError(
                f"catalog columns differ in length: ids {n}, titles {len(self.titles)}, "
                f"texts {len(self.texts)}, attributes {len(self.attributes)}"
            )
        rows = {item_id: i for i, item_id in enumerate(self.item_ids)}
        if len(rows) != n:
            raise DataError(f"catalog has {n - len(rows)} duplicate item ids")
        object.__setattr__(self, "rows", rows)

    def __len__(self) -> int:
        return len(self.item_ids)

    def row(self, item_id: str) -> int:
        """Row of ``item_id``; raises KeyError if absent (use ``.rows.get`` to probe)."""
        return self.rows[item_id]

    def genres(self, row: int) -> list[str]:
        return list(self.attributes[row].get("genres") or [])

    def year(self, row: int) -> int | None:
        year = self.attributes[row].get("year")
        return int(year) if isinstance(year, int | float) else None


@dataclass(frozen=True)
class Interactions:
    """User-item events in file order (see the module docstring for time order)."""

    user: np.ndarray  # (E,) int32, index into user_ids
    item: np.ndarray  # (E,) int32, row in Catalog
    ts: np.ndarray  # (E,) float64 seconds since the epoch
    user_ids: list[str]  # external user ids; index = value in ``user``

    def __post_init__(self) -> None:
        e = self.user.shape
        if self.user.ndim != 1 or self.item.shape != e or self.ts.shape != e:
            raise DataError(
                f"interaction columns must be 1-d and equal length: user {self.user.shape}, "
                f"item {self.item.shape}, ts {self.ts.shape}"
            )
        if self.user.dtype != np.int32 or self.item.dtype != np.int32:
            raise DataError(f"user/item must be int32, got {self.user.dtype}/{self.item.dtype}")
        if self.ts.dtype != np.float64:
            raise DataError(f"ts must be float64, got {self.ts.dtype}")
        if len(self.user) and (self.user.min() < 0 or self.user.max() >= len(self.user_ids)):
            raise DataError("interaction user index outside user_ids")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class SearchLog:
    """What users typed (``search-text``), in file order; only event logs have it."""

    user: np.ndarray  # (Q,) int32, index into Interactions.user_ids
    text: list[str]
    ts: np.ndarray  # (Q,) float64


@dataclass(frozen=True)
class Dataset:
    name: str  # "ml-100k", "ml-1m", or the event log's file stem
    catalog: Catalog
    interactions: Interactions
    search: SearchLog | None = None  # event logs only: queries users typed

    def __post_init__(self) -> None:
        item = self.interactions.item
        if len(item) and (item.min() < 0 or item.max() >= len(self.catalog)):
            raise DataError(f"{self.name}: interaction item row outside the catalog")
