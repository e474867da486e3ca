"""ONNX export parity (cos > 0.999 on padded mixed-length batches) and int8 quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.training_models.conftest import random_unit
from training.errors import TrainingError
from training.onnx_export import (
    check_sequence_parity,
    check_split_parity,
    check_text_parity,
    export_sequence_encoder,
    export_sequence_split,
    export_text_encoder,
    onnx_text_vectors,
    quantize_int8,
    row_cosines,
    session,
)
from training.sequence_model import SequenceEncoder, SequenceModelConfig
from training.text_tower import encode_texts, load_text_encoder, minilm_dir
from training.tokenization import encode_batch, load_tokenizer

TEXTS = [
    "Toy Story (1995). Animation, Children's, Comedy.",
    "a",
    "90s comedy movies",
    "The Usual Suspects (1995). Crime, Thriller. A long description that is cut at max length",
]


def _tok():
    return load_tokenizer(minilm_dir() / "tokenizer.json", max_length=16)


def test_text_encoder_parity_and_int8(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = load_text_encoder(tiny_bert_dir)
    tok = _tok()
    _ids, mask = encode_batch(tok, TEXTS)
    assert mask.sum(1).min() < mask.shape[1]  # the batch really is padded
    path = tmp_path / "text.onnx"
    export_text_encoder(enc, path)
    assert check_text_parity(enc, path, tok, TEXTS) > 0.999
    # a batch of another length and size runs through the dynamic axes
    got = onnx_text_vectors(session(path), tok, [*TEXTS[:2], "x " * 40])
    assert got.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    quantize_int8(path, tmp_path / "text.int8.onnx")
    q = onnx_text_vectors(session(tmp_path / "text.int8.onnx"), tok, TEXTS)
    ref = encode_texts(enc, tok, TEXTS, progress=False)
    assert row_cosines(ref, q).min() > 0.9


def test_text_parity_failure_is_an_error(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = load_text_encoder(tiny_bert_dir)
    path = tmp_path / "text.onnx"
    export_text_encoder(enc, path)
    with torch.no_grad():  # the torch model drifts after export: parity must catch it
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    with pytest.raises(TrainingError, match="parity"):
        check_text_parity(enc, path, _tok(), TEXTS)


def test_sequence_encoder_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = SequenceModelConfig(dim=24, d_model=16, n_layers=2, n_heads=2, max_len=12)
    enc = SequenceEncoder(cfg)
    for p in enc.parameters():  # move off the init so parity is tested on a non-trivial net
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else None
    path = tmp_path / "seq.onnx"
    export_sequence_encoder(enc, path)
    assert check_sequence_parity(enc, path, random_unit(50, 24, seed=0)) > 0.999


def _trained_like_sequence_encoder() -> SequenceEncoder:
    torch.manual_seed(0)
    cfg = SequenceModelConfig(dim=24, d_model=16, n_layers=2, n_heads=2, max_len=12)
    enc = SequenceEncoder(cfg)
    for p in enc.parameters():  # move off the init so parity is tested on a non-trivial net
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else None
    return enc.eval()


def test_split_sequence_encoder_equals_the_whole_graph(tmp_path: Path) -> None:
    enc = _trained_like_sequence_encoder()
    items = random_unit(50, 24, seed=1)
    export_sequence_split(enc, tmp_path / "input.onnx", tmp_path / "core.onnx")
    assert check_split_parity(enc, tmp_path / "input.onnx", tmp_path / "core.onnx", items) > 0.999
    # torch itself: the latest position's state alone is the full forward's last state
    x = torch.from_numpy(items[:6][None].repeat(3, 0))  # (3, 6, 24)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 0, 0, 0, 0, 1]], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(enc.head(enc.last_state(enc.in_proj(x), mask)), enc(x, mask))
    with torch.no_grad():  # a drifted model fails the check
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    with pytest.raises(TrainingError, match="parity"):
        check_split_parity(enc, tmp_path / "input.onnx", tmp_path / "core.onnx", items)


def test_served_sequence_encoder_buckets_and_split_agree_with_torch(tmp_path: Path) -> None:
    """inference.SequenceEncoder pads each history to its length's bucket only, and reads
    precomputed item inputs when split: both give torch's vectors."""
    from inference.encoders import SequenceEncoder as Served
    from inference.providers import OnnxPlan

    enc = _trained_like_sequence_encoder()
    items = random_unit(50, 24, seed=2)
    export_sequence_encoder(enc, tmp_path / "seq.onnx")
    export_sequence_split(enc, tmp_path / "input.onnx", tmp_path / "core.onnx")
    plan = OnnxPlan(("CPUExecutionProvider",), 1)
    whole = Served(tmp_path / "seq.onnx", plan, 12, 24)
    split = Served(tmp_path / "core.onnx", plan, 12, 24, item_input=tmp_path / "input.onnx")
    assert not whole.split and split.split
    assert [whole.bucket(n) for n in (1, 8, 9, 12)] == [8, 8, 12, 12]
    rng = np.random.default_rng(0)
    hist = [rng.integers(0, 50, size=n) for n in (1, 3, 9, 12, 20)]  # 20: cut to the last 12
    x = np.zeros((5, 12, 24), np.float32)
    m = np.zeros((5, 12), np.float32)
    for i, h in enumerate(hist):
        h = h[-12:]
        x[i, 12 - len(h) :], m[i, 12 - len(h) :] = items[h], 1.0
    with torch.no_grad():
        ref = enc(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    inputs = split.item_inputs(items)
    assert inputs.shape == (50, 16)
    assert row_cosines(ref, whole.encode(hist, items)).min() > 0.99999
    assert row_cosines(ref, split.encode(hist, inputs)).min() > 0.99999
    one = split.encode(hist[:1], inputs)  # a user's vector does not depend on the batch
    np.testing.assert_allclose(one[0], split.encode(hist, inputs)[0], atol=1e-6)


@pytest.mark.slow
def test_real_minilm_parity(tmp_path: Path) -> None:
    enc = load_text_encoder()
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", max_length=32)
    path = tmp_path / "minilm.onnx"
    export_text_encoder(enc, path)
    assert check_text_parity(enc, path, tok, TEXTS) > 0.999
    v = encode_texts(
        enc, tok, ["a funny animated film", "Toy Story (1995). Animation.", "war"], progress=False
    )
    assert v[0] @ v[1] > v[0] @ v[2]  # the pretrained tower carries meaning


def test_served_text_encoder_bakes_in_the_shared_offset(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from training.item_space import ServingTextEncoder

    tower = load_text_encoder(tiny_bert_dir)
    shared = torch.randn(32) * 0.5
    served = ServingTextEncoder(tower, shared)
    tok = _tok()
    path = tmp_path / "served.onnx"
    export_text_encoder(served, path)
    assert check_text_parity(served, path, tok, TEXTS) > 0.999
    plain = encode_texts(tower, tok, TEXTS, progress=False)
    expected = plain + shared.numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(onnx_text_vectors(session(path), tok, TEXTS), expected, atol=1e-5)
