"""In-memory test double of :class:`inference.types.Recommender` (no ONNX, no FAISS).

Scoring is deliberately simple and inspectable: an item scores one point per
query word found in its title/text and a small popularity bonus by catalog
order; items in the request's history or exclude set are never returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.bundle.manifest import MANIFEST, created_ts
from inference.types import Request, Result, ScoredItem

if TYPE_CHECKING:
    from inference.online import LearnedItem


class FakeRecommender:
    """Implements the Recommender protocol over a dict; counts its calls."""

    def __init__(
        self,
        items: dict[str, tuple[str, str]] | None = None,
        version: str = "fake-1",
        dim: int = 8,
        created_ts: float = 0.0,
    ) -> None:
        self.items: dict[str, tuple[str, str]] = dict(items or {})  # id → (title, text)
        self._version = version
        self._dim = dim
        self._created_ts = created_ts
        self.batches: list[list[Request]] = []
        self.trained = set(self.items)  # items given at construction count as trained
        self.learned: dict[str, LearnedItem | None] = {}  # what apply_learned was told, last
        self.fail_users: set[str] = set()  # requests for these users raise
        self.closed = False
        self.warm_ups = 0  # warm_up calls (a holder warms a model before it serves)

    @property
    def model_version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def created_ts(self) -> float:
        return self._created_ts

    @property
    def n_items(self) -> int:
        return len(self.items)

    def pin_threads(self) -> None:
        pass  # no thread pools

    def maintain(self) -> bool:
        return False

    def warm_up(self) -> float:
        self.warm_ups += 1
        return 0.0  # nothing to warm

    def close(self) -> None:
        self.closed = True

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    def recommend_batch(self, requests: Sequence[Request]) -> list[Result]:
        if self.closed:
            raise RuntimeError(f"{self._version} is closed")
        self.batches.append(list(requests))
        for r in requests:
            if r.user_id in self.fail_users:
                raise RuntimeError(f"cannot recommend for {r.user_id}")
        return [self._one(r) for r in requests]

    def _one(self, r: Request) -> Result:
        banned = set(r.history) | set(r.exclude)
        words = set((r.query or "").lower().split())
        scored = []
        for rank, (item_id, (title, text)) in enumerate(self.items.items()):
            if item_id in banned:
                continue
            hits = sum(1 for w in words if w in f"{title} {text}".lower())
            sources: tuple = ("query",) if hits else ("popular",)
            scored.append(ScoredItem(item_id, hits + 1.0 / (rank + 2), sources, r.query))
        scored.sort(key=lambda s: -s.score)
        vector = self.encode_texts([r.query])[0] if r.query and r.query_vector is None else None
        user_vector = None
        if r.history:  # a recency-free mean of the history's vectors
            known = [v for i in r.history if (v := self.item_vector(i)) is not None]
            if known:
                mean = np.mean(known, axis=0)
                user_vector = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        return Result(
            r.user_id,
            scored[: r.k],
            self._version,
            query_vector=vector if vector is not None else r.query_vector,
            timings={"search": 0.0001},
            user_vector=user_vector,
        )

    def upsert_item(
        self, item_id: str, title: str, text: str | None = None, attributes: dict | None = None
    ) -> None:
        self.items[item_id] = (title, text or "")
        self.trained.discard(item_id)
        self.learned.pop(item_id, None)

    def delete_item(self, item_id: str) -> None:
        self.items.pop(item_id, None)
        self.learned.pop(item_id, None)

    def base_vector(self, item_id: str) -> tuple[np.ndarray, bool] | None:
        entry = self.items.get(item_id)
        if entry is None:
            return None
        return self.encode_texts([f"{entry[0]} {entry[1]}"])[0], item_id in self.trained

    def item_vector(self, item_id: str) -> np.ndarray | None:
        from inference.online import served_vector

        base = self.base_vector(item_id)
        if base is None:
            return None
        state = self.learned.get(item_id)
        return served_vector(base[0], None if state is None else state.delta)

    def apply_learned(self, learned: Mapping[str, LearnedItem | None]) -> int:
        done = 0
        for item_id, state in learned.items():
            if item_id in self.items:
                self.learned[item_id] = state
                done += 1
        return done

    def title(self, item_id: str) -> str | None:
        entry = self.items.get(item_id)
        return None if entry is None else entry[0]


def load_fake_bundle(path: Path) -> FakeRecommender:
    """Loader for ``RECSTREAM_WORKER_LOADER=stream.testing:load_fake_bundle``: a
    FakeRecommender over a bundle directory's ``items.jsonl`` and manifest version
    (no ONNX/FAISS, nothing verified; development and unit tests only)."""
    manifest = json.loads((path / MANIFEST).read_text())
    items: dict[str, tuple[str, str]] = {}
    items_file = path / "items.jsonl"
    if items_file.is_file():
        for line in items_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                items[str(row["item_id"])] = (row.get("title", ""), row.get("text") or "")
    created = created_ts(str(manifest.get("created_at", "")))
    return FakeRecommender(items, version=str(manifest["version"]), created_ts=created)
