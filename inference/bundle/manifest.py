"""``manifest.json``: the typed manifest and the format constants (docs/bundle.md).

One definition for writers (training, ``inference.testing``, benches) and readers
(the serving loader, the verifier, offline evaluation). Unknown keys are kept, so
a newer writer stays readable. The JSON says what the writer said: a top-level
field it did not set is not written, nor an entry's unset field that is None.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.errors import BundleManifestError

FORMAT = 1  # the bundle format this code reads and writes
MANIFEST = "manifest.json"  # the only file of a bundle not listed in its own ``files``
TEXT_ENCODER = "text_encoder.onnx"
TEXT_ENCODER_INT8 = "text_encoder.int8.onnx"
SEQUENCE_ENCODER = "sequence_encoder.onnx"
SEQUENCE_ITEM_INPUT = "sequence_item_input.onnx"
SEQUENCE_CORE = "sequence_core.onnx"
INDEX = "index.faiss"
TOKENIZER = "tokenizer.json"
ITEMS = "items.jsonl"
ITEM_VECTORS = "item_vectors.npy"
POPULARITY = "popularity.npy"
FIXED_FILES = (TOKENIZER, ITEMS, ITEM_VECTORS, POPULARITY)
STAGING_MARK = ".tmp-"  # ``<version>.tmp-XXXX``: a bundle being written, never a bundle


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class TextEncoderEntry(_Part):
    file: str = TEXT_ENCODER
    int8_file: str | None = None
    max_length: int = 64


class SequenceSplitEntry(_Part):
    """The sequence encoder cut in two (docs/bundle.md): per-item work done once per item."""

    item_input_file: str = SEQUENCE_ITEM_INPUT  # item vectors (N,D) -> item inputs (N,C)
    core_file: str = SEQUENCE_CORE  # item inputs (B,L,C) + mask -> user vector (B,D)


class SequenceEncoderEntry(_Part):
    file: str = SEQUENCE_ENCODER
    max_length: int = 50
    split: SequenceSplitEntry | None = None  # absent in bundles written before issue 24


class IndexEntry(_Part):
    file: str = INDEX
    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    metric: Literal["inner_product"] = "inner_product"
    params: dict[str, Any] = {}
    recall_at_10_vs_exact: float | None = None  # approximate kinds: measured by the writer
    # the same on user-like queries (the mean of five items), in the served pool
    user_recall_at_10: float | None = None


class FusionEntry(_Part):
    """Serving defaults that training chose for this bundle (None: the serving default)."""

    # warm users' popularity weight, chosen on the validation cases (training/prior_tuning.py)
    popularity_weight_warm: float | None = Field(default=None, ge=0)


class PopularityEntry(_Part):
    """The units of ``popularity.npy``, so the stream can keep counting in them: the prior
    is each item's clicks, each decayed by its age (half-life ``half_life_days``) at
    ``as_of``, divided by the most popular item's, ``clicks_at_max``."""

    clicks_at_max: float = Field(ge=0)
    as_of: float  # epoch seconds: the training data's last interaction
    half_life_days: float = Field(gt=0)


class TemporalSplitEntry(_Part):
    """Where a ``--split temporal`` bundle was cut: it saw only interactions before ``time``."""

    split_at: float  # the quantile of interactions, in time order, whose time is T
    time: float  # T, epoch seconds
    interactions_before: int
    interactions_after: int
    items_before: int  # the catalog the bundle holds: items with an interaction before T


class Manifest(_Part):
    """manifest.json. ``files`` (name → sha256) and ``format`` are filled in by the writer."""

    format: int = FORMAT
    version: str
    created_at: str  # ISO 8601 UTC, e.g. 2026-11-23T18:00:00Z
    dataset: str
    dim: int
    text_encoder: TextEncoderEntry
    sequence_encoder: SequenceEncoderEntry
    index: IndexEntry
    fusion: FusionEntry = FusionEntry()
    n_items: int | None = None
    scale: float | None = None  # the sequence model's learned logit scale (training record)
    popularity: PopularityEntry | None = None  # absent in bundles written before it
    temporal_split: TemporalSplitEntry | None = None  # only for --split temporal
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    files: dict[str, str] = {}

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """Parse and check a manifest read from ``where`` (named in errors)."""
        try:
            manifest = cls.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise BundleManifestError(f"{where} is not a valid bundle manifest: {exc}") from exc
        if manifest.format != FORMAT:
            raise BundleManifestError(
                f"{where} has format {manifest.format}; this reader understands format {FORMAT}"
            )
        for name in manifest.required_files():
            if name not in manifest.files:
                raise BundleManifestError(
                    f"{where} does not list required file {name!r} under 'files': the bundle is "
                    "incomplete; rebuild it"
                )
        return manifest

    def required_files(self) -> list[str]:
        names = [self.text_encoder.file, self.sequence_encoder.file, self.index.file]
        if self.text_encoder.int8_file:
            names.append(self.text_encoder.int8_file)
        if self.sequence_encoder.split is not None:
            split = self.sequence_encoder.split
            names += [split.item_input_file, split.core_file]
        return [*names, *FIXED_FILES]

    @property
    def created_ts(self) -> float:
        """``created_at`` as epoch seconds (0.0 if it does not parse)."""
        return created_ts(self.created_at)

    def to_json(self, files: dict[str, str]) -> str:
        """The manifest text with ``files`` and ``format`` set: what the writer seals.

        NaN and infinities become null (not JSON: readers in other languages would
        refuse the manifest); keys sorted, two-space indent, trailing newline.
        """
        body = {**_written(self, top=True), "format": FORMAT, "files": dict(sorted(files.items()))}
        return json.dumps(_json_safe(body), indent=2, sort_keys=True, allow_nan=False) + "\n"


def created_ts(text: str) -> float:
    """An ISO 8601 ``created_at`` as epoch seconds (0.0 if it does not parse)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _written(model: BaseModel, *, top: bool) -> dict[str, Any]:
    """The fields of ``model`` a writer wrote (see the module docstring), extras included."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name not in model.model_fields_set and (top or value is None):
            continue
        out[name] = _written(value, top=False) if isinstance(value, BaseModel) else value
    out.update(model.model_extra or {})
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
