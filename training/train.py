"""End-to-end training: dataset → text tower → sequence encoder → verified bundle.

``train_bundle(dataset, out_dir, config)`` is the entry point for the CLI, the
benchmark and the demo. Its steps, each a function below: split (leave-one-out
or cold-item); :func:`fit` (tune the text tower (frozen / full / LoRA), embed item
texts once, train sequence encoder + item residuals); :func:`offline_metrics`;
:func:`served_prior` (the popularity prior and its warm weight, chosen on
validation); then, in a staging directory of the one bundle writer
(:mod:`inference.bundle.writer`): :func:`export_encoders` (ONNX, parity and
quality checks, int8), :func:`write_catalog`, :func:`write_index`,
:func:`bundle_manifest`, and the seal that renames it into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer

from inference.bundle.manifest import (
    INDEX,
    ITEM_VECTORS,
    ITEMS,
    POPULARITY,
    SEQUENCE_CORE,
    SEQUENCE_ENCODER,
    SEQUENCE_ITEM_INPUT,
    TEXT_ENCODER,
    TEXT_ENCODER_INT8,
    TOKENIZER,
    FusionEntry,
    IndexEntry,
    Manifest,
    PopularityEntry,
    SequenceEncoderEntry,
    SequenceSplitEntry,
    TemporalSplitEntry,
    TextEncoderEntry,
)
from inference.bundle.writer import staging
from training.data.types import Dataset
from training.index_build import BuiltIndex
from training.item_space import ServingTextEncoder
from training.prior_tuning import PriorChoice
from training.sequence_model import SequenceModelConfig
from training.sequence_train import SequenceTrainConfig, SequenceTrainResult
from training.split import Split
from training.text_finetune import TextTuneConfig, TextTuneReport
from training.text_tower import TextEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    text: TextTuneConfig = field(default_factory=TextTuneConfig)  # full fine-tune by default
    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    seq: SequenceTrainConfig = field(default_factory=SequenceTrainConfig)
    # cold: a seeded share of items never reaches training; temporal: only what happened
    # before the split_at-quantile interaction's time T (training.split.known_before)
    split: Literal["loo", "cold", "temporal"] = "loo"
    cold_frac: float = 0.1
    split_at: float = 0.7  # temporal: the quantile of interactions (in time order) at T
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
    split: Split
    tokenizer: Tokenizer  # truncation at cfg.text.max_length
    text_encoder: ServingTextEncoder  # over the tuned tower (LoRA merged), offset baked in
    sequence: SequenceTrainResult
    item_vectors: np.ndarray  # (N,D) float32, L2-normalised
    tune: TextTuneReport
    timings: dict[str, float] = field(default_factory=dict)


def training_view(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, dict[str, Any]]:
    """The data training may see, and what the manifest records about the cut.

    A temporal split trains on the dataset as known at T (interactions before it,
    the items and users they touch); the others on the whole dataset.
    """
    if cfg.split != "temporal":
        return ds, {}
    from training.split import known_before, split_time

    t = split_time(ds.interactions, cfg.split_at)
    known = known_before(ds, t)
    info = {
        "split_at": cfg.split_at,
        "time": t,
        "interactions_before": len(known.interactions),
        "interactions_after": len(ds.interactions) - len(known.interactions),
        "items_before": len(known.catalog),
    }
    log.info("temporal split at %s (quantile %g): %s", t, cfg.split_at, info)
    return known, info


def make_split(ds: Dataset, cfg: TrainConfig) -> Split:
    """Evaluation cases of ``ds`` (for a temporal split, ``ds`` is already its training view:
    leave-one-out inside the pre-T data drives early stopping and the manifest metrics)."""
    from training.split import cold_item_split, leave_one_out

    if cfg.split == "cold":
        return cold_item_split(ds, frac=cfg.cold_frac, seed=cfg.seed)
    return leave_one_out(ds.interactions)


@dataclass
class TunedText:
    """The text stage of one run: the tuned tower and the catalog's text vectors."""

    tokenizer: Tokenizer  # truncation at cfg.text.max_length
    encoder: TextEncoder  # the tuned tower (LoRA merged), no offset yet
    text_vectors: np.ndarray  # (N,D) float32, the tower's item vectors
    tune: TextTuneReport
    seconds: float


