"""Training end to end on recstream's own event-log format (tiny), then evaluating the
bundle through ONNX exactly as `recstream evaluate` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inference.bundle import verify_bundle
from inference.recommender import OnnxRecommender
from tests.unit.training_models.conftest import cyclic_sequences
from training.data import load_dataset
from training.evaluate_bundle import evaluate_bundle
from training.prior_tuning import GRID
from training.sequence_model import SequenceModelConfig
from training.sequence_train import SequenceTrainConfig
from training.text_finetune import TextTuneConfig
from training.train import TrainConfig, train_bundle

N_ITEMS = 24
GENRES = ["Comedy", "Drama", "Horror", "Action"]


def _write_event_log(path: Path) -> None:
    lines = []
    for i in range(N_ITEMS):
        lines.append(
            {
                "topic": "item-updates",
                "value": {
                    "item_id": f"m{i}",
                    "op": "upsert",
                    "title": f"Movie number {i}",
                    "attributes": {"year": 1970 + i, "genres": [GENRES[i % 4]]},
                    "ts": 1.0,
                },
            }
        )
    for u, seq in enumerate(cyclic_sequences(N_ITEMS, n_users=60, length=10, seed=0)):
        for t, item in enumerate(seq):
            event = {"event_id": f"e{u}-{t}", "user_id": f"u{u}", "item_id": f"m{item}"}
            lines.append(
                {"topic": "user-events", "value": {**event, "type": "click", "ts": 100.0 + t}}
            )
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


@pytest.fixture(scope="module")
def trained(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    log = root / "events.jsonl"
    _write_event_log(log)
    cfg = TrainConfig(
        text=TextTuneConfig(mode="lora", steps=3, batch_size=8, max_length=16),
        model=SequenceModelConfig(
            dim=32, d_model=32, n_layers=1, n_heads=2, max_len=8, dropout=0.0
        ),
        seq=SequenceTrainConfig(epochs=15, batch_size=32, lr=1e-2, patience=15, bf16=False),
        n_queries=20,
        threads=1,
        text_model_dir=str(tiny_bert_dir),
    )
    bundle = train_bundle(str(log), root / "bundles", cfg, progress=False)
    return bundle, log


def test_bundle_is_complete_and_learned_the_pattern(trained: tuple[Path, Path]) -> None:
    bundle, _ = trained
    manifest = verify_bundle(bundle).model_dump()
    assert set(manifest["files"]) == {
        "text_encoder.onnx",
        "text_encoder.int8.onnx",
        "sequence_encoder.onnx",
        "sequence_item_input.onnx",
        "sequence_core.onnx",
        "tokenizer.json",
        "items.jsonl",
        "item_vectors.npy",
        "popularity.npy",
        "index.faiss",
    }
    assert manifest["index"]["kind"] == "flat" and manifest["dim"] == 32
    vectors = np.load(bundle / "item_vectors.npy")
    assert vectors.shape == (N_ITEMS, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    metrics = manifest["metrics"]
    assert metrics["test"]["all"]["hr@10"] >= 0.9  # the successor pattern, via item vectors
    assert metrics["export"]["sequence_parity_min_cos"] > 0.999
    assert metrics["export"]["sequence_split_parity_min_cos"] > 0.999
    assert manifest["sequence_encoder"]["split"] == {
        "item_input_file": "sequence_item_input.onnx",
        "core_file": "sequence_core.onnx",
    }
    assert metrics["text_tower"]["trainable_params"] > 0  # LoRA ran
    # the served prior's warm weight was chosen on validation and travels to serving
    prior = metrics["fusion_prior"]
    by_weight = {float(w): v for w, v in prior["valid_ndcg@10_by_weight"].items()}
    assert set(by_weight) == set(GRID)
    assert manifest["fusion"]["popularity_weight_warm"] == prior["popularity_weight_warm"]
    assert by_weight[prior["popularity_weight_warm"]] == max(by_weight.values())
    assert (
        OnnxRecommender.load(bundle).settings.fusion.popularity_weight_warm
        == (prior["popularity_weight_warm"])
    )


def test_split_sequence_encoder_serves_what_the_whole_graph_served(
    trained: tuple[Path, Path],
) -> None:
    """The split graphs (item inputs in the index) rank as the whole graph padded to
    max_length did, the pre-issue-24 path (inference.testing.reference_recommend_batch)."""
    from inference.settings import InferenceSettings
    from inference.testing import reference_recommend_batch
    from inference.types import Request

    bundle, _ = trained
    split = OnnxRecommender.load(bundle)
    whole = OnnxRecommender.load(bundle, InferenceSettings(sequence_split=False))
    assert split.sequence_encoder.split and not whole.sequence_encoder.split
    ids = [f"m{r}" for r in range(N_ITEMS)]
    rng = np.random.default_rng(0)
    reqs = [
        Request(f"u{i}", history=list(rng.choice(ids, size=int(rng.integers(1, 12)))), k=5)
        for i in range(24)
    ]
    got = [[it.item_id for it in r.items] for r in split.recommend_batch(reqs)]
    assert sum("sequence" in it.sources for r in split.recommend_batch(reqs) for it in r.items)
    assert got == [[it.item_id for it in r.items] for r in whole.recommend_batch(reqs)]
    assert got == [[it.item_id for it in r] for r in reference_recommend_batch(split, reqs)]
    split.upsert_item("new-item", "A new item", "a brand new item")  # its input follows
    row = split.index.row("new-item")
    assert row is not None
    np.testing.assert_allclose(
        split.index.sequence_inputs[row],
        split.sequence_encoder.item_inputs(split.index.vectors[row][None])[0],
        atol=1e-6,
    )


def test_onnx_evaluation_matches_training_metrics(trained: tuple[Path, Path]) -> None:
    bundle, log = trained
    manifest = verify_bundle(bundle).model_dump()
    result = evaluate_bundle(bundle, load_dataset(str(log)), n_queries=20, progress=False)
    torch_ndcg = manifest["metrics"]["test"]["all"]["ndcg@10"]
    assert result["sequence"]["all"]["ndcg@10"] == pytest.approx(torch_ndcg, abs=0.02)
    assert 0.0 <= result["text_query_int8"]["genre_precision@10"] <= 1.0


def test_cli_evaluate_refuses_a_tampered_bundle(trained: tuple[Path, Path]) -> None:
    from recstream.cli import app

    bundle, log = trained
    runner = CliRunner()
    ok = runner.invoke(
        app,
        ["evaluate", "--bundle", str(bundle), "--dataset", str(log), "--queries", "10", "--json"],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sequence"]["all"]["n_cases"] == 60
    np.save(bundle / "item_vectors.npy", np.zeros((N_ITEMS, 32), np.float32))
    bad = runner.invoke(app, ["evaluate", "--bundle", str(bundle), "--dataset", str(log)])
    assert bad.exit_code == 1
    assert "sha256" in bad.output


@pytest.mark.parametrize("stride", ["0", "51"])
def test_cli_train_refuses_a_window_stride_outside_the_window(stride: str, tmp_path: Path) -> None:
    from recstream.cli import app

    result = CliRunner().invoke(
        app, ["train", "--window-stride", stride, "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 2
    assert "--window-stride" in result.output and "1..50" in result.output
    assert not (tmp_path / "b").exists()  # refused before any training


@pytest.mark.parametrize("p", ["1", "-0.1"])
def test_cli_train_refuses_a_dropout_outside_0_to_1(p: str, tmp_path: Path) -> None:
    from recstream.cli import app

    result = CliRunner().invoke(app, ["train", "--dropout", p, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "--dropout" in result.output and "[0, 1)" in result.output
    assert not (tmp_path / "b").exists()  # refused before any training


def test_cli_train_refuses_a_negative_ema_horizon(tmp_path: Path) -> None:
    from recstream.cli import app

    result = CliRunner().invoke(app, ["train", "--ema-epochs", "-1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "--ema-epochs" in result.output
    assert not (tmp_path / "b").exists()  # refused before any training
