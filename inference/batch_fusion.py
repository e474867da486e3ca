"""Fusion of a whole batch at once: :func:`inference.fusion.fuse` over (B, P) arrays.

:func:`~inference.fusion.fuse` defines a fused score one request at a time; the
serving path ranks a batch here instead, with one gather of candidate vectors,
one batched product per source and one sort, rather than some thirty numpy calls
per request (per-request fusion was about a third of a click's CPU at batch 32).
Row ``b`` of the result is what ``fuse`` gives request ``b``: the same candidates,
the same scores up to float rounding (the products are batched), the same order
(ties to the lower row), the same sources and the same "because" choice.
``tests/unit/inference/test_inference_batch_fusion.py`` checks that on random
batches, ``bench/serving_parity.py`` on real bundles.

Candidates must already leave out each request's excluded rows (the recommender
filters them as it reads the searches); a row may be proposed by several
sources, and ``-1`` pads a request's row of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.fusion import _MIN_STD, _ORDER, Calibration, nearest_history

_PAD = np.iinfo(np.int64).max  # sorts after every real row
_QUERY_BIT = 1 << _ORDER.index("query")


@dataclass(frozen=True)
class BatchFused:
    """The top of each request, best first; entries past ``counts[b]`` are padding."""

    rows: np.ndarray  # (B, K) int64 catalog rows, -1 past the end
    scores: np.ndarray  # (B, K) float32 fused scores
    bits: np.ndarray  # (B, K) int8 bitmask of proposing sources (fusion._ORDER)
    nearest: np.ndarray  # (B, K) int64 index into the request's history of the
    #                      history item nearest to this one, -1 without history
    query_wins: np.ndarray  # (B, K) bool: the query's weighted part beats the sequence's
    counts: np.ndarray  # (B,) int64 entries per request


def union(rows: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the distinct candidate rows (ascending, ``-1`` padded) and the OR of
    the source bits that proposed each: ``(rows (B, C), bits (B, C))``."""
    b, p = rows.shape
    key = np.where(rows >= 0, rows, _PAD)
    order = np.argsort(key, axis=1, kind="stable")
    srt = np.take_along_axis(key, order, 1)
    sbits = np.take_along_axis(bits, order, 1)
    valid = srt != _PAD
    first = valid.copy()
    first[:, 1:] &= srt[:, 1:] != srt[:, :-1]
    c = int(first.sum(1).max()) if b and p else 0
    out_rows = np.full((b, c), -1, dtype=np.int64)
    out_bits = np.zeros((b, c), dtype=np.int8)
    if c == 0:
        return out_rows, out_bits
    slot = np.cumsum(first, axis=1) - 1  # (B, P) index of each entry's distinct row
    flat = (np.arange(b)[:, None] * c + slot)[valid]
    out_rows.reshape(-1)[flat] = srt[valid]
    np.bitwise_or.at(out_bits.reshape(-1), flat, sbits[valid])
    return out_rows, out_bits


