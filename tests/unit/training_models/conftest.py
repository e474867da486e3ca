"""Factories for the training-models tests: small synthetic catalogs and a tiny BERT."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # tiny tensors: a second thread only adds sync cost
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cyclic_sequences(n_items: int, n_users: int, length: int, seed: int) -> list[np.ndarray]:
    """Each user walks the catalog: item i is always followed by item i+1 (mod N)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, size=n_users)
    return [((s + np.arange(length)) % n_items).astype(np.int32) for s in starts]


def random_unit(n: int, d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised BERT with MiniLM's vocabulary (so the real tokenizer fits)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(cfg).save_pretrained(str(path))
    return path
