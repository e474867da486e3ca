"""End-to-end training: dataset → text tower → sequence encoder → verified bundle.

``train_bundle(dataset, out_dir, config)`` is the entry point for the CLI, the
benchmark and the demo. Stages: split (leave-one-out or cold-item), tune the
text tower (frozen / full / LoRA), embed item texts once, train sequence
encoder + item residuals, measure offline metrics, export and check ONNX, write
the bundle aside and rename it into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from training.data.types import Dataset
from training.sequence_model import SequenceModelConfig
from training.sequence_train import SequenceTrainConfig
from training.text_finetune import TextTuneConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    text: TextTuneConfig = field(default_factory=TextTuneConfig)  # full fine-tune by default
    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    seq: SequenceTrainConfig = field(default_factory=SequenceTrainConfig)
    split: Literal["loo", "cold"] = "loo"  # cold: a seeded share of items never reaches training
    cold_frac: float = 0.1
    seed: int = 0
    threads: int = 2  # torch intra-op threads (the machines have 2 cores)
    exact_index_max: int = 100_000  # catalogs up to this size get an exact flat index
    int8: bool = True  # also write text_encoder.int8.onnx (quality and speed measured)
    n_queries: int = 500  # synthetic text queries for the text-only evaluation
    quick: bool = False
    cache_text_vectors: bool = True  # frozen tower only: reuse item vectors across runs
    text_model_dir: str | None = None  # a BERT directory instead of the packaged MiniLM (tests)

    @classmethod
    def quick_preset(cls, **overrides: Any) -> TrainConfig:
        """~1-3 min on ml-100k on 2 cores: frozen tower, few sequence epochs."""
        base = cls(
            text=TextTuneConfig(mode="frozen"),
            # disjoint windows, raw weights: the preset as measured before strides and averaging
            seq=SequenceTrainConfig(
                epochs=8,
                batch_size=64,
                patience=2,
                lr=5e-3,
                max_minutes=2.5,
                window_stride=None,
                ema_epochs=None,
            ),
            n_queries=300,
            quick=True,
        )
        return dataclasses.replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _load(dataset: str | Dataset) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from training.data import load_dataset

    return load_dataset(dataset)


def _version(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)
    return f"{safe}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


@dataclass
class Fitted:
    """The trained models of one run (torch), before export."""

    dataset: Dataset
    split: Any  # training.split.Split
    tokenizer: Any  # tokenizers.Tokenizer (truncation at cfg.text.max_length)
    text_encoder: Any  # item_space.ServingTextEncoder over the tuned tower (LoRA merged)
    sequence: Any  # training.sequence_train.SequenceTrainResult
    item_vectors: np.ndarray  # (N,D) float32, L2-normalised
    tune: Any  # training.text_finetune.TextTuneReport
    timings: dict[str, float] = field(default_factory=dict)


def make_split(ds: Dataset, cfg: TrainConfig) -> Any:
    from training.split import cold_item_split, leave_one_out

    if cfg.split == "cold":
        return cold_item_split(ds, frac=cfg.cold_frac, seed=cfg.seed)
    return leave_one_out(ds.interactions)


def fit(ds: Dataset, split: Any, cfg: TrainConfig, *, progress: bool = True) -> Fitted:
    """Tune the text tower, embed item texts, train the sequence encoder + residuals."""
    from training.item_space import ServingTextEncoder
    from training.metrics import evaluate
    from training.sequence_train import train_sequence_model
    from training.text_finetune import fine_tune_text
    from training.text_tower import (
        cached_text_vectors,
        encode_texts,
        load_text_encoder,
        minilm_dir,
        model_fingerprint,
    )
    from training.tokenization import load_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    catalog = ds.catalog
    n_items = len(catalog)
    log.info("dataset %s: %d items, %d test cases", ds.name, n_items, len(split.test))
    timings: dict[str, float] = {}

    t = time.perf_counter()
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", cfg.text.max_length)
    encoder = load_text_encoder(Path(cfg.text_model_dir) if cfg.text_model_dir else None)
    tune = fine_tune_text(encoder, tok, catalog, split.train_sequences, cfg.text, progress=progress)
    if cfg.text.mode == "frozen" and cfg.cache_text_vectors:
        from recstream.settings import Settings

        model_dir = Path(cfg.text_model_dir) if cfg.text_model_dir else minilm_dir()
        text_vectors = cached_text_vectors(
            encoder,
            tok,
            catalog.texts,
            Settings().cache_dir / "text-vectors",
            model_key=model_fingerprint(model_dir),
            progress=progress,
        )
    else:
        text_vectors = encode_texts(
            encoder, tok, catalog.texts, progress=progress, desc="embed items"
        )
    timings["text_s"] = time.perf_counter() - t

    rng = np.random.default_rng(cfg.seed)
    n_valid = len(split.valid)
    valid_subset = np.sort(
        rng.choice(n_valid, size=min(n_valid, cfg.seq.valid_users), replace=False)
    )

    def validate(score_fn: Any) -> dict[str, float]:
        return evaluate(score_fn, split.valid, n_items, subset=valid_subset, progress=False)

    t = time.perf_counter()
    result = train_sequence_model(
        split.train_sequences, text_vectors, validate, cfg.model, cfg.seq, progress=progress
    )
    timings["sequence_s"] = time.perf_counter() - t
    # serve the tower with the learned offset baked in: queries and new items then
    # land exactly where cold items were trained to be (item_space.ServingTextEncoder)
    serving = ServingTextEncoder(encoder, result.space.text_offset()).eval()
    return Fitted(ds, split, tok, serving, result, result.space.export(), tune, timings)


class TrainedScorer:
    """The bench hook's scorer (bench/quality.py): torch models, unmasked full-catalog scores."""

    def __init__(self, fitted: Fitted) -> None:
        from training.offline_eval import history_scorer, torch_user_fn

        self.fitted = fitted
        enc = fitted.sequence.encoder
        self._score = history_scorer(torch_user_fn(enc), fitted.item_vectors, enc.cfg.max_len)
        self.info = {
            "variant": fitted.tune.mode,
            "epochs": fitted.sequence.best_epoch,
            "epochs_run": len(fitted.sequence.history),
            **{k: round(v, 1) for k, v in fitted.timings.items()},
        }

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return self._score(histories)

    def query_scores(self, texts: list[str]) -> np.ndarray:
        from training.text_tower import encode_texts

        q = encode_texts(self.fitted.text_encoder, self.fitted.tokenizer, texts, progress=False)
        return q @ self.fitted.item_vectors.T