def _z(cal: Calibration | None, sims: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:meth:`Calibration.vector_z` of each row: ``sims`` (M, C) = <x_m, candidates>."""
    if cal is None:
        return sims
    mu = x @ cal.mean  # (M,)
    var = np.einsum("md,md->m", x @ cal.cov, x)  # (M,) xᵀ·Cov·x
    sd = np.sqrt(np.maximum(var, 0.0)).astype(np.float32)
    z = (sims - mu[:, None]) / np.maximum(sd, _MIN_STD)[:, None]
    return np.where((sd < _MIN_STD)[:, None], np.float32(0.0), z).astype(np.float32)


def _source_part(
    cand: np.ndarray,
    x: np.ndarray,
    use: np.ndarray,
    weight: np.ndarray,
    cal: Calibration | None,
) -> np.ndarray:
    """``weight · z(<x, candidate>)`` (B, C) for the requests in ``use``, 0 elsewhere."""
    b, c = cand.shape[:2]
    part = np.zeros((b, c), dtype=np.float32)
    idx = np.flatnonzero(use)
    if len(idx) == 0 or c == 0:
        return part
    if len(idx) == b:  # every request: no copy of the (B, C, D) candidates
        sims = np.matmul(cand, x[:, :, None])[:, :, 0]  # (B, C)
        return weight[:, None] * _z(cal, sims, x)
    xs = x[idx]  # (M, D)
    sims = np.matmul(cand[idx], xs[:, :, None])[:, :, 0]  # (M, C)
    part[idx] = weight[idx, None] * _z(cal, sims, xs)
    return part


def fuse_batch(
    *,
    rows: np.ndarray,
    bits: np.ndarray,
    vectors: np.ndarray,
    popularity: np.ndarray,
    weights: np.ndarray,
    user_vectors: np.ndarray,
    has_user: np.ndarray,
    query_vectors: np.ndarray,
    has_query: np.ndarray,
    history_rows: np.ndarray,
    k: np.ndarray,
    calibration: Calibration | None = None,
    text_evidence: np.ndarray | None = None,
) -> BatchFused:
    """The top ``k[b]`` candidates of every request ``b``, best first.

    ``rows``/``bits`` (B, P): candidate rows (``-1`` padded, excluded rows already
    left out) and the source bit of each entry; ``weights`` (B, 3) float32: the
    sequence, query and popularity weights (:func:`~inference.fusion.fusion_weights`);
    ``user_vectors``/``query_vectors`` (B, D) float32, read where ``has_user`` /
    ``has_query`` (B,) bool; ``history_rows`` (B, H) int64, ``-1`` padded, oldest
    first; ``k`` (B,) int64; ``text_evidence`` (N,) bool by row, False for an item
    without usable text: the query source's entries of it are dropped and its query
    term is 0, as in ``fuse`` (None: every item has text).
    """
    if text_evidence is not None:  # the query source never proposes an item without text
        textless = ~text_evidence[np.where(rows >= 0, rows, 0)]
        rows = np.where((rows >= 0) & (bits & _QUERY_BIT != 0) & textless, -1, rows)
    urows, ubits = union(rows, bits)  # (B, C)
    b = len(urows)
    valid = urows >= 0
    safe = np.where(valid, urows, 0)
    cand = vectors[safe]  # (B, C, D)
    w = np.asarray(weights, dtype=np.float32)
    cal = calibration
    seq_part = _source_part(cand, user_vectors, has_user & (w[:, 0] > 0), w[:, 0], cal)
    q_part = _source_part(cand, query_vectors, has_query & (w[:, 1] > 0), w[:, 1], cal)
    if text_evidence is not None:
        q_part = np.where(text_evidence[safe], q_part, np.float32(0.0))
    pop = popularity[safe]  # (B, C)
    pop_z = cal.popularity_z(pop) if cal else pop
    score = seq_part + q_part + w[:, 2, None] * pop_z  # (B, C)
    score = np.where(valid, score, np.float32(-np.inf))
    key = np.where(valid, urows, _PAD)
    counts = np.minimum(np.maximum(k, 0), valid.sum(1)).astype(np.int64)  # (B,)
    top_k = int(counts.max()) if b else 0
    order = np.lexsort((key, -score), axis=1)[:, :top_k]  # (B, K): ties to the lower row
    live = np.arange(top_k)[None, :] < counts[:, None]  # (B, K)
    top_rows = np.where(live, np.take_along_axis(urows, order, 1), -1)
    nearest = np.full((b, top_k), -1, dtype=np.int64)
    hist_valid = history_rows >= 0  # (B, H)
    with_hist = np.flatnonzero(hist_valid.any(1) & (counts > 0))
    if len(with_hist) and top_k:
        top_vec = cand[with_hist[:, None], order[with_hist]]  # (M, K, D)
        hist_vec = vectors[np.where(hist_valid, history_rows, 0)[with_hist]]  # (M, H, D)
        sims = np.matmul(top_vec, hist_vec.transpose(0, 2, 1))  # (M, K, H)
        sims = np.where(hist_valid[with_hist, None, :], sims, np.float32(-np.inf))
        nearest[with_hist] = nearest_history(sims)
    return BatchFused(
        rows=top_rows,
        scores=np.take_along_axis(score, order, 1),
        bits=np.take_along_axis(ubits, order, 1),
        nearest=np.where(live, nearest, -1),
        query_wins=np.take_along_axis(q_part > seq_part, order, 1),
        counts=counts,
    )
