"""``recstream evaluate --protocol stream``: replay a temporal-split bundle's stream.

The bundle's manifest says where it was cut (``config.split == "temporal"``,
``config.split_at``); the replay is rebuilt from the dataset at the same T and
checked against the bundle (same T, same catalog), so a bundle is only ever
scored on events it never saw. See :mod:`tools.prequential` for the protocol.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.online import PopularityScale
from inference.settings import InferenceSettings, OnlineSettings
from recstream.errors import BundleError
from tools.prequential import event_labels, prequential_ranks, report
from tools.stream_replay import build_replay
from training.data.types import Dataset
from training.split import known_before, split_time

log = logging.getLogger(__name__)

__all__ = ["StreamRun", "bundle_split", "evaluate_stream", "print_stream_table"]


@dataclass(frozen=True)
class StreamRun:
    result: dict[str, Any]  # the JSON document (top-level "stream" block and context)
    ranks: np.ndarray  # (E,) each event's rank in its served top k (k = miss)


def bundle_split(bundle: Path, dataset: Dataset) -> tuple[dict[str, Any], float]:
    """The bundle's manifest and its split time T, checked against ``dataset``."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    cfg = manifest.get("config", {})
    if cfg.get("split") != "temporal":
        raise BundleError(
            f"bundle {bundle} was trained with split {cfg.get('split', 'loo')!r}; the stream "
            "protocol needs a temporal one (recstream train --split temporal)"
        )
    t = split_time(dataset.interactions, float(cfg["split_at"]))
    recorded = manifest.get("temporal_split", {}).get("time")
    if recorded is not None and float(recorded) != t:
        raise BundleError(
            f"bundle {bundle} was cut at {recorded}, but {dataset.name!r} cuts at {t} for "
            f"quantile {cfg['split_at']}: another dataset?"
        )
    lines = (Path(bundle) / "items.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["item_id"] for line in lines if line.strip()]
    if ids != known_before(dataset, t).catalog.item_ids:
        raise BundleError(
            f"bundle {bundle} holds {len(ids)} items, not the catalog {dataset.name!r} had at T"
        )
    return manifest, t


def dataset_popularity_scale(dataset: Dataset, t: float) -> PopularityScale:
    """The prior's scale as training computes it (for bundles written without it)."""
    from training.bundle_files import popularity_scale, training_mask

    known = known_before(dataset, t).interactions
    entry = popularity_scale(known, keep=training_mask(known))
    return PopularityScale(entry["clicks_at_max"], entry["as_of"])


def _created_ts(manifest: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(manifest["created_at"]).replace("Z", "+00:00")).timestamp()


def evaluate_stream(
    bundle: Path,
    dataset: Dataset,
    *,
    online: bool = True,
    settings: InferenceSettings | None = None,
    end_quantile: float | None = None,
    k: int = 10,
    progress: bool = True,
) -> StreamRun:
    """Replay every interaction from the bundle's T (to ``end_quantile``'s time, if given)."""
    from inference.recommender import OnnxRecommender
    from tools.stream_rankers import ServingRanker

    bundle = Path(bundle)
    manifest, t = bundle_split(bundle, dataset)
    end = None if end_quantile is None else split_time(dataset.interactions, end_quantile)
    replay = build_replay(dataset, t, end)
    s = settings or InferenceSettings()
    rec = OnnxRecommender.load(bundle, s)
    if rec.popularity_scale is None:  # a bundle written before the manifest recorded it
        rec.popularity_scale = dataset_popularity_scale(dataset, t)
    learn: OnlineSettings | None = s.online if online and s.online.enabled else None
    ranker = ServingRanker(rec, replay, created_ts=_created_ts(manifest), online=learn, k=k)
    ranks = prequential_ranks(
        replay, ranker, k=k, progress=progress, desc="online" if learn else "static"
    )
    buckets, new_user = event_labels(replay)
    result = {
        "bundle": manifest["version"],
        "dataset": dataset.name,
        "protocol": "stream",
        "online": learn is not None,
        "online_settings": learn.model_dump() if learn else None,
        "split": {
            "split_at": manifest["config"]["split_at"],
            "time": t,
            "end_quantile": end_quantile,
            "end_time": end,
            "events": len(replay.events),
            "new_items": len(replay.new_items),
        },
        "learner": ranker.summary(),
        "stream": report(ranks, buckets, new_user, k=k),
    }
    return StreamRun(result, ranks)


def print_stream_table(result: dict[str, Any]) -> None:
    """The ``stream`` block as a table: NDCG@10, HR@10 and events per bucket."""
    from rich.console import Console
    from rich.table import Table

    from tools.prequential import rows

    mode = "online learning" if result["online"] else "static (--no-online)"
    table = Table(title=f"{result['bundle']} on {result['dataset']}: stream after T, {mode}")
    for name, justify in (("events", "left"), ("ndcg@10", "right"), ("hr@10", "right"),
                          ("n", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for label, m in rows(result["stream"]):
        if m["n"] == 0:
            table.add_row(label, "-", "-", "0")
        else:
            table.add_row(label, f"{m['ndcg@10']:.4f}", f"{m['hr@10']:.4f}", str(m["n"]))
    Console().print(table)
