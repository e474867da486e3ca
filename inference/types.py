"""The serving contract between ``stream/`` and ``inference/``.

The stream micro-batches events and calls :meth:`Recommender.recommend_batch`
once per batch; everything here is plain data so tests can build it by hand.
Vectors are float32, L2-normalised, in the bundle's item space (dimension
``Recommender.dim``). A :class:`ScoredItem` score is the fused score: by default
a weighted sum of source scores standardised over the catalog (so not bounded
and not a cosine; only its order within one result means something), see
:mod:`inference.fusion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Source = Literal["sequence", "query", "popular"]


@dataclass(frozen=True)
class Request:
    """One user's recommendation request.

    ``history`` holds item ids oldest first (most recent last); items unknown
    to the bundle are skipped. ``query_vector`` may carry the cached vector of
    ``query`` if it was encoded by the same ``model_version``; otherwise the
    text is encoded. Items in ``history`` and ``exclude`` are never returned.
    """

    user_id: str
    history: Sequence[str] = ()
    query: str | None = None
    query_age_s: float | None = None  # seconds since the query was typed
    query_vector: np.ndarray | None = None  # (D,) float32, same model_version
    exclude: frozenset[str] = frozenset()
    k: int = 10


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float
    sources: tuple[Source, ...]  # which candidate generators proposed it
    because: str | None = None  # nearest history item id, or the query text


@dataclass(frozen=True)
class Result:
    user_id: str
    items: list[ScoredItem]
    model_version: str
    query_vector: np.ndarray | None = None  # (D,) the query vector used, to cache
    timings: dict[str, float] = field(default_factory=dict)  # stage → seconds


class Recommender(Protocol):
    """What the stream needs from the serving core.

    Thread-safety: ``recommend_batch`` may run while ``upsert_item`` /
    ``delete_item`` are called from the same event loop thread; a deleted item
    is never returned by a call that starts after ``delete_item`` returns.
    """

    @property
    def model_version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def recommend_batch(self, requests: Sequence[Request]) -> list[Result]:
        """One result per request, in order (one ONNX call per encoder, one
        FAISS search per source for the whole batch)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 L2-normalised text-tower vectors."""
        ...

    def upsert_item(
        self, item_id: str, title: str, text: str | None = None, attributes: dict | None = None
    ) -> None:
        """Add or replace an item from its text; recommendable when this returns."""
        ...

    def delete_item(self, item_id: str) -> None:
        """Remove an item; never returned after this returns."""
        ...

    def title(self, item_id: str) -> str | None: ...
