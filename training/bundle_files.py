"""Training's side of a bundle's plain data: items.jsonl rows and the popularity prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.data.types import Catalog, Interactions


def write_items(catalog: Catalog, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(len(catalog)):
            row = {
                "item_id": catalog.item_ids[i],
                "title": catalog.titles[i],
                "text": catalog.texts[i],
                "attributes": catalog.attributes[i],
            }
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def training_mask(interactions: Interactions, min_len: int = 3) -> np.ndarray:
    """(E,) bool: events that reach training under leave-one-out (last two held out)."""
    order = np.lexsort((np.arange(len(interactions.ts)), interactions.ts))  # stable on ts
    order = order[np.argsort(interactions.user[order], kind="stable")]
    users = interactions.user[order]
    counts = np.bincount(users, minlength=len(interactions.user_ids))
    pos = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)[: len(order)]
    held = (counts[users] >= min_len) & (pos >= counts[users] - 2)
    keep = np.ones(len(order), dtype=bool)
    keep[order[held]] = False
    return keep


def popularity_scale(
    interactions: Interactions,
    *,
    keep: np.ndarray | None = None,
    half_life_days: float = 30.0,
) -> dict[str, float]:
    """What :func:`popularity_prior` divided by, so a stream can keep counting in the same
    units (manifest ``popularity``): the most popular item's decayed clicks, and the
    event time they are decayed to."""
    item, ts = interactions.item, interactions.ts
    if keep is not None:
        item, ts = item[keep], ts[keep]
    if len(item) == 0:
        return {"clicks_at_max": 0.0, "as_of": 0.0, "half_life_days": half_life_days}
    weight = 0.5 ** ((ts.max() - ts) / (half_life_days * 86400.0))
    counts = np.bincount(item, weights=weight)
    return {
        "clicks_at_max": float(counts.max()),
        "as_of": float(ts.max()),
        "half_life_days": half_life_days,
    }


def popularity_prior(
    interactions: Interactions,
    n_items: int,
    *,
    keep: np.ndarray | None = None,
    half_life_days: float = 30.0,
) -> np.ndarray:
    """(N,) float32 in [0,1]: recency-weighted counts / max (docs/bundle.md)."""
    item, ts = interactions.item, interactions.ts
    if keep is not None:
        item, ts = item[keep], ts[keep]
    if len(item) == 0:
        return np.zeros(n_items, np.float32)
    weight = 0.5 ** ((ts.max() - ts) / (half_life_days * 86400.0))
    counts = np.bincount(item, weights=weight, minlength=n_items)
    return (counts / max(counts.max(), 1e-12)).astype(np.float32)
