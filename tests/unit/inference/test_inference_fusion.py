"""Fusion rules as pure functions over small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from inference.fusion import Weights, fuse, fusion_weights, query_decay
from inference.settings import FusionSettings

S = FusionSettings()


def test_cold_user_gets_text_and_popularity_only() -> None:
    w = fusion_weights(0, True, 0.0, S)
    assert w.sequence == 0 and w.query > 0 and w.popularity > 0
    assert w.sequence + w.query + w.popularity == pytest.approx(1.0)
    assert fusion_weights(0, False, None, S) == Weights(0.0, 0.0, 1.0)


def test_sequence_weight_grows_with_history_and_popularity_shrinks() -> None:
    ws = [fusion_weights(h, False, None, S) for h in range(8)]
    seq = [w.sequence for w in ws]
    assert seq == sorted(seq) and seq[0] == 0 and seq[S.history_full] == seq[-1]
    assert ws[S.history_full].popularity < ws[1].popularity


def test_query_weight_decays_with_age() -> None:
    assert query_decay(None, 600) == 1.0 and query_decay(600, 600) == pytest.approx(0.5)
    ages = [0.0, 60.0, 600.0, 6000.0]
    wq = [fusion_weights(5, True, a, S).query for a in ages]
    assert wq == sorted(wq, reverse=True) and wq[-1] < 0.01
    raw_fresh = fusion_weights(5, True, 0.0, S)
    raw_half = fusion_weights(5, True, S.query_half_life_s, S)
    # Un-normalised query weight halves after one half-life.
    ratio_fresh = raw_fresh.query / raw_fresh.sequence
    ratio_half = raw_half.query / raw_half.sequence
    assert ratio_half == pytest.approx(ratio_fresh / 2)


def _unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


VEC = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1], [0.5, 0.5, 0]])
POP = np.array([0.1, 0.2, 0.3, 0.4, 1.0, 0.0], dtype=np.float32)


def _fuse(**kw: object) -> list:
    args: dict = {
        "candidates": {
            "sequence": np.array([0, 1, 5]),
            "query": np.array([2, 3]),
            "popular": np.array([4]),
        },
        "vectors": VEC,
        "popularity": POP,
        "weights": Weights(0.5, 0.4, 0.1),
        "user_vector": VEC[0],
        "query_vector": VEC[2],
        "query_text": "q text",
        "history_rows": np.array([0]),
        "history_ids": ["h0"],
        "excluded_rows": np.array([0]),
        "k": 10,
    }
    args.update(kw)
    return fuse(**args)


def test_excluded_rows_never_returned_and_scores_sorted() -> None:
    out = _fuse()
    rows = [f.row for f in out]
    assert 0 not in rows and sorted(rows) == [1, 2, 3, 4, 5]
    assert [f.score for f in out] == sorted((f.score for f in out), reverse=True)
    assert _fuse(excluded_rows=np.arange(6)) == []


def test_scores_sources_and_because() -> None:
    by_row = {f.row: f for f in _fuse()}
    expect = 0.5 * VEC[1] @ VEC[0] + 0.4 * VEC[1] @ VEC[2] + 0.1 * POP[1]
    assert by_row[1].score == pytest.approx(float(expect), rel=1e-5)
    assert by_row[1].sources == ("sequence",) and by_row[1].because == "h0"
    assert by_row[2].sources == ("query",) and by_row[2].because == "q text"
    assert by_row[4].sources == ("popular",) and by_row[4].because is None
    both = _fuse(candidates={"sequence": np.array([2]), "query": np.array([2])})
    assert both[0].sources == ("sequence", "query")


def test_no_history_no_query_gives_no_because_and_ties_break_by_row() -> None:
    out = _fuse(
        candidates={"popular": np.array([3, 1])},
        popularity=np.zeros(6, dtype=np.float32),
        weights=Weights(0, 0, 1),
        user_vector=None,
        query_vector=None,
        query_text=None,
        history_rows=np.array([], dtype=np.int64),
        history_ids=[],
        excluded_rows=np.array([], dtype=np.int64),
        k=1,
    )
    assert [(f.row, f.because) for f in out] == [(1, None)]


def test_query_explains_only_items_it_proposed() -> None:
    cold = {
        "weights": Weights(0, 0.7, 0.3),
        "user_vector": None,
        "history_rows": np.array([], dtype=np.int64),
        "history_ids": [],
        "excluded_rows": np.array([], dtype=np.int64),
    }
    by_row = {f.row: f for f in _fuse(**cold)}
    assert by_row[2].because == "q text"  # similar to the query
    assert by_row[4].because is None  # proposed by popularity only
    seq_only = _fuse(candidates={"sequence": np.array([2])}, query_vector=VEC[2])
    assert seq_only[0].because == "h0"  # the query did not propose it
