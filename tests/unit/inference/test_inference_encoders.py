"""Text and sequence encoders over the tiny bundle's real ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.encoders import SequenceEncoder, TextEncoder
from inference.providers import OnnxPlan
from inference.recommender import OnnxRecommender
from inference.settings import InferenceSettings

CPU1 = OnnxPlan(("CPUExecutionProvider",), 1)


def _text(bundle: Path, max_length: int = 16, name: str = "text_encoder.onnx") -> TextEncoder:
    return TextEncoder(bundle / name, bundle / "tokenizer.json", CPU1, max_length)


def test_overlong_text_is_truncated_and_counted(flat_bundle: Path) -> None:
    enc = _text(flat_bundle, max_length=8)
    words = [
        "funny",
        "comedy",
        "laugh",
        "jokes",
        "hilarious",
        "film",
        "about",
        "a",
        "story",
    ]  # 9 tokens
    long_text = " ".join(words + ["horror"] * 30)
    out = enc.encode(["funny comedy", long_text, " ".join(words[:8])])
    assert (enc.truncated, enc.encoded) == (1, 3)
    # Truncation keeps the first 8 tokens: the 30 trailing "horror" do not count.
    assert np.allclose(out[1], out[2], atol=1e-6)
    enc.encode([long_text, long_text])
    assert enc.truncated == 3


def test_batch_equals_single_and_vectors_are_unit(flat_bundle: Path) -> None:
    enc = _text(flat_bundle)
    texts = ["scary ghost", "a love story with a wedding", "", "robot ALIEN space!!"]
    batch = enc.encode(texts)
    single = np.stack([enc.encode([t])[0] for t in texts])
    assert batch.shape == (4, 32) and batch.dtype == np.float32
    assert np.allclose(batch, single, atol=1e-6)
    nonempty = np.linalg.norm(batch[[0, 1, 3]], axis=1)
    assert np.allclose(nonempty, 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, 32)


def test_genre_words_land_near_their_genre(flat_bundle: Path) -> None:
    enc = _text(flat_bundle)
    comedy, horror, scary = enc.encode(["funny jokes", "monster fear", "scary ghost"])
    assert scary @ horror > scary @ comedy + 0.3


def test_int8_variant_is_served_by_default_and_fp32_on_request(flat_bundle: Path) -> None:
    assert OnnxRecommender.load(flat_bundle).text_encoder.model_path.name == (
        "text_encoder.int8.onnx"
    )
    fp32 = OnnxRecommender.load(flat_bundle, InferenceSettings(prefer_int8=False))
    int8 = OnnxRecommender.load(
        flat_bundle, InferenceSettings(prefer_int8=True, text_max_length=12)
    )
    assert fp32.text_encoder.model_path.name == "text_encoder.onnx"
    assert int8.text_encoder.model_path.name == "text_encoder.int8.onnx"
    assert int8.text_encoder.max_length == 12
    texts = ["funny comedy", "space robot future"]
    cos = np.sum(fp32.encode_texts(texts) * int8.encode_texts(texts), axis=1)
    assert np.all(cos > 0.99)


def test_sequence_is_left_padded_and_recent_items_weigh_most(flat_bundle: Path) -> None:
    vectors = np.load(flat_bundle / "item_vectors.npy")
    enc = SequenceEncoder(flat_bundle / "sequence_encoder.onnx", CPU1, max_length=20, dim=32)
    seq, mask = enc.pack([np.array([5, 7])], vectors)
    assert mask[0].tolist() == [0.0] * 18 + [1.0, 1.0]
    assert np.array_equal(seq[0, -1], vectors[7]) and not seq[0, :18].any()
    comedy, horror = 0, 1  # rows 0 and 1 are comedy and horror
    ends_horror, ends_comedy = enc.encode(
        [np.array([comedy, horror]), np.array([horror, comedy])], vectors
    )
    assert ends_horror @ vectors[horror] > ends_horror @ vectors[comedy]
    assert ends_comedy @ vectors[comedy] > ends_comedy @ vectors[horror]
    # Longer than max_length: only the 20 most recent count.
    long = np.arange(100)
    assert np.allclose(enc.encode([long], vectors), enc.encode([long[-20:]], vectors), atol=1e-6)


def test_length_groups_cover_every_text_once_and_split_short_from_long() -> None:
    from inference.encoders import length_groups

    lengths = np.array([5, 40, 6, 5, 41, 7, 39, 6])
    groups = length_groups(lengths)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    spans = [(int(lengths[g].min()), int(lengths[g].max())) for g in groups]
    assert spans == sorted(spans)  # runs of the sorted lengths
    assert any(hi <= 7 for _, hi in spans) and any(lo >= 39 for lo, _ in spans)
    assert len(length_groups(np.full(10, 9))) == 1  # nothing to gain from a second call


def test_grouped_text_batches_give_the_vectors_of_one_call(flat_bundle: Path) -> None:
    enc = _text(flat_bundle)  # fp32: vectors do not depend on the batch
    texts = ["funny", "a long story about a detective and a ghost in space", "war", "kids"]
    np.testing.assert_allclose(enc.encode(texts), enc.encode(texts, group=False), atol=1e-5)
