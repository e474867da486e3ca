"""Fuse candidates from the sequence, query and popularity sources into top-K.

Pure functions over arrays (no I/O, no index): the recommender gathers the
candidate rows, this module scores, filters, ranks and explains them.

Every candidate is scored by every source, whichever source proposed it:
``<user_vector, v>``, ``<query_vector, v>`` and ``popularity(v)``.
These live on different scales (a query's cosines to its good and its generic
matches differ by ~0.1, popularity spans [0, 1] and is heavy-tailed), so with a
:class:`Calibration` (``normalize="zscore"``, the default) each source's score is
standardised against the whole catalog before mixing::

    w_seq·z_u(<u, v>) + w_query·z_q(<q, v>) + w_pop·z_pop(pop(v))

where ``z_x(s) = (s - mean over items of <x, item>) / std over items``. For a
vector source both moments are closed forms of catalog statistics
(``<x, mean item>`` and ``sqrt(xᵀ·Cov·x)``), so no request scores the whole
catalog and a request's scale never depends on its candidate pool or batch. A
weight then means "standard deviations of this source per standard deviation of
that one", whatever the bundle's cosine spread. Without a calibration
(``normalize="none"``) the raw cosines and popularity are mixed: the
pre-calibration behaviour, kept for comparison in bench/serving_quality.py.

Weights come from :func:`fusion_weights` (normalised to sum to 1):

* the sequence weight grows with history length, full at ``history_full`` items
  (a cold user has none → text and popularity only);
* the query weight halves every ``query_half_life_s`` seconds of query age;
* popularity moves from ``popularity_weight`` (no history) to
  ``popularity_weight_warm`` (full history) along the same ramp, so a text-only
  user's and a warm user's prior are set apart; the warm part is scaled by the
  sequence's share of the personal weight (a fresh query halves it), because
  the prior helped behaviour-only lists but diluted a warm user's fresh query.

Popularity is standardised as is, not as a log: the prior is heavy-headed, so
its z-score is near zero for most items and large only for the head, which
makes it a tie-breaker among close matches that speaks up for clearly popular
items. Against log-popularity at the same weight (0.05) it served warm users
NDCG@10 -0.001..+0.003 (mean +0.001) on four ml-100k bundles, at equal
text-only quality. Defaults were chosen with bench/serving_quality.py (figures
in bench/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
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
    # the warm prior backs the sequence in proportion to its say: a fresh query
    # (explicit intent) halves it for a warm user, a stale one gives it back
    seq_share = w_seq / (w_seq + w_q) if w_seq > 0 else 0.0
    w_pop = s.popularity_weight * (1.0 - warmth) + s.warm_prior() * warmth * seq_share
    total = w_seq + w_q + w_pop
    if total <= 0:
        return Weights(0.0, 0.0, 1.0)
    return Weights(w_seq / total, w_q / total, w_pop / total)


@dataclass(frozen=True)
class Calibration:
    """Catalog-wide score statistics that put every source on one scale.

    Built once per bundle (and again when the popularity prior is replaced);
    items upserted later do not move it: it is a scale, not a model.
    """

    mean: np.ndarray  # (D,) mean item vector
    cov: np.ndarray  # (D, D) covariance of the item vectors
    pop_mean: float  # mean popularity over items
    pop_std: float  # its standard deviation (> 0)

    @classmethod
    def of(
        cls, vectors: np.ndarray, popularity: np.ndarray, *, max_rows: int = 20_000
    ) -> Calibration:
        """Statistics of ``vectors`` (N, D) (an even stride of ``max_rows`` of them) and
        ``popularity`` (N,)."""
        if len(vectors) == 0:
            raise ValueError("cannot calibrate fusion on an empty catalog")
        step = max(1, len(vectors) // max_rows)
        sample = np.asarray(vectors[::step], dtype=np.float64)  # (n, D)
        mean = sample.mean(axis=0)
        centred = sample - mean
        cov = centred.T @ centred / len(sample)  # (D, D)
        return cls(mean.astype(np.float32), cov.astype(np.float32), 0.0, 1.0).with_popularity(
            popularity
        )

    def with_popularity(self, popularity: np.ndarray) -> Calibration:
        """The same vector statistics with the popularity scale of ``popularity`` (N,): O(N)."""
        pop = np.asarray(popularity, dtype=np.float64)
        std = max(float(pop.std()), _MIN_STD) if len(pop) else 1.0
        return dataclasses.replace(
            self, pop_mean=float(pop.mean()) if len(pop) else 0.0, pop_std=std
        )

    def vector_z(self, sims: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``sims`` = <x, candidates> (C,), standardised over the catalog's <x, item>."""
        mu = float(x @ self.mean)
        sd = float(np.sqrt(max(float(x @ self.cov @ x), 0.0)))
        if sd < _MIN_STD:  # x sees every item alike: it cannot rank
            return np.zeros_like(sims, dtype=np.float32)
        return ((sims - mu) / sd).astype(np.float32)

    def popularity_z(self, pop: np.ndarray) -> np.ndarray:
        return ((pop - self.pop_mean) / self.pop_std).astype(np.float32)


