"""Typed serving settings (environment prefix ``RECSTREAM_INFERENCE_``).

Nested sections use ``__``: ``RECSTREAM_INFERENCE_FUSION__QUERY_HALF_LIFE_S=300``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Normalize = Literal["zscore", "none"]


class FusionSettings(BaseModel):
    """How candidate sources are weighted (see :mod:`inference.fusion`).

    With ``normalize="zscore"`` every weight multiplies a score standardised over
    the catalog, so weights compare standard deviations, whatever the bundle.
    Defaults chosen with ``bench/serving_quality.py --grid`` on four ml-100k
    bundles (frozen, fully fine-tuned and cold-split text towers; figures in
    bench/RESULTS.md, inference section); the ranges quoted below are over them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # "zscore": each source standardised against catalog statistics before mixing;
    # "none": raw cosines and popularity in [0, 1] mixed as they are (the
    # pre-calibration behaviour: popularity crowds a query out; kept to compare).
    normalize: Normalize = "zscore"
    # weight of the sequence source at full history (ramps up from 0, see history_full)
    sequence_weight: float = Field(default=1.0, ge=0)
    # Weight of a fresh query (halves every query_half_life_s). At 1.0 a fresh
    # genre query takes a warm user's top 10 to 0.65-0.87 genre precision (raw
    # mixing: 0.47-0.74) with HR@10 of the next item 1-17% above raw mixing; at
    # 2.0 genre precision reaches 0.74-0.94 but HR@10 drops 16-20%.
    query_weight: float = Field(default=1.0, ge=0)
    # Popularity weight with no history (text-only users). A tie-breaker, not a
    # competitor: 0 serves text-only users exactly as offline; up to 0.1 moved
    # genre P@10 by < 0.01; 0.3 cost 0.02-0.05.
    # A user with neither history nor query gets popularity alone whatever this is.
    popularity_weight: float = Field(default=0.03, ge=0)
    # Popularity weight at full history (ramps from popularity_weight with history,
    # scaled by the sequence's share of the personal weight: halved by a fresh
    # query). 0 serves warm users exactly as offline; 0.1 moved their NDCG@10 by
    # -0.002..+0.005 (mean +0.003, +4%) and left users with a fresh query as at
    # 0.05; 0.05 moved it by -0.001..+0.003; 0.2 fell below offline on 3 of 4.
    popularity_weight_warm: float = Field(default=0.1, ge=0)
    # History length at which the sequence gets full weight. Served with only their
    # last 3 items, ml-100k users fared the same at 1 and 5 (within 0.002 either
    # way) and worse at 20 (NDCG@10 -0.003..-0.007 on 3 of 4 bundles); 1- and
    # 2-item histories, where this matters most, are not measured: kept at 5.
    history_full: int = Field(default=5, ge=1)
    query_half_life_s: float = Field(
        default=600.0, gt=0
    )  # query weight halves every this many seconds


class CandidateSettings(BaseModel):
    """How many candidates each source proposes before fusion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequence: int = Field(default=50, ge=1)
    query: int = Field(default=50, ge=1)
    popular: int = Field(default=20, ge=0)
    # Extra hits fetched so excluded (consumed) items can be dropped and the pool
    # stays full: FAISS k = pool + min(margin, excluded count rounded up to 8), HNSW
    # efSearch ≥ k. A request that loses more than this to exclusions is searched
    # again alone.
    exclusion_margin: int = Field(default=30, ge=0)


class InferenceSettings(BaseSettings):
    """Settings of the serving core."""

    model_config = SettingsConfigDict(
        env_prefix="RECSTREAM_INFERENCE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    threads: int = Field(default=1, ge=1)  # onnxruntime intra-op threads (1 is as fast at batch 1)
    faiss_threads: int = Field(default=1, ge=1)  # OpenMP threads for FAISS searches
    provider: Literal["auto", "cpu", "cuda"] = "auto"  # onnxruntime execution provider
    faiss_device: Literal["auto", "cpu", "gpu"] = "auto"
    # Serve text_encoder.int8.onnx when the bundle has it: 2.5-4.7x faster than fp32
    # at batch 1, genre P@10 within 0.004, mean cosine to fp32 0.993-0.995 (bench/RESULTS.md,
    # training). RECSTREAM_INFERENCE_PREFER_INT8=false serves fp32.
    prefer_int8: bool = True
    text_max_length: int | None = Field(default=None, ge=2)  # default: the manifest's max_length
    ef_search: int | None = Field(default=None, ge=1)  # HNSW efSearch; default: the manifest's
    hnsw_rebuild_ratio: float = Field(
        default=0.2, gt=0, le=1
    )  # tombstones / rows that asks a rebuild
    fusion: FusionSettings = FusionSettings()
    candidates: CandidateSettings = CandidateSettings()
