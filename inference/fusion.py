"""Fuse candidates from the sequence, query and popularity sources into top-K.

Pure functions over arrays (no I/O, no index): the recommender gathers the
candidate rows, this module scores, filters, ranks and explains them.

Score of item *v*::

    w_seq·<user_vector, v> + w_query·<query_vector, v> + w_pop·popularity(v)

computed for every candidate whichever source proposed it, with weights from
:func:`fusion_weights` (normalised to sum to 1):

* the sequence weight grows with history length, full at ``history_full`` items
  (a cold user has none → text and popularity only);
* the query weight halves every ``query_half_life_s`` seconds of query age;
* popularity keeps what the sequence lacks, plus a small floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.settings import FusionSettings
from inference.types import Source


@dataclass(frozen=True)
class Weights:
    sequence: float
    query: float
    popularity: float


def query_decay(query_age_s: float | None, half_life_s: float) -> float:
    """1 for a fresh query (age None or ≤ 0), 0.5 after one half-life."""
    if query_age_s is None or query_age_s <= 0:
        return 1.0
    return float(0.5 ** (query_age_s / half_life_s))


def fusion_weights(
    history_len: int, has_query: bool, query_age_s: float | None, s: FusionSettings
) -> Weights:
    """Source weights for one request (sum to 1)."""
    warmth = min(1.0, history_len / s.history_full)
    w_seq = s.sequence_weight * warmth
    w_q = s.query_weight * query_decay(query_age_s, s.query_half_life_s) if has_query else 0.0
    w_pop = s.popularity_weight * (1.0 - warmth) + s.popularity_floor
    total = w_seq + w_q + w_pop
    if total <= 0:
        return Weights(0.0, 0.0, 1.0)
    return Weights(w_seq / total, w_q / total, w_pop / total)


@dataclass(frozen=True)
class Fused:
    row: int
    score: float
    sources: tuple[Source, ...]
    because: str | None


_ORDER: tuple[Source, ...] = ("sequence", "query", "popular")
# bitmask of proposing sources → the sources tuple, in _ORDER
_SOURCES: list[tuple[Source, ...]] = [
    tuple(name for bit, name in enumerate(_ORDER) if mask >> bit & 1) for mask in range(8)
]


def fuse(
    *,
    candidates: dict[Source, np.ndarray],
    vectors: np.ndarray,
    popularity: np.ndarray,
    weights: Weights,
    user_vector: np.ndarray | None,
    query_vector: np.ndarray | None,
    query_text: str | None,
    history_rows: np.ndarray,
    history_ids: Sequence[str],
    excluded_rows: np.ndarray,
    k: int,
) -> list[Fused]:
    """Top-``k`` candidates (excluded rows dropped), best first; ties broken by row.

    ``because`` is the query text when the query search proposed the item and
    the query's weighted contribution beats the sequence's, else the history
    item nearest to the item; None for an item only the popularity prior
    proposed.
    """
    parts = [np.asarray(candidates.get(name, ()), dtype=np.int64) for name in _ORDER]
    allrows = np.concatenate(parts)  # (sum P,)
    bits = np.concatenate([np.full(len(p), 1 << b, dtype=np.int8) for b, p in enumerate(parts)])
    keep = allrows >= 0
    if len(excluded_rows):
        keep &= ~(allrows[:, None] == excluded_rows[None, :]).any(axis=1)
    if k <= 0 or not keep.any():
        return []
    rows, inverse = np.unique(allrows[keep], return_inverse=True)  # (C,) sorted
    mask = np.zeros(len(rows), dtype=np.int8)
    np.bitwise_or.at(mask, inverse, bits[keep])
    cand = vectors[rows]  # (C, D)
    seq_part = np.zeros(len(rows), dtype=np.float32)
    q_part = np.zeros(len(rows), dtype=np.float32)
    if user_vector is not None and weights.sequence > 0:
        seq_part = weights.sequence * (cand @ user_vector)
    if query_vector is not None and weights.query > 0:
        q_part = weights.query * (cand @ query_vector)
    score = seq_part + q_part + weights.popularity * popularity[rows]  # (C,)
    top = np.lexsort((rows, -score))[:k]  # rows are sorted, so ties go to the lower row

    nearest: np.ndarray | None = None
    if len(history_rows):
        sims = cand[top] @ vectors[history_rows].T  # (k, H)
        nearest = np.argmax(sims, axis=1)
    out = []
    for j, i in enumerate(top.tolist()):
        found_by = _SOURCES[mask[i]]
        because: str | None = None
        if found_by != ("popular",):  # a popular-only pick has no personal reason
            if query_text and "query" in found_by and q_part[i] > seq_part[i]:
                because = query_text
            elif nearest is not None:
                because = history_ids[int(nearest[j])]
            elif query_text and "query" in found_by:
                because = query_text
        out.append(Fused(int(rows[i]), float(score[i]), found_by, because))
    return out
