"""The FAISS index of a bundle: exact for small catalogs, HNSW for large, recall measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import faiss
import numpy as np


@dataclass
class BuiltIndex:
    index: faiss.Index
    kind: Literal["flat", "hnsw"]
    params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float = 1.0  # vs exact search, measured on sampled item-vector queries


def build_index(
    vectors: np.ndarray,
    *,
    exact_max: int = 100_000,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 64,
    n_probe_queries: int = 1000,
    seed: int = 0,
) -> BuiltIndex:
    """Inner-product index whose ids are row numbers (docs/bundle.md)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if n <= exact_max:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(x, np.arange(n, dtype=np.int64))
        return BuiltIndex(index, "flat")
    hnsw = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.hnsw.efSearch = ef_search
    hnsw.add(x)  # sequential ids == rows
    params = {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search}
    return BuiltIndex(hnsw, "hnsw", params, recall_vs_exact(hnsw, x, n_probe_queries, seed))


def recall_vs_exact(
    index: faiss.Index, x: np.ndarray, n_queries: int, seed: int, k: int = 10
) -> float:
    """Share of the exact top-k (inner product) that ``index`` returns, on sampled rows."""
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), size=min(n_queries, len(x)), replace=False)]
    k = min(k, len(x))
    exact = np.argsort(-(q @ x.T), axis=1)[:, :k]
    _, got = index.search(q, k)
    hits = [len(set(e) & set(g)) for e, g in zip(exact.tolist(), got.tolist(), strict=True)]
    return float(np.sum(hits) / (len(q) * k))
