"""Baselines scored with the same protocol as the models (training/metrics.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Popularity"]


class Popularity:
    """Recommend the items most often seen in TRAINING (never validation or test)."""

    def __init__(self, train_sequences: Sequence[np.ndarray], n_items: int) -> None:
        items = np.concatenate([np.asarray(s, np.int64) for s in train_sequences])
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"a training item row is outside 0..{n_items - 1}")
        self.counts = np.bincount(items, minlength=n_items).astype(np.float32)  # (N,)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        """(B, N): the same count vector for every case (history is ignored)."""
        return np.broadcast_to(self.counts, (len(histories), len(self.counts)))