_MIN_STD = 1e-6


def fuse_dense(
    scores: np.ndarray, popularity: np.ndarray, weights: Sequence[Weights]
) -> np.ndarray:
    """Fused scores of EVERY item for behaviour-only requests, (B, N), for offline benches.

    ``scores`` (B, N) holds any model's score of every catalog item for each request
    (-inf for items the model cannot score), ``popularity`` (N,) the prior, and
    ``weights`` one :class:`Weights` per request. Each row is standardised over
    its finite entries, popularity over the catalog, and mixed as :func:`fuse`
    mixes them. For a bundle's own cosines (N within :meth:`Calibration.of`'s
    sample) this is exactly what :func:`fuse` ranks when every item is a
    candidate; for another model's scores it gives that model the same prior
    at the same weight, so the two can be compared as served.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(popularity) or len(weights) != len(s):
        raise ValueError(
            f"scores {s.shape}, popularity {np.shape(popularity)}, {len(weights)} weights"
        )
    finite = np.isfinite(s)
    n = np.maximum(finite.sum(1, keepdims=True), 1)
    filled = np.where(finite, s, 0.0)
    mean = filled.sum(1, keepdims=True) / n
    sd = np.sqrt((np.where(finite, s - mean, 0.0) ** 2).sum(1, keepdims=True) / n)
    # a row that sees every item alike cannot rank: it contributes nothing (as in vector_z)
    z = np.where(sd < _MIN_STD, 0.0, (filled - mean) / np.maximum(sd, _MIN_STD))
    pop = np.asarray(popularity, dtype=np.float64)
    zp = (pop - pop.mean()) / max(float(pop.std()), _MIN_STD)
    w_seq = np.array([w.sequence for w in weights])[:, None]
    w_pop = np.array([w.popularity for w in weights])[:, None]
    return np.where(finite, w_seq * z + w_pop * zp, -np.inf)


# Cosines this close count as equal when picking the history item that explains a pick:
# equal vectors (an item clicked twice, or two items with the same text) come out of a
# matrix product a rounding apart depending on their column, so without it the reason
# would depend on the product's shape (the batch) rather than on the user.
NEAREST_TIE = 1e-6


def nearest_history(sims: np.ndarray) -> np.ndarray:
    """Per row of ``sims`` (..., H), the first (oldest) history index within
    :data:`NEAREST_TIE` of the row's best cosine."""
    return np.argmax(sims >= sims.max(axis=-1, keepdims=True) - NEAREST_TIE, axis=-1)


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
    calibration: Calibration | None = None,
    text_evidence: np.ndarray | None = None,
) -> list[Fused]:
    """Top-``k`` candidates (excluded rows dropped), best first; ties broken by row.

    Source scores are standardised with ``calibration`` (None: mixed raw).

    ``text_evidence`` (N,) bool by row: False for an item without usable text
    (:mod:`inference.text_evidence`). Such an item is not taken from the query
    source's candidates and its query term is 0 (with a calibration: the catalog
    average), so a query can neither propose it nor lift it; behaviour and popularity
    still rank it. None: every item has text.

    ``because`` is the query text when the query search proposed the item and
    the query's weighted contribution beats the sequence's, else the history
    item nearest to the item (:func:`nearest_history`); None for an item only the
    popularity prior proposed.
    """
    parts = [np.asarray(candidates.get(name, ()), dtype=np.int64) for name in _ORDER]
    if text_evidence is not None:  # the query source never proposes an item without text
        q = parts[1][parts[1] >= 0]
        parts[1] = q[text_evidence[q]]
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
    cal = calibration
    seq_part: np.ndarray = np.zeros(len(rows), dtype=np.float32)
    q_part: np.ndarray = np.zeros(len(rows), dtype=np.float32)
    if user_vector is not None and weights.sequence > 0:
        sims = cand @ user_vector  # (C,)
        seq_part = weights.sequence * (cal.vector_z(sims, user_vector) if cal else sims)
    if query_vector is not None and weights.query > 0:
        sims = cand @ query_vector  # (C,)
        q_part = weights.query * (cal.vector_z(sims, query_vector) if cal else sims)
        if text_evidence is not None:
            q_part = np.where(text_evidence[rows], q_part, np.float32(0.0))
    pop = popularity[rows]
    pop_part = weights.popularity * (cal.popularity_z(pop) if cal else pop)
    score = seq_part + q_part + pop_part  # (C,)
    top = np.lexsort((rows, -score))[:k]  # rows are sorted, so ties go to the lower row

    nearest: np.ndarray | None = None
    if len(history_rows):
        sims = cand[top] @ vectors[history_rows].T  # (k, H)
        nearest = nearest_history(sims)
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