def fit(
    ds: Dataset,
    split: Split,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> Fitted:
    """Tune the text tower, embed item texts, train the sequence encoder + residuals.

    ``cache_dir``: where a frozen tower's item vectors are cached across runs
    (``<cache_dir>/text-vectors``; None: not cached).
    """
    text = tune_text(ds, split, cfg, progress=progress, cache_dir=cache_dir)
    return fit_sequence(ds, split, cfg, text, progress=progress)


def tune_text(
    ds: Dataset,
    split: Split,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> TunedText:
    """The text stage: tune the tower on the training sequences, embed the catalog. It
    depends on ``cfg.text``, the split and the seed only, so several sequence configs
    can share one (bench/item_bound.py)."""
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
    log.info("dataset %s: %d items, %d test cases", ds.name, len(catalog), len(split.test))
    t = time.perf_counter()
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", cfg.text.max_length)
    encoder = load_text_encoder(Path(cfg.text_model_dir) if cfg.text_model_dir else None)
    tune = fine_tune_text(encoder, tok, catalog, split.train_sequences, cfg.text, progress=progress)
    if cfg.text.mode == "frozen" and cfg.cache_text_vectors and cache_dir is not None:
        model_dir = Path(cfg.text_model_dir) if cfg.text_model_dir else minilm_dir()
        text_vectors = cached_text_vectors(
            encoder,
            tok,
            catalog.texts,
            cache_dir / "text-vectors",
            model_key=model_fingerprint(model_dir),
            progress=progress,
        )
    else:
        text_vectors = encode_texts(
            encoder, tok, catalog.texts, progress=progress, desc="embed items"
        )
    return TunedText(tok, encoder, text_vectors, tune, time.perf_counter() - t)


def fit_sequence(
    ds: Dataset, split: Split, cfg: TrainConfig, text: TunedText, *, progress: bool = True
) -> Fitted:
    """The sequence stage on a text stage's vectors: encoder + item residuals."""
    from training.metrics import evaluate
    from training.sequence_train import train_sequence_model

    torch.set_num_threads(cfg.threads)
    n_items = len(ds.catalog)
    rng = np.random.default_rng(cfg.seed)
    n_valid = len(split.valid)
    valid_subset = np.sort(
        rng.choice(n_valid, size=min(n_valid, cfg.seq.valid_users), replace=False)
    )

    def validate(score_fn: Callable[[list[np.ndarray]], np.ndarray]) -> dict[str, float]:
        return evaluate(score_fn, split.valid, n_items, subset=valid_subset, progress=False)

    t = time.perf_counter()
    result = train_sequence_model(
        split.train_sequences, text.text_vectors, validate, cfg.model, cfg.seq, progress=progress
    )
    timings = {"text_s": text.seconds, "sequence_s": time.perf_counter() - t}
    # serve the tower with the learned offset baked in: queries and new items then
    # land exactly where cold items were trained to be (item_space.ServingTextEncoder)
    serving = ServingTextEncoder(text.encoder, result.space.text_offset()).eval()
    return Fitted(
        ds, split, text.tokenizer, serving, result, result.space.export(), text.tune, timings
    )


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
    split: Split,
    *,
    seed: int = 0,
    time_budget_s: float | None = None,
    config: TrainConfig | None = None,
    cache_dir: Path | None = None,
) -> TrainedScorer:
    """Bench hook (bench/quality.py): train on ``split`` with the default config."""
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
    return TrainedScorer(fit(dataset, split, cfg, progress=True, cache_dir=cache_dir))


def train_bundle(
    dataset: str | Dataset,
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> Path:
    """Train on ``dataset`` (a name, a path, or a loaded Dataset) and write a bundle under
    ``out_dir``; returns the bundle directory ``out_dir/<version>``. ``cache_dir``: see
    :func:`fit` (the CLI passes ``RECSTREAM_CACHE_DIR``)."""
    cfg = config or TrainConfig()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    ds, temporal = training_view(_load(dataset), cfg)
    fitted = fit(ds, make_split(ds, cfg), cfg, progress=progress, cache_dir=cache_dir)
    metrics = offline_metrics(fitted, progress=progress)
    popularity, prior, units = served_prior(fitted)
    metrics["fusion_prior"] = prior.to_dict()
    version = _version(ds.name)
    with staging(Path(out_dir), version) as stage:
        t = time.perf_counter()
        metrics.update(export_encoders(fitted, stage.path, cfg))
        write_catalog(fitted, popularity, stage.path)
        built = write_index(fitted.item_vectors, stage.path, cfg)
        timings = fitted.timings
        timings["export_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        # CPU seconds of this process (all threads): on a shared machine wall time
        # is noisy, cpu_s / threads approximates the wall time on dedicated cores
        timings["total_cpu_s"] = time.process_time() - cpu_start
        metrics["timings"] = timings
        manifest = bundle_manifest(version, fitted, cfg, built, prior, metrics)
        extra: dict[str, Any] = {"popularity": units}
        if temporal:
            extra["temporal_split"] = TemporalSplitEntry(**temporal)
        final = stage.seal(manifest.model_copy(update=extra))
    log.info("bundle %s written in %.1fs", final, time.perf_counter() - t_start)
    return final


def offline_metrics(fitted: Fitted, *, progress: bool = True) -> dict[str, Any]:
    """Test metrics of the torch models (``recstream evaluate`` repeats them through ONNX)."""
    from training.offline_eval import sequence_metrics

    result = fitted.sequence
    return {
        "test": sequence_metrics(
            result.encoder, fitted.item_vectors, fitted.split, progress=progress
        ),
        "valid_best_ndcg@10": max(h["ndcg@10"] for h in result.history),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "window_stride": result.window_stride,
        "dropout": result.encoder.cfg.dropout,  # as trained ("auto" may lower it on large data)
        "text_tower": dataclasses.asdict(fitted.tune),
    }


def served_prior(fitted: Fitted) -> tuple[np.ndarray, PriorChoice, PopularityEntry]:
    """The popularity prior serving adds (from training events only), the weight a warm
    user gets, chosen on the validation cases, and the prior's units (what it was divided
    by, as of when: the stream keeps counting in them, ``inference.online``)."""
    from training.bundle_files import popularity_prior, popularity_scale, training_mask
    from training.offline_eval import history_scorer, torch_user_fn
    from training.prior_tuning import choose_warm_prior

    ds, split, encoder = fitted.dataset, fitted.split, fitted.sequence.encoder
    keep = training_mask(ds.interactions)
    if len(split.cold_items):
        keep &= ~np.isin(ds.interactions.item, split.cold_items)
    popularity = popularity_prior(ds.interactions, len(ds.catalog), keep=keep)
    prior = choose_warm_prior(
        history_scorer(torch_user_fn(encoder), fitted.item_vectors, encoder.cfg.max_len),
        split.valid,
        popularity,
    )
    log.info("warm popularity weight %g (validation NDCG@10 by weight: %s)",
             prior.weight, prior.ndcg_by_weight)  # fmt: skip
    return popularity, prior, PopularityEntry(**popularity_scale(ds.interactions, keep=keep))


def export_encoders(fitted: Fitted, stage: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Export both encoders to ONNX (and the int8 text encoder), with parity, quality and
    speed checks; returns their metrics (``text_query``, ``int8``, ``text_encoder_speed``,
    ``export``)."""
    from training import onnx_export as ox
    from training.offline_eval import query_metrics

    catalog, n_items = fitted.dataset.catalog, len(fitted.dataset.catalog)
    tok, encoder, item_vectors = fitted.tokenizer, fitted.text_encoder, fitted.item_vectors
    metrics: dict[str, Any] = {}
    ox.export_text_encoder(encoder, stage / TEXT_ENCODER)
    probe = [catalog.texts[i] for i in range(0, n_items, max(1, n_items // 16))][:16]
    probe += ["90s comedy", "a long, slow, sad french film about love and war in the 1960s"]
    checks: dict[str, Any] = {
        "text_parity_min_cos": ox.check_text_parity(encoder, stage / TEXT_ENCODER, tok, probe)
    }
    fp32 = ox.session(stage / TEXT_ENCODER)
    query_fp32 = query_metrics(
        lambda texts: ox.onnx_text_vectors(fp32, tok, texts), item_vectors, catalog, cfg.n_queries
    )
    metrics["text_query"] = query_fp32
    speed = {"fp32": ox.text_encoder_speed(fp32, tok, catalog.texts)}
    if cfg.int8:
        ox.quantize_int8(stage / TEXT_ENCODER, stage / TEXT_ENCODER_INT8)
        int8 = ox.session(stage / TEXT_ENCODER_INT8)
        sample = catalog.texts[: min(n_items, 512)]
        cos = ox.row_cosines(
            ox.onnx_text_vectors(fp32, tok, sample), ox.onnx_text_vectors(int8, tok, sample)
        )
        query_int8 = query_metrics(
            lambda texts: ox.onnx_text_vectors(int8, tok, texts),
            item_vectors,
            catalog,
            cfg.n_queries,
        )
        speed["int8"] = ox.text_encoder_speed(int8, tok, catalog.texts)
        metrics["int8"] = {
            "cos_vs_fp32_mean": float(cos.mean()),
            "cos_vs_fp32_min": float(cos.min()),
            "text_query": query_int8,
            "genre_precision@10_delta": query_int8["genre_precision@10"]
            - query_fp32["genre_precision@10"],
        }
    metrics["text_encoder_speed"] = speed
    sequence = fitted.sequence.encoder
    ox.export_sequence_encoder(sequence, stage / SEQUENCE_ENCODER)
    checks["sequence_parity_min_cos"] = ox.check_sequence_parity(
        sequence, stage / SEQUENCE_ENCODER, item_vectors, cfg.seed
    )
    # the same encoder cut in two for serving (docs/bundle.md, sequence_encoder.split)
    ox.export_sequence_split(sequence, stage / SEQUENCE_ITEM_INPUT, stage / SEQUENCE_CORE)
    checks["sequence_split_parity_min_cos"] = ox.check_split_parity(
        sequence, stage / SEQUENCE_ITEM_INPUT, stage / SEQUENCE_CORE, item_vectors, cfg.seed
    )
    metrics["export"] = checks
    return metrics


def write_catalog(fitted: Fitted, popularity: np.ndarray, stage: Path) -> None:
    """The tokenizer and the plain-data files: items, item vectors, popularity."""
    from training.bundle_files import write_items

    fitted.tokenizer.save(str(stage / TOKENIZER))
    write_items(fitted.dataset.catalog, stage / ITEMS)
    np.save(stage / ITEM_VECTORS, fitted.item_vectors.astype(np.float32))
    np.save(stage / POPULARITY, popularity)


def write_index(item_vectors: np.ndarray, stage: Path, cfg: TrainConfig) -> BuiltIndex:
    """``index.faiss``: exact for catalogs up to ``cfg.exact_index_max``, else IVF."""
    import faiss

    from training.index_build import build_index

    built = build_index(item_vectors, exact_max=cfg.exact_index_max)
    faiss.write_index(built.index, str(stage / INDEX))
    return built


def bundle_manifest(
    version: str,
    fitted: Fitted,
    cfg: TrainConfig,
    built: BuiltIndex,
    prior: PriorChoice,
    metrics: dict[str, Any],
) -> Manifest:
    """The bundle's manifest (``files`` and ``format`` are added when it is sealed)."""
    result = fitted.sequence
    int8 = {"int8_file": TEXT_ENCODER_INT8} if cfg.int8 else {}
    return Manifest(
        version=version,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        dataset=fitted.dataset.name,
        dim=int(fitted.item_vectors.shape[1]),
        text_encoder=TextEncoderEntry(file=TEXT_ENCODER, max_length=cfg.text.max_length, **int8),
        sequence_encoder=SequenceEncoderEntry(
            file=SEQUENCE_ENCODER,
            max_length=result.encoder.cfg.max_len,
            split=SequenceSplitEntry(item_input_file=SEQUENCE_ITEM_INPUT, core_file=SEQUENCE_CORE),
        ),
        index=IndexEntry(
            file=INDEX,
            kind=built.kind,
            metric="inner_product",
            params=built.params,
            recall_at_10_vs_exact=built.recall_at_10,
            user_recall_at_10=built.user_recall_at_10,
        ),
        fusion=FusionEntry(popularity_weight_warm=prior.weight),
        n_items=len(fitted.dataset.catalog),
        scale=result.scale,
        config=cfg.to_dict(),
        metrics=metrics,
    )
