"""The FAISS index of a bundle: exact for small catalogs, IVF for large, recall measured.

Large catalogs get an inverted-file index with 8-bit codes (``ivf``, docs/bundle.md):
``nlist`` lists, a power of two near 4·√N, and ``nprobe`` chosen here as the fewest
lists whose served pool holds at least ``target_recall`` of the exact top 10 for
user-like queries (the mean of five random items: a user vector sits between the
items it came from, and graph indexes find those neighbours worst). On the 100k-item
bench catalog that was 0.95 at about a quarter of the CPU per query of HNSW at the
same recall (bench/RESULTS.md, issue 24). ``kind="hnsw"`` still builds the graph
index earlier bundles carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import faiss
import numpy as np

SERVED_DEPTH = 80  # hits a click's search asks for (50 candidates + a 30-row exclusion margin)
NPROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@dataclass
class BuiltIndex:
    index: faiss.Index
    kind: Literal["flat", "hnsw", "ivf"]
    params: dict[str, int | str] = field(default_factory=dict)
    recall_at_10: float = 1.0  # vs exact search, measured on sampled item-vector queries
    user_recall_at_10: float = 1.0  # the same on user-like queries, in the served pool


def build_index(
    vectors: np.ndarray,
    *,
    exact_max: int = 100_000,
    kind: Literal["auto", "hnsw", "ivf"] = "auto",
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 64,
    target_recall: float = 0.95,
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
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.hnsw.efSearch = ef_search
        hnsw.add(x)  # sequential ids == rows
        params: dict[str, int | str] = {
            "M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search,
        }  # fmt: skip
        return BuiltIndex(
            hnsw,
            "hnsw",
            params,
            recall_vs_exact(hnsw, x, n_probe_queries, seed),
            served_recall(hnsw, x, user_queries(x, n_probe_queries // 2, seed), None),
        )
    return build_ivf(x, target_recall=target_recall, n_queries=n_probe_queries, seed=seed)


def ivf_lists(n: int) -> int:
    """The power of two nearest 4·√n (at least 16): FAISS's usual range is 4-16·√n."""
    return max(16, 2 ** round(np.log2(4 * np.sqrt(n))))


def build_ivf(
    x: np.ndarray, *, target_recall: float = 0.95, n_queries: int = 1000, seed: int = 0
) -> BuiltIndex:
    """IVF with 8-bit codes, ``nprobe`` chosen for ``target_recall`` on user-like queries."""
    n, d = x.shape
    nlist = ivf_lists(n)
    index = faiss.index_factory(d, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    index.train(train)
    index.add_with_ids(x, np.arange(n, dtype=np.int64))
    queries = user_queries(x, n_queries // 2, seed)
    nprobe, recall = nlist, 1.0
    for probe in (p for p in NPROBES if p < nlist):
        recall = served_recall(index, x, queries, probe)
        if recall >= target_recall:
            nprobe = probe
            break
    else:
        recall = served_recall(index, x, queries, nlist)
    faiss.extract_index_ivf(index).nprobe = nprobe
    return BuiltIndex(
        index,
        "ivf",
        {"nlist": nlist, "nprobe": nprobe, "codes": "sq8"},
        recall_vs_exact(index, x, n_queries, seed),
        recall,
    )


def user_queries(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, D) unit queries like user vectors: the mean of five random items."""
    rng = np.random.default_rng(seed + 1)
    q = x[rng.integers(0, len(x), size=(n, 5))].mean(axis=1)
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def served_recall(
    index: faiss.Index, x: np.ndarray, q: np.ndarray, nprobe: int | None, k: int = 10
) -> float:
    """Share of the exact top-``k`` of ``q`` found in the exact top-``k`` of the
    ``SERVED_DEPTH`` hits ``index`` returns (serving rescores its candidates exactly)."""
    exact = _exact_top(x, q, k)
    params = None
    if nprobe is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
    _, rows = index.search(q, min(SERVED_DEPTH, len(x)), params=params)
    hits = 0
    for qi, r, e in zip(q, rows, exact, strict=True):
        r = r[r >= 0]
        top = r[np.argsort(-(x[r] @ qi), kind="stable")[:k]]
        hits += len(set(top.tolist()) & set(e.tolist()))
    return hits / (len(q) * k)


def _exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(x))
    return np.concatenate(
        [np.argsort(-(c @ x.T), axis=1)[:, :k] for c in np.array_split(q, len(q) // 64 + 1)]
    )


def recall_vs_exact(
    index: faiss.Index, x: np.ndarray, n_queries: int, seed: int, k: int = 10
) -> float:
    """Share of the exact top-k (inner product) that ``index`` returns, on sampled rows."""
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), size=min(n_queries, len(x)), replace=False)]
    k = min(k, len(x))
    exact = _exact_top(x, q, k)
    _, got = index.search(q, k)
    hits = [len(set(e) & set(g)) for e, g in zip(exact.tolist(), got.tolist(), strict=True)]
    return float(np.sum(hits) / (len(q) * k))
