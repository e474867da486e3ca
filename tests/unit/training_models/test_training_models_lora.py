"""Hand-written LoRA: starts as the base model, trains ~1% of parameters, merges exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from training.lora import LoRALinear, apply_lora, merge_lora
from training.text_tower import load_text_encoder


def test_lora_wraps_attention_and_merges_exactly(tiny_bert_dir: Path) -> None:
    enc = load_text_encoder(tiny_bert_dir).eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        before = enc(ids, mask)
    n = apply_lora(enc.bert, rank=4, alpha=8.0)
    wrapped = [m for m in enc.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 4 * 2  # q, k, v, attention output in each of 2 layers
    assert n == sum(p.numel() for p in enc.parameters() if p.requires_grad)
    with torch.no_grad():
        assert torch.allclose(enc(ids, mask), before, atol=1e-6)  # B = 0 at init
        for m in wrapped:
            m.lora_b.normal_(std=0.1)
        tuned = enc(ids, mask)
    assert not torch.allclose(tuned, before, atol=1e-3)
    merge_lora(enc.bert)
    assert not any(isinstance(m, LoRALinear) for m in enc.modules())
    with torch.no_grad():
        assert torch.allclose(enc(ids, mask), tuned, atol=1e-5)
