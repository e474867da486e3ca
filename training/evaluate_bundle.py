"""Evaluate a written bundle the way serving uses it: verified files, ONNX Runtime, no torch.

The bundle is checked by the serving core's one verifier (``inference.bundle``):
every file is hashed once, and what is evaluated is built from the very bytes
that were hashed (the ONNX sessions, the tokenizer, the vectors).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle import BundleFiles, open_bundle
from inference.bundle.load import parse_items, parse_npy
from inference.bundle.manifest import ITEM_VECTORS, ITEMS, TOKENIZER
from training.data.types import Dataset
from training.errors import BundleError

log = logging.getLogger(__name__)


def bundle_sequence_scorer(files: BundleFiles, vectors: np.ndarray, threads: int = 2) -> Any:
    """A ``score_fn`` (histories -> (B, N) scores) through the bundle's ONNX sequence encoder."""
    from training.offline_eval import history_scorer, onnx_user_fn
    from training.onnx_export import session

    entry = files.manifest.sequence_encoder
    seq = session(files.read(entry.file), threads)
    return history_scorer(onnx_user_fn(seq), vectors, entry.max_length)


def evaluate_bundle(
    bundle: Path,
    dataset: Dataset,
    *,
    n_queries: int = 500,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Sequence metrics (all / warm / cold targets) and text-query metrics (fp32 and int8).

    The split is rebuilt from the manifest's config (kind, cold share, seed), so a
    bundle is scored on exactly the cases it was held out from; a temporal-split
    bundle on the leave-one-out cases inside what it was trained on (the data before
    its T: `recstream evaluate --protocol stream` replays what came after).
    """
    from training.offline_eval import query_metrics, sequence_metrics_from
    from training.onnx_export import onnx_text_vectors, session
    from training.split import cold_item_split, known_before, leave_one_out, split_time
    from training.tokenization import load_tokenizer

    files = open_bundle(Path(bundle))
    manifest = files.manifest
    cfg = manifest.config
    if cfg.get("split") == "temporal":
        dataset = known_before(dataset, split_time(dataset.interactions, cfg["split_at"]))
    item_ids = [it.item_id for it in parse_items(files.read(ITEMS))]
    if item_ids != dataset.catalog.item_ids:
        raise BundleError(
            f"bundle {bundle} was built on another catalog ({len(item_ids)} items) than "
            f"dataset {dataset.name!r} ({len(dataset.catalog)} items)"
        )
    vectors = parse_npy(files.read(ITEM_VECTORS), ITEM_VECTORS)
    score = bundle_sequence_scorer(files, vectors, threads)
    te = manifest.text_encoder
    tok = load_tokenizer(files.read(TOKENIZER), te.max_length)
    text_sessions = {
        label: session(files.read(name), threads)
        for label, name in (("fp32", te.file), ("int8", te.int8_file))
        if name
    }
    files.verify_rest()  # the files serving reads that evaluation does not: refused alike
    if cfg.get("split") == "cold":
        split = cold_item_split(dataset, frac=cfg.get("cold_frac", 0.1), seed=cfg.get("seed", 0))
    else:
        split = leave_one_out(dataset.interactions)
    out: dict[str, Any] = {
        "bundle": manifest.version,
        "dataset": dataset.name,
        "split": cfg.get("split", "loo"),
        "sequence": sequence_metrics_from(score, split, len(vectors), progress=progress),
    }
    for label, sess in text_sessions.items():

        def encode(texts: Sequence[str], s: Any = sess) -> np.ndarray:
            return onnx_text_vectors(s, tok, texts)

        out[f"text_query_{label}"] = query_metrics(encode, vectors, dataset.catalog, n_queries)
    return out
