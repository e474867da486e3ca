"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.baselines import Popularity
from training.metrics import (
    coverage_at_k,
    evaluate,
    evaluate_matrix,
    mask_history,
    ndcg_per_case,
    paired_bootstrap_ratio,
    rank_metrics,
    target_ranks,
    top_k,
)
from training.split import EvalCases


def test_single_case_by_hand() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.3]], np.float32)
    m = rank_metrics(scores, np.array([2]), ks=(1, 2))
    # target scores second: rank 1 (0-based)
    assert m["recall@1"] == 0.0 and m["hr@2"] == 1.0
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["ndcg@1"] == 0.0 and m["mrr@1"] == 0.0


def test_average_over_cases_by_hand() -> None:
    scores = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    m = rank_metrics(scores, np.array([0, 2, 3]), ks=(3,))
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1.0 + 1 / math.log2(4)) / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3) / 3)


def test_ties_count_against_the_target() -> None:
    assert target_ranks(np.ones((1, 5)), np.array([0])).tolist() == [4]
    assert rank_metrics(np.zeros((2, 30)), np.array([0, 7]))["recall@20"] == 0.0


def test_masking_moves_target_up_and_a_masked_target_is_a_miss() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.7]], np.float32)
    hist = [np.array([0, 1])]
    masked = mask_history(scores, hist)
    assert scores[0, 0] == pytest.approx(0.9)  # input untouched (pure)
    assert target_ranks(masked, np.array([3])).tolist() == [0]
    assert target_ranks(masked, np.array([0])).tolist() == [4]  # consumed before: never found


def test_top_k_and_coverage() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.8, 0.2, 0.7, 0.0]])
    top = top_k(scores, 2)
    assert top.tolist() == [[1, 2], [0, 2]]
    assert coverage_at_k(top, 4) == pytest.approx(3 / 4)
    assert coverage_at_k(np.array([[0, -1]]), 4) == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    "scores, targets",
    [
        (np.zeros((2, 3)), np.array([0])),  # B mismatch
        (np.zeros(3), np.array([0])),  # not 2-d
        (np.zeros((1, 3)), np.array([3])),  # target outside
        (np.array([[0.0, np.nan, 1.0]]), np.array([0])),  # NaN
    ],
)
def test_bad_shapes_raise(scores: np.ndarray, targets: np.ndarray) -> None:
    with pytest.raises(ValueError):
        rank_metrics(scores, targets)


def _cases() -> EvalCases:
    return EvalCases(
        users=np.array([0, 1, 2], np.int32),
        histories=[np.array([0]), np.array([1, 2]), np.array([3])],
        targets=np.array([1, 0, 2], np.int32),
    )


def test_evaluate_masks_batches_and_matches_matrix_version() -> None:
    cases = _cases()
    pop = Popularity([np.array([0, 0, 0, 1, 1, 2])], n_items=4)  # counts 3, 2, 1, 0
    got = evaluate(pop, cases, 4, batch_size=2, progress=False)
    # case 0: 0 masked -> target 1 first (rank 0); case 1: 1, 2 masked -> 0 first;
    # case 2: 3 masked -> order 0, 1, 2 -> rank 2
    assert got["recall@10"] == 1.0
    assert got["mrr@10"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert got["n_cases"] == 3.0
    matrix = np.tile(pop.counts, (3, 1))
    assert evaluate_matrix(matrix, cases) == pytest.approx(got)
    sub = evaluate(pop, cases, 4, subset=np.array([False, False, True]), progress=False)
    assert sub["ndcg@10"] == pytest.approx(1 / math.log2(4)) and sub["n_cases"] == 1.0


def test_evaluate_rejects_wrong_score_shape() -> None:
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda h: np.zeros((len(h), 3)), _cases(), 4, progress=False)


def test_popularity_counts_training_only() -> None:
    pop = Popularity([np.array([2, 2]), np.array([1])], n_items=3)
    assert pop.counts.tolist() == [0.0, 1.0, 2.0]
    assert pop([np.empty(0)] * 2).shape == (2, 3)
    with pytest.raises(ValueError):
        Popularity([np.array([3])], n_items=3)


def test_float64_scores_keep_their_precision_through_masking() -> None:
    scores = np.array([[1.0, 1.0 + 1e-9, 0.0]])  # equal in float32
    masked = mask_history(scores, [np.array([2])])
    assert target_ranks(masked, np.array([1])).tolist() == [0]


def test_ndcg_per_case_by_hand() -> None:
    got = ndcg_per_case(np.array([0, 1, 9, 10, 500]), 10)
    assert got.tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])


def test_paired_bootstrap_ratio_is_exact_when_the_pairs_agree() -> None:
    b = np.random.default_rng(1).random(300)
    assert paired_bootstrap_ratio(b, b, n=2000) == pytest.approx((1.0, 1.0, 1.0))
    assert paired_bootstrap_ratio(2 * b, b, n=2000) == pytest.approx((2.0, 2.0, 2.0))


def test_paired_bootstrap_ratio_interval_covers_the_truth_and_narrows_with_cases() -> None:
    rng = np.random.default_rng(2)
    # two models' per-case scores: a shares b's case difficulty plus its own noise
    widths = []
    for n_cases in (200, 5000):
        b = rng.exponential(1.0, n_cases)
        a = 1.1 * b + rng.normal(0, 0.3, n_cases)
        ratio, lo, hi = paired_bootstrap_ratio(a, b, n=2000, seed=3)
        assert lo < ratio < hi and lo < 1.1 < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~sqrt(25) narrower with 25x the cases
    again = paired_bootstrap_ratio(a, b, n=2000, seed=3)
    assert again == (ratio, lo, hi)  # deterministic for a seed


def test_paired_bootstrap_ratio_rejects_unpaired_or_empty_input() -> None:
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap_ratio(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="baseline"):
        paired_bootstrap_ratio(np.ones(3), np.zeros(3))
