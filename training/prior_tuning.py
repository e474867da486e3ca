"""Choose the served popularity prior's weight for warm users on the validation cases.

Serving mixes a warm user's standardised sequence scores with the bundle's
standardised popularity prior (:mod:`inference.fusion`). How much the prior helps
depends on the data: on ml-100k a weight of 0.075-0.15 lifted warm NDCG@10 by
2-4 %, on ml-1m 0.1 cost 1-3 % where 0.025 gained 1 % (bench/RESULTS.md,
session 12). So training picks the weight per bundle, on the validation cases
only (the test cases stay unseen), and the manifest carries it to serving
(``fusion.popularity_weight_warm``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.fusion import fuse_dense, fusion_weights
from inference.settings import FusionSettings
from training.metrics import mask_history, ndcg_per_case, target_ranks
from training.split import EvalCases

# Candidate weights (per unit of sequence weight at full history). 0 serves the
# model's own ranking; past 0.2 the prior fell below it on every bundle measured.
GRID: tuple[float, ...] = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2)

ScoreFn = Callable[[list[np.ndarray]], np.ndarray]  # histories -> (B, N) scores


@dataclass(frozen=True)
class PriorChoice:
    weight: float  # the chosen popularity_weight_warm
    ndcg_by_weight: dict[float, float]  # validation NDCG@10 per candidate weight

    def to_dict(self) -> dict[str, object]:
        return {
            "popularity_weight_warm": self.weight,
            "chosen_on": "validation NDCG@10, served fusion over the whole catalog",
            "valid_ndcg@10_by_weight": {f"{w:g}": v for w, v in self.ndcg_by_weight.items()},
        }


def choose_warm_prior(
    score: ScoreFn,
    cases: EvalCases,
    popularity: np.ndarray,
    *,
    grid: Sequence[float] = GRID,
    batch: int = 512,
    k: int = 10,
) -> PriorChoice:
    """The weight in ``grid`` whose served ranking scores the best NDCG@k on ``cases``.

    Each case is ranked as serving would rank it with no query: its scores and
    the prior standardised and mixed with the weights :func:`fusion_weights`
    gives its history length (so short histories ramp as served), history items
    excluded. Ties go to the smaller weight: the prior must earn its place.
    """
    if not len(grid) or min(grid) < 0:
        raise ValueError(f"grid must be non-empty and non-negative, got {list(grid)}")
    if len(cases) == 0:
        raise ValueError("no validation cases to choose the prior on")
    weights = sorted(set(grid))
    totals = dict.fromkeys(weights, 0.0)
    for start in range(0, len(cases), batch):
        hist = cases.histories[start : start + batch]
        targets = cases.targets[start : start + batch]
        scores = score(hist)
        for w in weights:
            fusion = FusionSettings(popularity_weight_warm=w)
            mixed = fuse_dense(
                scores, popularity, [fusion_weights(len(h), False, None, fusion) for h in hist]
            )
            ranks = target_ranks(mask_history(mixed, hist), targets)
            totals[w] += float(ndcg_per_case(ranks, k).sum())
    by_weight = {w: totals[w] / len(cases) for w in weights}
    best = max(weights, key=lambda w: (by_weight[w], -w))
    return PriorChoice(best, by_weight)
