"""Typed serving settings (environment prefix ``RECSTREAM_INFERENCE_``).

Nested sections use ``__``: ``RECSTREAM_INFERENCE_FUSION__QUERY_HALF_LIFE_S=300``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Normalize = Literal["zscore", "none"]


class FusionSettings(BaseModel):
    """How candidate sources are weighted (see :mod:`inference.fusion`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # How source scores are put on one scale before mixing: "zscore" standardises
    # each source over the request's candidates (weights are then in standard
    # deviations); "none" mixes raw cosines and popularity in [0, 1] (the old way).
    normalize: Normalize = "zscore"
    sequence_weight: float = Field(
        default=1.0, ge=0
    )  # weight of <user_vector, item> at full history
    query_weight: float = Field(
        default=1.0, ge=0
    )  # weight of <query_vector, item> for a fresh query
    # Weight of the popularity prior for a user with no history. Small because it is
    # on another scale than cosines: popularity spans [0, 1] while a query's cosines
    # to its good and its generic matches differ by ~0.1. Measured on ml-100k
    # (text-only users, 300 synthetic queries, serving path): genre P@10 0.41 at
    # 0.3, 0.62 at 0.1, 0.71 at 0.05. A user with neither history nor query is
    # served by popularity alone whatever this is (weights are normalised).
    popularity_weight: float = Field(default=0.03, ge=0)
    popularity_floor: float = Field(default=0.02, ge=0)  # popularity weight kept for a warm user
    history_full: int = Field(
        default=5, ge=1
    )  # history length at which the sequence gets full weight
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
    # stays full; a request that loses more than this to exclusions is searched
    # again alone. FAISS k = pool + margin (HNSW efSearch ≥ k): paid on every search.
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
    prefer_int8: bool = False  # use text_encoder.int8.onnx when the bundle has it
    text_max_length: int | None = Field(default=None, ge=2)  # default: the manifest's max_length
    ef_search: int | None = Field(default=None, ge=1)  # HNSW efSearch; default: the manifest's
    hnsw_rebuild_ratio: float = Field(
        default=0.2, gt=0, le=1
    )  # tombstones / rows that asks a rebuild
    fusion: FusionSettings = FusionSettings()
    candidates: CandidateSettings = CandidateSettings()
