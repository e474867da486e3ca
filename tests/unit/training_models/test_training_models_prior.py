"""Choosing the served popularity prior's warm weight on validation cases."""

from __future__ import annotations

import numpy as np
import pytest

from training.prior_tuning import GRID, choose_warm_prior
from training.split import EvalCases

N_ITEMS, N_CASES = 60, 200
POP = np.linspace(1.0, 0.0, N_ITEMS)  # item 0 the most popular


def _cases(targets: np.ndarray) -> EvalCases:
    hist = [np.array([20 + i % 5, 25 + i % 5]) for i in range(len(targets))]
    return EvalCases(np.arange(len(targets)), hist, targets.astype(np.int32))


def _scorer(noise_on_target: float, targets: np.ndarray, seed: int = 0):
    """Scores where each case's target sits ``noise_on_target`` above random items."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((len(targets), N_ITEMS))
    table[np.arange(len(targets)), targets] += noise_on_target
    calls = iter(range(0, len(targets), 64))

    def score(histories: list[np.ndarray]) -> np.ndarray:
        start = next(calls)
        return table[start : start + len(histories)]

    return score


def test_popular_targets_the_model_half_sees_earn_a_prior() -> None:
    targets = np.random.default_rng(1).integers(0, 8, N_CASES)  # always a head item
    choice = choose_warm_prior(_scorer(1.0, targets), _cases(targets), POP, batch=64)
    assert choice.weight > 0
    assert choice.ndcg_by_weight[choice.weight] > choice.ndcg_by_weight[0.0]
    assert set(choice.ndcg_by_weight) == set(GRID)


def test_tail_targets_the_model_sees_get_no_prior() -> None:
    targets = np.random.default_rng(2).integers(50, 60, N_CASES)  # always in the tail
    choice = choose_warm_prior(_scorer(3.0, targets), _cases(targets), POP, batch=64)
    assert choice.weight == 0.0
    assert choice.ndcg_by_weight[0.0] > choice.ndcg_by_weight[max(GRID)]


def test_ties_go_to_the_smaller_weight_and_bad_grids_are_refused() -> None:
    targets = np.full(N_CASES, 45)  # masked nowhere, scored flat: every weight ranks it alike
    flat = lambda hist: np.zeros((len(hist), N_ITEMS))  # noqa: E731
    choice = choose_warm_prior(flat, _cases(targets), np.zeros(N_ITEMS), grid=(0.1, 0.05))
    assert choice.weight == 0.05 and len(set(choice.ndcg_by_weight.values())) == 1
    with pytest.raises(ValueError, match="non-negative"):
        choose_warm_prior(flat, _cases(targets), POP, grid=(-0.1,))
    with pytest.raises(ValueError, match="no validation cases"):
        choose_warm_prior(flat, _cases(np.array([], dtype=np.int32)), POP)
