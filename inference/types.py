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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from inference.online import LearnedItem

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
    # (D,) the user's sequence vector that ranked these items (None: no known history);
    # what a click on one of them teaches that item (inference.online)
    user_vector: np.ndarray | None = None


class Recommender(Protocol):
    """Everything the stream calls on the serving core (nothing is probed with getattr).

    Threads: the worker calls every method from its event-loop thread, except that
    a new model is loaded, checked and caught up with catalog changes in an
    executor thread before any other thread sees it. ``recommend_batch`` may run
    while ``upsert_item`` / ``delete_item`` are called from the same thread; a
    deleted item is never returned by a call that starts after ``delete_item``
    returns. After ``close`` the object serves nothing (calls raise).
    """

    @property
    def model_version(self) -> str: ...

    @property
    def created_ts(self) -> float:
        """The bundle's ``created_at`` (epoch seconds): catalog changes older than
        it are already in the bundle. 0.0 when unknown."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def n_items(self) -> int:
        """Items searchable now (the ``recstream_index_items`` gauge)."""
        ...

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

    # -- online item learning (inference.online) --------------------------------------
    def item_vector(self, item_id: str) -> np.ndarray | None:
        """(D,) the vector ``item_id`` is served with now; None if it is not live."""
        ...

    def base_vector(self, item_id: str) -> tuple[np.ndarray, bool] | None:
        """(vector learning starts from, whether the bundle trained it); None if not live."""
        ...

    def apply_learned(self, learned: Mapping[str, LearnedItem | None]) -> int:
        """Serve each item as its learned state says (None: as published); the number
        of live items updated. States are for this model's version (the caller checks)."""
        ...

    def pin_threads(self) -> None:
        """Apply this model's per-thread runtime settings (FAISS's OpenMP thread
        count) to the calling thread: called on the thread that will serve."""
        ...

    def maintain(self) -> bool:
        """Housekeeping off the hot path (compacting a tombstoned index); True if
        it did something. Called between batches, on the serving thread."""
        ...

    def warm_up(self) -> float:
        """Serve a few throwaway batches of every shape a first request could have, so
        the first real ones do not pay for first-run allocations; returns the seconds
        it took. Called once, before the model is installed (any thread)."""
        ...

    def close(self) -> None:
        """Release what the model holds (ONNX sessions); called once it no longer serves."""
        ...
