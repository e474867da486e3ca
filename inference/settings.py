"""Typed serving settings (environment prefix ``RECSTREAM_INFERENCE_``).

Nested sections use ``__``: ``RECSTREAM_INFERENCE_FUSION__QUERY_HALF_LIFE_S=300``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Normalize = Literal["zscore", "none"]


# The warm popularity weight for a bundle whose training chose none (bundles written
# before session 12): 0.1, chosen on four ml-100k bundles (bench/RESULTS.md, inference).
DEFAULT_POPULARITY_WEIGHT_WARM = 0.1


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
    # query). None (the default): the weight the bundle's training chose on its
    # validation cases (manifest ``fusion.popularity_weight_warm``), or
    # DEFAULT_POPULARITY_WEIGHT_WARM for a bundle without one. The best weight
    # depends on the data: on ml-100k 0.075-0.15 lifted warm NDCG@10 by 2-4 %
    # over none, on ml-1m 0.025 lifted it 1 % and 0.1 cost 1-3 % (bench/RESULTS.md,
    # session 12). A number here overrides every bundle's choice.
    popularity_weight_warm: float | None = Field(default=None, ge=0)
    # History length at which the sequence gets full weight. Served with only their
    # last 3 items, ml-100k users fared the same at 1 and 5 (within 0.002 either
    # way) and worse at 20 (NDCG@10 -0.003..-0.007 on 3 of 4 bundles); 1- and
    # 2-item histories, where this matters most, are not measured: kept at 5.
    history_full: int = Field(default=5, ge=1)
    query_half_life_s: float = Field(
        default=600.0, gt=0
    )  # query weight halves every this many seconds

    def warm_prior(self) -> float:
        """The warm popularity weight in force (the fallback when none was resolved)."""
        w = self.popularity_weight_warm
        return DEFAULT_POPULARITY_WEIGHT_WARM if w is None else w

    def for_bundle(self, tuned_warm: float | None) -> FusionSettings:
        """These settings with the bundle's tuned warm weight filled in, unless set here."""
        if self.popularity_weight_warm is not None or tuned_warm is None:
            return self
        return self.model_copy(update={"popularity_weight_warm": tuned_warm})


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


class OnlineSettings(BaseModel):
    """Online item learning in the stream (see :mod:`inference.online`).

    A click moves the clicked item's vector towards the user who chose it by
    ``lr`` times the tangent step, its delta from the base vector projected onto
    a ball of radius ``bound``. Items the bundle did not train (text-only
    vectors: new items) learn with their own, larger, rate and bound.
    lr_trained was chosen on the validation part of the stream (bench/stream_tune.py
    --grid tiny: a --quick bundle cut at the 0.6 quantile replayed up to the 0.7
    quantile, never test events; 0.02 over 0.005, all NDCG@10 0.0776 vs 0.0771, static
    0.0762); the others are a-priori guesses the tiny grid kept. bench/RESULTS.md, issue 20.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    vectors: bool = True  # clicks move item vectors (off: only the popularity below learns)
    lr_new: float = Field(default=0.05, ge=0)  # items served with a text-only vector
    bound_new: float = Field(default=0.25, ge=0)
    lr_trained: float = Field(default=0.02, ge=0)  # items whose vector the bundle trained
    bound_trained: float = Field(default=0.05, ge=0)
    # steps are taken from the user's vector less a running mean of the users a worker
    # served (inference.online.UserCentre): exact over the first centre_window, then
    # exponential; no step before centre_warmup users (an uncentred step makes a hub)
    centre_window: int = Field(default=1000, ge=1)
    centre_warmup: int = Field(default=100, ge=0)
    # the served popularity prior follows the stream's clicks (the bundle's prior, decayed,
    # plus each click since, decayed with this half-life in event time)
    popularity: bool = True
    popularity_half_life_s: float = Field(default=7 * 86400.0, gt=0)


class InferenceSettings(BaseSettings):
    """Settings of the serving core."""

    model_config = SettingsConfigDict(
        env_prefix="RECSTREAM_INFERENCE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    threads: int = Field(default=1, ge=1)  # onnxruntime intra-op threads (1 is as fast at batch 1)
    faiss_threads: int = Field(default=1, ge=1)  # OpenMP threads for FAISS searches
    # Threads of the BLAS under numpy and FAISS (process-wide, set when a bundle loads). The
    # batch's fusion products are small: with OpenBLAS's default of one thread per core a
    # (32, 384) x (384, 384) product took 8 ms instead of 0.8 ms on a busy 2-core machine.
    blas_threads: int = Field(default=1, ge=1)
    provider: Literal["auto", "cpu", "cuda"] = "auto"  # onnxruntime execution provider
    faiss_device: Literal["auto", "cpu", "gpu"] = "auto"
    # Serve text_encoder.int8.onnx when the bundle has it: 2.5-4.7x faster than fp32
    # at batch 1, genre P@10 within 0.004, mean cosine to fp32 0.993-0.995 (bench/RESULTS.md,
    # training). RECSTREAM_INFERENCE_PREFER_INT8=false serves fp32.
    prefer_int8: bool = True
    text_max_length: int | None = Field(default=None, ge=2)  # default: the manifest's max_length
    # Query vectors kept by text (least recently used dropped first; 0 = none): a text typed
    # again, by anyone, is not encoded again. In memory only, never exposed; each bundle
    # version has its own. 10,000 vectors of 384 floats are 15 MB.
    query_cache_size: int = Field(default=10_000, ge=0)
    ef_search: int | None = Field(default=None, ge=1)  # HNSW efSearch; default: the manifest's
    # IVF lists scanned per query; default: the manifest's (chosen by training for recall)
    n_probe: int | None = Field(default=None, ge=1)
    # Serve a bundle's split sequence encoder (item inputs precomputed per catalog row, the
    # last block at the latest position only) when it has one; false: the whole graph.
    sequence_split: bool = True
    hnsw_rebuild_ratio: float = Field(
        default=0.2, gt=0, le=1
    )  # tombstones / rows that asks a rebuild
    fusion: FusionSettings = FusionSettings()
    candidates: CandidateSettings = CandidateSettings()
    online: OnlineSettings = OnlineSettings()

    @classmethod
    def defaults(cls) -> InferenceSettings:
        """The documented defaults, without reading the environment (library use).

        The worker and the CLI build ``InferenceSettings()`` once, from the
        environment, and pass it in; nothing below them reads the environment.
        """
        return cls.model_construct()
