"""Offline metrics shared by training (torch) and ``recstream evaluate`` (ONNX).

Sequence metrics use training/metrics.py's protocol (full ranking, history
masked) on the test cases, split into warm- and cold-target cases when the
split has cold items. Text-query metrics embed synthetic queries
(training/queries.py) and rank the bundle's item vectors, as a user with no
history would be served: an item without usable text (inference/text_evidence.py)
gets the query's catalog-average score, as serving gives it z = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inference.text_evidence import usable_text_mask
from training.data.types import Catalog
from training.metrics import evaluate, top_k
from training.queries import (
    decade_precision_at_k,
    genre_precision_at_k,
    hubness_at_k,
    query_hits,
    synthetic_queries,
)
from training.sequence_train import pad_histories
from training.split import Split, cold_target_mask

UserFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B,L,D), (B,L) -> (B,D)


def history_scorer(user_fn: UserFn, item_vectors: np.ndarray, max_len: int):
    """A ``score_fn`` for :func:`training.metrics.evaluate`: histories -> (B, N) cosines."""
    n, d = item_vectors.shape
    padded = np.concatenate([item_vectors, np.zeros((1, d), np.float32)])

    def score(histories: list[np.ndarray]) -> np.ndarray:
        idx = pad_histories(histories, max_len, n)  # (B,L) left-padded
        users = user_fn(padded[idx], (idx != n).astype(np.float32))  # (B,D)
        return users @ item_vectors.T

    return score


def torch_user_fn(encoder) -> UserFn:
    import torch

    def run(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        encoder.eval()
        with torch.no_grad():
            return encoder(torch.from_numpy(x), torch.from_numpy(m)).numpy()

    return run


def onnx_user_fn(sess) -> UserFn:
    def run(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return sess.run(["user_vector"], {"item_vectors": x, "mask": m})[0]

    return run


def sequence_metrics_from(
    score_fn, split: Split, n_items: int, *, progress: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {"all": evaluate(score_fn, split.test, n_items, progress=progress)}
    if len(split.cold_items):
        cold = cold_target_mask(split)
        if cold.any():
            out["cold_target"] = evaluate(
                score_fn, split.test, n_items, subset=cold, progress=progress
            )
        if (~cold).any():
            out["warm_target"] = evaluate(
                score_fn, split.test, n_items, subset=~cold, progress=progress
            )
    return out


def sequence_metrics(encoder, item_vectors: np.ndarray, split: Split, *, progress: bool = True):
    score = history_scorer(torch_user_fn(encoder), item_vectors, encoder.cfg.max_len)
    return sequence_metrics_from(score, split, len(item_vectors), progress=progress)


def query_metrics(
    encode: Callable[[Sequence[str]], np.ndarray],
    item_vectors: np.ndarray,
    catalog: Catalog,
    n: int,
    *,
    seed: int = 0,
    text_evidence: bool = True,
) -> dict[str, Any]:
    """Genre/decade precision@10, target hit@10/50 and hubness@10 for text-only users.

    With ``text_evidence`` (as served) an item without usable text scores the query's
    catalog average; without it, every item is ranked by its raw cosine (the ranking
    before that rule, for comparison)."""
    queries = synthetic_queries(catalog, n=n, seed=seed)
    q = encode([x.text for x in queries])  # (Q,D)
    scores = q @ item_vectors.T  # (Q,N)
    if text_evidence:
        textless = ~usable_text_mask(catalog.texts, catalog.item_ids)
        if textless.any():
            scores[:, textless] = scores.mean(axis=1, keepdims=True)
    top = top_k(scores, min(50, len(item_vectors)))
    out: dict[str, Any] = {
        "genre_precision@10": genre_precision_at_k(top, queries, catalog, k=10),
        "decade_precision@10": decade_precision_at_k(top, queries, catalog, k=10),
        "n_queries": float(len(queries)),
    }
    out.update(query_hits(top, queries, ks=(10, min(50, top.shape[1]))))
    out.update(hubness_at_k(top, queries, catalog, k=10))
    return out
