"""Cold items (no training interaction) must stay reachable through their text vectors.

The synthetic catalog has topical clusters: an item's text vector is its cluster's
centre plus noise, users consume items of one cluster, and one item per cluster
never occurs in training. After training, the cluster's cold item should score
like the cluster's warm items for a user deep in that cluster: its text is as
on-topic as theirs. An encoder trained with cold items as softmax negatives (always
negatives, never positives) learns to steer away from them and fails this.
"""

from __future__ import annotations

import numpy as np
import torch

from training.metrics import evaluate, mask_history
from training.sequence_model import SequenceEncoder, SequenceModelConfig
from training.sequence_train import (
    NOT_A_CANDIDATE,
    SequenceScorer,
    SequenceTrainConfig,
    candidate_bias,
    train_sequence_model,
)
from training.split import EvalCases

N_CLUSTERS, PER_CLUSTER, DIM = 6, 8, 16
N_ITEMS = N_CLUSTERS * PER_CLUSTER
MODEL = SequenceModelConfig(dim=DIM, d_model=32, n_layers=1, n_heads=2, max_len=8, dropout=0.0)
TRAIN = SequenceTrainConfig(
    epochs=30, batch_size=64, lr=1e-2, patience=30, residual_dropout=0.2, bf16=False, seed=0
)


def _catalog() -> tuple[np.ndarray, np.ndarray]:
    """(N,D) unit text vectors clustered by topic, and the (C,) cold item rows (one per cluster)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_CLUSTERS, DIM))
    text = np.repeat(centres, PER_CLUSTER, axis=0) + 0.35 * rng.standard_normal((N_ITEMS, DIM))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    cold = np.arange(N_CLUSTERS) * PER_CLUSTER  # the first item of every cluster
    return text, cold


def _sequences(cold: np.ndarray, n_users: int, length: int, seed: int) -> list[np.ndarray]:
    """Each user draws ``length`` items of one cluster, skipping the cold ones."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        c = rng.integers(N_CLUSTERS)
        pool = np.setdiff1d(np.arange(c * PER_CLUSTER, (c + 1) * PER_CLUSTER), cold)
        out.append(rng.choice(pool, size=length).astype(np.int32))
    return out


def test_softmax_candidates_are_the_trained_items_only() -> None:
    warm = np.array([True, False, True, True, False])
    bias = candidate_bias(warm)
    assert bias.tolist() == [0.0, NOT_A_CANDIDATE, 0.0, 0.0, NOT_A_CANDIDATE]
    # through the bf16 logit product the untrained items get no probability at all
    enc = SequenceEncoder(SequenceModelConfig(dim=8, d_model=8, max_len=4)).eval()
    items = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = enc.head_logits(torch.randn(3, 8), items, torch.tensor(20.0), bias)
    probs = torch.softmax(logits.float(), dim=-1)
    assert probs[:, [1, 4]].max().item() == 0.0
    assert torch.allclose(probs[:, [0, 2, 3]].sum(-1), torch.ones(3))


def test_cold_items_compete_with_their_on_topic_warm_rivals() -> None:
    torch.manual_seed(0)
    text, cold = _catalog()
    train = _sequences(cold, n_users=200, length=12, seed=1)
    held = _sequences(cold, n_users=60, length=6, seed=2)
    valid = EvalCases(
        users=np.arange(60, dtype=np.int32),
        histories=[s[:-1] for s in held],
        targets=np.asarray([s[-1] for s in held], np.int32),
    )
    result = train_sequence_model(
        train,
        text,
        lambda f: evaluate(f, valid, N_ITEMS, progress=False),
        MODEL,
        TRAIN,
        progress=False,
    )
    assert not result.space.warm[cold].any()  # the cold items were really never trained
    with torch.no_grad():
        scorer = SequenceScorer(result.encoder, result.space())
    scores = mask_history(scorer(valid.histories), valid.histories)
    # per case: the share of the cluster's warm items, not yet consumed, that score
    # below the cluster's cold item. Text-wise they are equally on-topic, so an
    # unbiased model puts the cold item mid-pack (~0.5); trained as an
    # always-negative it lands below every one of them (measured: 0.00-0.02).
    beaten = []
    for row, seq in enumerate(held):
        cluster = int(seq[0]) // PER_CLUSTER
        target = cold[cluster]
        members = range(cluster * PER_CLUSTER, (cluster + 1) * PER_CLUSTER)
        rivals = [j for j in members if j != target and np.isfinite(scores[row, j])]
        if rivals:
            beaten.append(float(np.mean(scores[row, target] > scores[row, rivals])))
    assert len(beaten) >= 50
    assert np.mean(beaten) >= 0.1  # measured 0.22-0.53 over 4 seeds; 0.00-0.02 before
