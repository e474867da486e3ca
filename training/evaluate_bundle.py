"""Evaluate a written bundle the way serving uses it: verified files, ONNX Runtime, no torch.

The bundle is checked by the serving loader (``inference.bundle.verify_bundle``) and
by training's own writer-side check (training/bundle_io.py); the two overlap on
purpose until the lead folds them into one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.bundle_files import read_item_ids
from training.bundle_io import verify_bundle
from training.data.types import Dataset
from training.errors import BundleError

log = logging.getLogger(__name__)


def bundle_sequence_scorer(
    bundle: Path, manifest: dict[str, Any], vectors: np.ndarray, threads: int = 2
) -> Any:
    """A ``score_fn`` (histories -> (B, N) scores) through the bundle's ONNX sequence encoder."""
    from training.offline_eval import history_scorer, onnx_user_fn
    from training.onnx_export import session

    seq = session(bundle / manifest["sequence_encoder"]["file"], threads)
    return history_scorer(
        onnx_user_fn(seq), vectors, int(manifest["sequence_encoder"]["max_length"])
    )


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
    bundle is scored on exactly the cases it was held out from.
    """
    from inference.bundle import verify_bundle as serving_verify
    from training.offline_eval import query_metrics, sequence_metrics_from
    from training.onnx_export import onnx_text_vectors, session
    from training.split import cold_item_split, leave_one_out
    from training.tokenization import load_tokenizer

    bundle = Path(bundle)
    serving_verify(bundle)  # the serving loader's own check: refuses what serving refuses
    manifest = verify_bundle(bundle)
    item_ids = read_item_ids(bundle / "items.jsonl")
    if item_ids != dataset.catalog.item_ids:
        raise BundleError(
            f"bundle {bundle} was built on another catalog ({len(item_ids)} items) than "
            f"dataset {dataset.name!r} ({len(dataset.catalog)} items)"
        )
    cfg = manifest.get("config", {})
    if cfg.get("split") == "cold":
        split = cold_item_split(dataset, frac=cfg.get("cold_frac", 0.1), seed=cfg.get("seed", 0))
    else:
        split = leave_one_out(dataset.interactions)
    vectors = np.load(bundle / "item_vectors.npy", allow_pickle=False)
    score = bundle_sequence_scorer(bundle, manifest, vectors, threads)
    out: dict[str, Any] = {
        "bundle": manifest["version"],
        "dataset": dataset.name,
        "split": cfg.get("split", "loo"),
        "sequence": sequence_metrics_from(score, split, len(vectors), progress=progress),
    }
    tok = load_tokenizer(bundle / "tokenizer.json", int(manifest["text_encoder"]["max_length"]))
    for key in ("file", "int8_file"):
        name = manifest["text_encoder"].get(key)
        if name:
            sess = session(bundle / name, threads)

            def encode(texts: Sequence[str], s: Any = sess) -> np.ndarray:
                return onnx_text_vectors(s, tok, texts)

            label = "int8" if key == "int8_file" else "fp32"
            out[f"text_query_{label}"] = query_metrics(encode, vectors, dataset.catalog, n_queries)
    return out
