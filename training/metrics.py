"""Full-ranking metrics as small pure functions over arrays (shapes checked up front).

Ranks are 0-based and PESSIMISTIC on ties: every other item scoring exactly the
target's score counts as ranked above it, so a constant scorer gets nothing. A
target masked to -inf (the user already consumed it) is a miss. With one target
per case Recall@k == HR@k; both keys are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from training.split import EvalCases

__all__ = [
    "coverage_at_k",
    "evaluate",
    "evaluate_matrix",
    "mask_history",
    "metrics_from_ranks",
    "rank_metrics",
    "target_ranks",
    "top_k",
]

ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (B, N) scores


def mask_history(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """A copy of ``scores`` (B, N) with each row's history items set to -inf."""
    if scores.ndim != 2 or scores.shape[0] != len(histories):
        raise ValueError(f"scores {scores.shape} vs {len(histories)} histories")
    # keep float64 if given: rounding to float32 could create ties (which count against)
    out = np.array(scores, dtype=np.result_type(scores.dtype, np.float32), copy=True)
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, np.int64) for h in histories]) if len(rows) else rows
    out[rows, cols] = -np.inf
    return out


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B,) 0-based pessimistic rank of each target in its row of ``scores`` (B, N)."""
    _check(scores, targets)
    t = scores[np.arange(len(targets)), targets][:, None]  # (B, 1)
    ranks = (scores > t).sum(1) + (scores == t).sum(1) - 1
    ranks[np.isneginf(t[:, 0])] = scores.shape[1]  # masked target: never retrieved
    return ranks.astype(np.int64)


def ndcg_per_case(ranks: np.ndarray, k: int) -> np.ndarray:
    """(B,) NDCG@k of each case from its 0-based target rank (one relevant item)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def paired_bootstrap_ratio(
    a: np.ndarray, b: np.ndarray, *, n: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """mean(a) / mean(b) and its percentile bootstrap interval, resampling cases jointly.

    ``a`` and ``b`` are per-case scores of two models on the SAME cases (e.g.
    :func:`ndcg_per_case`); resampling the pairs keeps what the cases share, so
    the interval says whether a ratio is told apart from noise on this split.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal non-empty 1-d arrays, got {a.shape} and {b.shape}")
    if b.sum() <= 0:
        raise ValueError("the baseline scores nothing: the ratio is undefined")
    rng = np.random.default_rng(seed)
    ratios = np.empty(n)
    for start in range(0, n, 1000):  # bounded memory: 1000 resamples at a time
        idx = rng.integers(0, len(a), size=(min(1000, n - start), len(a)))
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample with b all zero
            ratios[start : start + len(idx)] = a[idx].sum(1) / b[idx].sum(1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.nanpercentile(ratios, [tail, 100 - tail])
    return float(a.sum() / b.sum()), float(lo), float(hi)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    if ranks.ndim != 1 or len(ranks) == 0:
        raise ValueError(f"need a non-empty 1-d array of ranks, got shape {ranks.shape}")
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(ndcg_per_case(ranks, k).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def rank_metrics(
    scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (10, 20)
) -> dict[str, float]:
    """Recall/HR, NDCG, MRR at each k; ``scores`` (B, N) already masked."""
    return metrics_from_ranks(target_ranks(scores, targets), ks)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, k) item rows, best first (ties in row order)."""
    if scores.ndim != 2 or not 0 < k <= scores.shape[1]:
        raise ValueError(f"top_k: scores {scores.shape}, k {k}")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def coverage_at_k(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in anybody's top-k (``topk`` (B, k) rows; -1 = pad)."""
    if topk.ndim != 2 or n_items <= 0:
        raise ValueError(f"coverage_at_k: topk {topk.shape}, n_items {n_items}")
    shown = np.unique(topk[topk >= 0])
    if len(shown) and shown[-1] >= n_items:
        raise ValueError(f"item row {shown[-1]} outside a catalog of {n_items}")
    return len(shown) / n_items


def evaluate(
    score_fn: ScoreFn,
    cases: EvalCases,
    n_items: int,
    *,
    batch_size: int = 256,
    subset: np.ndarray | None = None,
    ks: Sequence[int] = (10, 20),
    coverage_k: int = 10,
    progress: bool = True,
) -> dict[str, float]:
    """Score every case over the full catalog, mask its history, and average the metrics.

    ``score_fn(histories)`` returns (B, n_items) scores; ``subset`` (bool mask or
    indices) selects cases, e.g. those whose target is a cold item.
    """
    idx = _subset_indices(subset, len(cases))
    ranks, tops = [], []
    for start in tqdm(
        range(0, len(idx), batch_size), desc="evaluate", disable=not progress, leave=False
    ):
        sel = idx[start : start + batch_size]
        hist = [cases.histories[i] for i in sel]
        scores = np.asarray(score_fn(hist))
        if scores.shape != (len(sel), n_items):
            raise ValueError(f"score_fn returned {scores.shape}, expected {(len(sel), n_items)}")
        scores = mask_history(scores, hist)
        ranks.append(target_ranks(scores, cases.targets[sel]))
        tops.append(top_k(scores, min(coverage_k, n_items)))
    out = metrics_from_ranks(np.concatenate(ranks), ks)
    out[f"coverage@{coverage_k}"] = coverage_at_k(np.concatenate(tops), n_items)
    out["n_cases"] = float(len(idx))
    return out


def evaluate_matrix(
    scores: np.ndarray,
    cases: EvalCases,
    *,
    subset: np.ndarray | None = None,
    ks: Sequence[int] = (10, 20),
    coverage_k: int = 10,
) -> dict[str, float]:
    """:func:`evaluate` for scores already computed for every case: (len(cases), N), unmasked."""
    if scores.ndim != 2 or scores.shape[0] != len(cases):
        raise ValueError(f"scores {scores.shape} for {len(cases)} cases")
    idx = _subset_indices(subset, len(cases))
    masked = mask_history(scores[idx], [cases.histories[i] for i in idx])
    out = metrics_from_ranks(target_ranks(masked, cases.targets[idx]), ks)
    top = top_k(masked, min(coverage_k, scores.shape[1]))
    out[f"coverage@{coverage_k}"] = coverage_at_k(top, scores.shape[1])
    out["n_cases"] = float(len(idx))
    return out


def _subset_indices(subset: np.ndarray | None, n: int) -> np.ndarray:
    idx = np.arange(n) if subset is None else np.asarray(subset)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"boolean subset {idx.shape} for {n} cases")
        idx = np.flatnonzero(idx)
    if len(idx) == 0:
        raise ValueError("no cases to evaluate")
    return idx


def _check(scores: np.ndarray, targets: np.ndarray) -> None:
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} do not match")
    if len(targets) and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"a target is outside 0..{scores.shape[1] - 1}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
