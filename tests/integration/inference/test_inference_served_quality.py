"""The served fusion is as good as the trained model, on a real ml-100k bundle.

Trains a real quick bundle (``TrainConfig.quick_preset()``, frozen MiniLM tower,
a short sequence stage, real ONNX + FAISS) once for the module, then serves the
bundle's leave-one-out test users and the offline evaluator's synthetic text
queries through ``OnnxRecommender.recommend_batch`` (bench/serving_quality.py)
and compares with ``training.evaluate_bundle`` on the same cases. No Kafka.

Set ``RECSTREAM_TEST_ML100K_BUNDLE`` to an existing ml-100k bundle directory to
skip the training (~1-2 min on 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.serving_quality import BEFORE, compare
from inference.settings import FusionSettings

pytestmark = pytest.mark.slow

TEXT_TOLERANCE = 0.02  # genre P@10 over 300 queries: a few queries' worth
WARM_TOLERANCE = 0.005  # NDCG@10 over the same ~940 users (paired, so tight)


@pytest.fixture(scope="module")
def ml100k_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("RECSTREAM_TEST_ML100K_BUNDLE")
    if given:
        return Path(given)
    from training.sequence_train import SequenceTrainConfig
    from training.train import TrainConfig, train_bundle

    cfg = TrainConfig.quick_preset(
        seq=SequenceTrainConfig(
            epochs=3, batch_size=64, patience=2, lr=5e-3, max_minutes=1.0, window_stride=None
        ),
        int8=False,
        n_queries=100,
    )
    from recstream.settings import Settings

    out = tmp_path_factory.mktemp("bundles")
    # the frozen tower's item vectors come from the shared cache, as for `recstream train`
    return train_bundle("ml-100k", out, cfg, progress=False, cache_dir=Settings().cache_dir)


def test_served_fusion_matches_the_offline_evaluator(ml100k_bundle: Path) -> None:
    from training.data import load_dataset

    fusions = {
        "default": FusionSettings(),
        "before": BEFORE,  # raw scores: what the calibration replaced
        # the old default: 0.3 plus the 0.05 floor with no history
        "crowded": BEFORE.model_copy(update={"popularity_weight": 0.35}),
    }
    offline, served = compare(
        ml100k_bundle, load_dataset("ml-100k"), fusions=fusions, n_queries=300, progress=False
    )
    got = served["default"]
    summary = f"offline {offline}\nserved {got}"
    print(summary)  # shown with -rA: the figures of this run's bundle
    assert got.text["n_queries"] == 300 and got.warm["n_cases"] > 900, summary
    # the model learned something, or the comparison below means nothing
    assert offline["genre_precision@10"] > 0.5 and offline["ndcg@10"] > 0.02, summary
    assert got.text["genre_precision@10"] >= offline["genre_precision@10"] - TEXT_TOLERANCE, summary
    assert got.warm["ndcg@10"] >= offline["ndcg@10"] - WARM_TOLERANCE, summary
    # the check can fail: raw mixing with a strong popularity prior falls well short
    crowded = served["crowded"].text["genre_precision@10"]
    assert crowded < offline["genre_precision@10"] - TEXT_TOLERANCE, (crowded, summary)
    # a fresh query moves a warm user's list toward its genre more than raw mixing did
    wq, wq_before = got.warm_query["genre_precision@10"], served["before"].warm_query
    assert wq > wq_before["genre_precision@10"], (wq, wq_before, summary)
