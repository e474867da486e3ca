"""Text tower helpers: the frozen-vector cache and the tuning modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import training.text_tower as text_tower
from training.data.types import Catalog
from training.text_finetune import TextTuneConfig, fine_tune_text
from training.text_tower import (
    cached_text_vectors,
    load_text_encoder,
    minilm_dir,
    model_fingerprint,
)
from training.tokenization import load_tokenizer

TEXTS = ["Heat (1995). Action, Crime.", "Babe (1995). Children's, Comedy.", "Alien (1979). Horror."]


def _catalog() -> Catalog:
    return Catalog(
        item_ids=["1", "2", "3"],
        titles=["Heat", "Babe", "Alien"],
        texts=TEXTS,
        attributes=[
            {"year": 1995, "genres": ["Action", "Crime"]},
            {"year": 1995, "genres": ["Children's", "Comedy"]},
            {"year": 1979, "genres": ["Horror"]},
        ],
    )


def test_frozen_vectors_are_cached_on_disk(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = load_text_encoder(tiny_bert_dir)
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", 16)
    key = model_fingerprint(tiny_bert_dir)
    first = cached_text_vectors(enc, tok, TEXTS, tmp_path, model_key=key, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("encoded again despite the cache")

    monkeypatch.setattr(text_tower, "encode_texts", boom)
    again = cached_text_vectors(enc, tok, TEXTS, tmp_path, model_key=key, progress=False)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(AssertionError, match="encoded again"):  # other texts: a new key
        cached_text_vectors(enc, tok, TEXTS[:2], tmp_path, model_key=key, progress=False)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_tuning_moves_the_tower_and_frozen_does_not(tiny_bert_dir: Path, mode: str) -> None:
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", 16)
    seqs = [np.array([0, 1, 2, 0, 1, 2])] * 4
    frozen = load_text_encoder(tiny_bert_dir)
    before = [p.detach().clone() for p in frozen.parameters()]
    report = fine_tune_text(frozen, tok, _catalog(), seqs, TextTuneConfig(mode="frozen"))
    assert report.trainable_params == 0
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.parameters(), strict=True))

    enc = load_text_encoder(tiny_bert_dir)
    cfg = TextTuneConfig(mode=mode, steps=2, batch_size=4, lr_full=1e-3, max_length=16)
    report = fine_tune_text(enc, tok, _catalog(), seqs, cfg, progress=False)
    assert report.steps == 2 and np.isfinite(report.final_loss)
    share = report.trainable_params / report.total_params
    assert share == 1.0 if mode == "full" else 0.0 < share < 0.1
    changed = [not torch.equal(a, b) for a, b in zip(before, enc.parameters(), strict=True)]
    assert any(changed)
    assert not any(p.requires_grad for p in enc.parameters())  # left frozen for export
