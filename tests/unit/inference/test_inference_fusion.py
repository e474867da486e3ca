"""Fusion rules as pure functions over small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from inference.fusion import (
    Calibration,
    Weights,
    fuse,
    fuse_dense,
    fusion_weights,
    query_decay,
)
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


def test_popularity_ramps_from_the_cold_to_the_warm_weight() -> None:
    s = FusionSettings(popularity_weight=0.3, popularity_weight_warm=0.1)
    cold = fusion_weights(0, True, 0.0, s)  # text-only user
    warm = fusion_weights(s.history_full, False, None, s)
    half = fusion_weights(s.history_full // 2 or 1, False, None, s)
    assert cold.popularity / cold.query == pytest.approx(0.3)
    assert warm.popularity / warm.sequence == pytest.approx(0.1)
    assert warm.popularity < half.popularity  # the share shrinks as history grows


def test_a_fresh_query_halves_a_warm_users_popularity_and_a_stale_one_restores_it() -> None:
    s = FusionSettings(popularity_weight_warm=0.1)
    h = s.history_full
    alone = fusion_weights(h, False, None, s)
    fresh = fusion_weights(h, True, 0.0, s)
    stale = fusion_weights(h, True, 100 * s.query_half_life_s, s)
    assert alone.popularity / alone.sequence == pytest.approx(0.1)
    assert fresh.popularity / fresh.sequence == pytest.approx(0.05)
    assert stale.popularity / stale.sequence == pytest.approx(0.1, rel=1e-3)


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


def test_scores_are_catalog_standardised_sources_mixed_by_weight() -> None:
    cal = Calibration.of(VEC, POP)
    by_row = {f.row: f for f in _fuse(calibration=cal)}
    # by hand: each source's score standardised over all six items, then weighted
    seq_all, q_all, pop_all = VEC @ VEC[0], VEC @ VEC[2], POP

    def z(all_scores: np.ndarray, row: int) -> float:
        return float((all_scores[row] - all_scores.mean()) / all_scores.std())

    expect = 0.5 * z(seq_all, 1) + 0.4 * z(q_all, 1) + 0.1 * z(pop_all, 1)
    assert by_row[1].score == pytest.approx(expect, rel=1e-4)
    raw = {f.row: f for f in _fuse()}  # no calibration: raw cosines and popularity
    expect_raw = 0.5 * VEC[1] @ VEC[0] + 0.4 * VEC[1] @ VEC[2] + 0.1 * POP[1]
    assert raw[1].score == pytest.approx(float(expect_raw), rel=1e-5)


def test_sources_and_because() -> None:
    by_row = {f.row: f for f in _fuse(calibration=Calibration.of(VEC, POP))}
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


def _text_only(vectors: np.ndarray, popularity: np.ndarray, calibrated: bool) -> list[int]:
    """Rows served to a text-only user (default weights) whose query is axis 0."""
    out = fuse(
        candidates={"query": np.arange(len(vectors) - 1), "popular": np.array([len(vectors) - 1])},
        vectors=vectors,
        popularity=popularity,
        weights=fusion_weights(0, True, 0.0, S),
        user_vector=None,
        query_vector=np.eye(vectors.shape[1], dtype=np.float32)[0],
        query_text="q",
        history_rows=np.array([], dtype=np.int64),
        history_ids=[],
        excluded_rows=np.array([], dtype=np.int64),
        k=len(vectors),
        calibration=Calibration.of(vectors, popularity) if calibrated else None,
    )
    return [f.row for f in out]


def _at_cosine(cos: list[float]) -> np.ndarray:
    """Unit vectors whose cosine to axis 0 is ``cos[i]``."""
    c = np.asarray(cos, dtype=np.float32)
    return np.stack([c, np.sqrt(1 - c**2), np.zeros_like(c)], axis=1)


def test_popularity_breaks_ties_between_equal_query_matches_for_a_cold_user() -> None:
    vectors = _at_cosine([0.9, 0.9, 0.3])  # two equal matches, then a popular non-match
    rows = _text_only(vectors, np.array([0.0, 0.5, 1.0], dtype=np.float32), calibrated=True)
    assert rows == [1, 0, 2]  # the more popular match first; the non-match stays last


def test_a_narrow_cosine_band_does_not_let_popularity_crowd_out_the_query() -> None:
    # Query cosines 0.49-0.52 (a frozen text tower's typical spread): mixed raw,
    # the most popular item wins; standardised, the query's order stands.
    vectors = _at_cosine([0.52, 0.51, 0.50, 0.49])
    pop = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    assert _text_only(vectors, pop, calibrated=True) == [0, 1, 2, 3]
    assert _text_only(vectors, pop, calibrated=False)[0] == 3


def test_a_sources_scale_does_not_change_its_standardised_scores() -> None:
    cal = Calibration.of(VEC, POP)
    base = _fuse(calibration=cal)
    scaled = _fuse(calibration=cal, user_vector=3 * VEC[0])  # every cosine tripled
    assert [(f.row, f.sources) for f in scaled] == [(f.row, f.sources) for f in base]
    assert np.allclose([f.score for f in scaled], [f.score for f in base], atol=1e-5)


def test_a_source_that_sees_all_items_alike_contributes_nothing() -> None:
    flat = np.full(6, 0.5, dtype=np.float32)
    out = _fuse(popularity=flat, weights=Weights(0, 0, 1), calibration=Calibration.of(VEC, flat))
    assert all(f.score == 0.0 for f in out) and [f.row for f in out] == [1, 2, 3, 4, 5]
    cal = Calibration.of(VEC, POP)
    assert np.all(cal.vector_z(np.ones(3, np.float32), np.zeros(3, np.float32)) == 0)


def test_calibration_follows_a_new_popularity_prior_only() -> None:
    cal = Calibration.of(VEC, POP)
    moved = cal.with_popularity(POP[::-1].copy())
    assert moved.cov is cal.cov and moved.pop_mean == pytest.approx(cal.pop_mean)
    assert moved.popularity_z(POP[:1])[0] == pytest.approx(cal.popularity_z(POP[:1])[0])
    doubled = cal.with_popularity(np.minimum(2 * POP, 1))
    assert doubled.pop_mean > cal.pop_mean


def test_fuse_dense_ranks_every_item_as_fuse_does_with_every_item_a_candidate() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pop = rng.random(40).astype(np.float32)
    cal = Calibration.of(vectors, pop)
    for n_hist in (1, 3, 9):  # below, at and past history_full: the ramp moves the weights
        user, hist = vectors[n_hist] + vectors[n_hist + 1], np.arange(n_hist)
        w = fusion_weights(n_hist, False, None, S)
        served = fuse(
            candidates={"sequence": np.arange(40)}, vectors=vectors, popularity=pop,
            weights=w, user_vector=user, query_vector=None, query_text=None,
            history_rows=hist, history_ids=[str(r) for r in hist],
            excluded_rows=hist, k=40, calibration=cal,
        )  # fmt: skip
        dense = fuse_dense((vectors @ user)[None, :], pop, [w])[0]
        dense[hist] = -np.inf
        assert [f.row for f in served] == list(np.lexsort((np.arange(40), -dense))[: len(served)])
        assert np.allclose([f.score for f in served], dense[[f.row for f in served]], atol=1e-4)


def test_fuse_dense_standardises_a_peers_scores_over_the_items_it_can_score() -> None:
    scores = np.array([[2.0, 0.0, -np.inf, 1.0], [5.0, 5.0, 5.0, 5.0]])
    pop = np.array([0.0, 1.0, 0.5, 0.5])
    out = fuse_dense(scores, pop, [Weights(1.0, 0.0, 0.0), Weights(0.5, 0.0, 0.5)])
    assert np.isneginf(out[0, 2]) and np.allclose(out[0, [0, 1, 3]], [1.2247449, -1.2247449, 0])
    # a flat row cannot rank: only the prior orders it
    assert np.allclose(out[1], 0.5 * (pop - pop.mean()) / pop.std())
    with pytest.raises(ValueError):
        fuse_dense(scores, pop[:3], [Weights(1, 0, 0)] * 2)


def test_an_item_without_text_is_not_a_query_candidate_and_gets_no_query_term() -> None:
    cal = Calibration.of(VEC, POP)
    evidence = np.ones(len(VEC), dtype=bool)
    evidence[2] = False  # row 2 is the query's own vector, proposed only by the query source
    with_rule = {f.row: f for f in _fuse(calibration=cal, text_evidence=evidence)}
    without = {f.row: f for f in _fuse(calibration=cal)}
    assert 2 in without and without[2].sources == ("query",)
    assert 2 not in with_rule  # only the query proposed it: gone
    # row 3 keeps its query score; a textless row another source proposes keeps the rest
    assert with_rule[3].score == pytest.approx(without[3].score)
    evidence[1] = False  # proposed by the sequence source: still ranked, query term 0
    seq_all = VEC @ VEC[0]
    z_seq = (seq_all[1] - seq_all.mean()) / seq_all.std()
    z_pop = (POP[1] - POP.mean()) / POP.std()
    got = {f.row: f for f in _fuse(calibration=cal, text_evidence=evidence)}
    assert got[1].score == pytest.approx(0.5 * z_seq + 0.1 * z_pop, rel=1e-4)
    assert got[1].sources == ("sequence",)