def train_and_score(
    dataset: Dataset,
    split: Any,
    *,
    seed: int = 0,
    time_budget_s: float | None = None,
    config: TrainConfig | None = None,
) -> TrainedScorer:
    """Bench hook (/work/wt/TRAINING_DATA_API.md): train on ``split`` with the default config."""
    cfg = config or TrainConfig()
    cfg = dataclasses.replace(
        cfg,
        seed=seed,
        text=dataclasses.replace(cfg.text, seed=seed),
        seq=dataclasses.replace(cfg.seq, seed=seed),
    )
    if time_budget_s is not None:  # the text stage gets at most a third of the budget
        minutes = time_budget_s / 60
        cfg = dataclasses.replace(
            cfg,
            text=dataclasses.replace(cfg.text, max_minutes=min(cfg.text.max_minutes, minutes / 3)),
            seq=dataclasses.replace(cfg.seq, max_minutes=minutes * 2 / 3),
        )
    return TrainedScorer(fit(dataset, split, cfg, progress=True))


def train_bundle(
    dataset: str | Dataset,
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Train on ``dataset`` (a name, a path, or a loaded Dataset) and write a bundle under
    ``out_dir``; returns the bundle directory ``out_dir/<version>``."""
    from training.bundle_files import popularity_prior, training_mask, write_items
    from training.bundle_io import discard_staging, finalize_bundle, staging_dir
    from training.index_build import build_index
    from training.offline_eval import (
        history_scorer,
        query_metrics,
        sequence_metrics,
        torch_user_fn,
    )
    from training.onnx_export import (
        check_sequence_parity,
        check_text_parity,
        export_sequence_encoder,
        export_text_encoder,
        onnx_text_vectors,
        quantize_int8,
        row_cosines,
        session,
        text_encoder_speed,
    )
    from training.prior_tuning import choose_warm_prior

    cfg = config or TrainConfig()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    ds = _load(dataset)
    split = make_split(ds, cfg)
    fitted = fit(ds, split, cfg, progress=progress)
    catalog, n_items = ds.catalog, len(ds.catalog)
    tok, encoder, result = fitted.tokenizer, fitted.text_encoder, fitted.sequence
    tune, timings, item_vectors = fitted.tune, fitted.timings, fitted.item_vectors

    # 3. offline metrics (torch path; `recstream evaluate` repeats them through ONNX)
    metrics: dict[str, Any] = {
        "test": sequence_metrics(result.encoder, item_vectors, split, progress=progress),
        "valid_best_ndcg@10": max(h["ndcg@10"] for h in result.history),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "window_stride": result.window_stride,
        "dropout": result.encoder.cfg.dropout,  # as trained ("auto" may lower it on large data)
        "text_tower": dataclasses.asdict(tune),
    }

    # the served popularity prior, and its weight for warm users chosen on validation
    keep = training_mask(ds.interactions)
    if len(split.cold_items):
        keep &= ~np.isin(ds.interactions.item, split.cold_items)
    popularity = popularity_prior(ds.interactions, n_items, keep=keep)
    prior = choose_warm_prior(
        history_scorer(torch_user_fn(result.encoder), item_vectors, result.encoder.cfg.max_len),
        split.valid,
        popularity,
    )
    metrics["fusion_prior"] = prior.to_dict()
    log.info("warm popularity weight %g (validation NDCG@10 by weight: %s)",
             prior.weight, prior.ndcg_by_weight)  # fmt: skip

    # 4. export
    root = Path(out_dir)
    version = _version(ds.name)
    stage = staging_dir(root, version)
    try:
        t = time.perf_counter()
        export_text_encoder(encoder, stage / "text_encoder.onnx")
        probe = [catalog.texts[i] for i in range(0, n_items, max(1, n_items // 16))][:16]
        probe += ["90s comedy", "a long, slow, sad french film about love and war in the 1960s"]
        export_checks: dict[str, Any] = {
            "text_parity_min_cos": check_text_parity(
                encoder, stage / "text_encoder.onnx", tok, probe
            )
        }
        fp32 = session(stage / "text_encoder.onnx")
        query_fp32 = query_metrics(
            lambda texts: onnx_text_vectors(fp32, tok, texts), item_vectors, catalog, cfg.n_queries
        )
        metrics["text_query"] = query_fp32
        speed = {"fp32": text_encoder_speed(fp32, tok, catalog.texts)}
        if cfg.int8:
            quantize_int8(stage / "text_encoder.onnx", stage / "text_encoder.int8.onnx")
            int8 = session(stage / "text_encoder.int8.onnx")
            sample = catalog.texts[: min(n_items, 512)]
            cos = row_cosines(
                onnx_text_vectors(fp32, tok, sample), onnx_text_vectors(int8, tok, sample)
            )
            query_int8 = query_metrics(
                lambda texts: onnx_text_vectors(int8, tok, texts),
                item_vectors,
                catalog,
                cfg.n_queries,
            )
            speed["int8"] = text_encoder_speed(int8, tok, catalog.texts)
            metrics["int8"] = {
                "cos_vs_fp32_mean": float(cos.mean()),
                "cos_vs_fp32_min": float(cos.min()),
                "text_query": query_int8,
                "genre_precision@10_delta": query_int8["genre_precision@10"]
                - query_fp32["genre_precision@10"],
            }
        metrics["text_encoder_speed"] = speed
        export_sequence_encoder(result.encoder, stage / "sequence_encoder.onnx")
        export_checks["sequence_parity_min_cos"] = check_sequence_parity(
            result.encoder, stage / "sequence_encoder.onnx", item_vectors, cfg.seed
        )
        metrics["export"] = export_checks

        tok.save(str(stage / "tokenizer.json"))
        write_items(catalog, stage / "items.jsonl")
        np.save(stage / "item_vectors.npy", item_vectors.astype(np.float32))
        np.save(stage / "popularity.npy", popularity)
        import faiss

        built = build_index(item_vectors, exact_max=cfg.exact_index_max)
        faiss.write_index(built.index, str(stage / "index.faiss"))
        timings["export_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        # CPU seconds of this process (all threads): on a shared machine wall time
        # is noisy, cpu_s / threads approximates the wall time on dedicated cores
        timings["total_cpu_s"] = time.process_time() - cpu_start
        metrics["timings"] = timings
        manifest = {
            "version": version,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dataset": ds.name,
            "dim": int(item_vectors.shape[1]),
            "text_encoder": {
                "file": "text_encoder.onnx",
                "int8_file": "text_encoder.int8.onnx" if cfg.int8 else None,
                "max_length": cfg.text.max_length,
            },
            "sequence_encoder": {
                "file": "sequence_encoder.onnx",
                "max_length": result.encoder.cfg.max_len,
            },
            "index": {
                "file": "index.faiss",
                "kind": built.kind,
                "metric": "inner_product",
                "params": built.params,
                "recall_at_10_vs_exact": built.recall_at_10,
            },
            "fusion": {"popularity_weight_warm": prior.weight},
            "n_items": n_items,
            "scale": result.scale,
            "config": cfg.to_dict(),
            "metrics": metrics,
        }
        if not cfg.int8:
            del manifest["text_encoder"]["int8_file"]
        final = finalize_bundle(stage, root, manifest)
    except BaseException:
        discard_staging(stage)
        raise
    log.info("bundle %s written in %.1fs", final, time.perf_counter() - t_start)
    return final
