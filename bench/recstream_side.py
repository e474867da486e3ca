"""recstream's row of the quality table, through the models' real entry point.

Calls ``training.train.train_bundle(dataset, out_dir, TrainConfig(split=..., seed=0))``
(owned by the training-models side) and reads the offline metrics it writes into
the bundle's ``manifest.json``. Those metrics are computed with the same
training/metrics.py protocol on the same deterministic split functions
(``leave_one_out`` / ``cold_item_split(frac=0.1, seed=0)``) and the same synthetic
queries (n=500, seed=0); this module checks the case counts match the bench's
split before using a number. If the entry point is missing, the row says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.recstream")

QUERY_KEYS = {"genre_precision@10": "genre_p@10", "hit@10": "hit@10", "hit@50": "hit@50"}


def load_entry_point() -> tuple[Any, Any] | str:
    """(train_bundle, TrainConfig) or the reason they are not available."""
    try:
        from training.train import TrainConfig, train_bundle
    except ImportError as exc:
        return f"recstream model not available ({exc})"
    return train_bundle, TrainConfig


def train_and_read(
    dataset: Any, split: str, out_dir: Path, *, quick: bool, n_queries: int
) -> tuple[dict[str, Any], float]:
    """Train one bundle on ``split`` ("loo" or "cold"); its manifest metrics and wall seconds."""
    entry = load_entry_point()
    if isinstance(entry, str):
        raise RuntimeError(entry)
    train_bundle, config_cls = entry
    base = config_cls.quick_preset() if quick else config_cls()
    cfg = dataclasses.replace(base, split=split, cold_frac=0.1, seed=0, n_queries=n_queries)
    from recstream.settings import Settings

    t0 = time.perf_counter()
    bundle = Path(train_bundle(dataset, out_dir, cfg, cache_dir=Settings().cache_dir))
    wall = time.perf_counter() - t0
    manifest = json.loads((bundle / "manifest.json").read_text())
    log.info("recstream %s bundle %s in %.0f s", split, bundle, wall)
    return manifest["metrics"], wall


def check_cases(metrics: dict[str, Any], key: str, expected: int) -> dict[str, float]:
    got = metrics["test"][key]
    if int(got["n_cases"]) != expected:
        raise RuntimeError(
            f"recstream bundle evaluated {got['n_cases']} {key} cases, the bench split has "
            f"{expected}: not the same split, refusing to compare"
        )
    return got


def query_row(metrics: dict[str, Any]) -> dict[str, float]:
    q = metrics.get("text_query", {})
    return {ours: q[theirs] for theirs, ours in QUERY_KEYS.items() if theirs in q}
