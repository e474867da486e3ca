"""Choose the online-learning settings on the VALIDATION part of the stream (issue 20).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python bench/stream_tune.py --dataset ml-100k \\
        --bundle BV [--until 0.7] [--grid full|small|tiny] [--out tune.json]

BV is a bundle trained with ``recstream train --split temporal --split-at 0.6``:
it is replayed on the events from its own T (the 0.6 quantile's time) up to the
``--until`` quantile's time (default 0.7, where the test bundle's stream starts),
so no test event is ever replayed here. Coordinate search, each stage keeping the
best validation ``all`` NDCG@10 of the last (ties: the earlier, more cautious
setting):

1. popularity only (vectors off): the stream popularity's half-life;
2. new items' learning rate and bound (trained items frozen);
3. trained items' learning rate and bound.

The user vector that teaches a clicked item is the one a worker has: the vector
it computed to answer the click (the history includes the clicked item).

Every run is printed (all, warm items, new items at 5+ clicks, new users) with
its time; the static replay is the first row.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.recommender import OnnxRecommender
from inference.settings import InferenceSettings, OnlineSettings
from tools.prequential import event_labels, prequential_ranks, report
from tools.stream_eval import _created_ts, bundle_split, dataset_popularity_scale
from tools.stream_rankers import ServingRanker
from tools.stream_replay import build_replay
from training.data import load_dataset
from training.split import split_time

log = logging.getLogger("bench.stream_tune")

GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "full": {  # 30 replays
        "half_life_s": (86400.0, 3 * 86400.0, 7 * 86400.0, 14 * 86400.0, 30 * 86400.0),
        "lr_new": (0.02, 0.05, 0.1, 0.2),
        "bound_new": (0.1, 0.25, 0.5),
        "lr_trained": (0.002, 0.005, 0.01, 0.02),
        "bound_trained": (0.02, 0.05, 0.1),
    },
    "small": {  # 11 replays: the full grid's middle and ends, for a shared 2-core machine
        "half_life_s": (3 * 86400.0, 7 * 86400.0, 14 * 86400.0),
        "lr_new": (0.05, 0.2),
        "bound_new": (0.25, 0.5),
        "lr_trained": (0.002, 0.005, 0.02),
        "bound_trained": (0.05,),
    },
    "tiny": {  # 6 replays: is a faster rate better, for new and for trained items
        "half_life_s": (7 * 86400.0,),
        "lr_new": (0.05, 0.2),
        "bound_new": (0.25,),
        "lr_trained": (0.005, 0.02),
        "bound_trained": (0.05,),
    },
}


def _five_plus(rep: dict[str, Any]) -> float | None:
    parts = [rep["new_items"][b] for b in ("5-19", "20+")]
    n = sum(p["n"] for p in parts)
    if n == 0:
        return None
    return sum(p["ndcg@10"] * p["n"] for p in parts if p["n"]) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--bundle", type=Path, required=True, help="the validation bundle")
    ap.add_argument("--until", type=float, default=0.7, help="replay up to this quantile")
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="full", help="settings searched")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    grid = GRIDS[args.grid]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    ds = load_dataset(args.dataset)
    manifest, t = bundle_split(args.bundle, ds)
    end = split_time(ds.interactions, args.until)
    replay = build_replay(ds, t, end)
    if args.limit:
        replay = type(replay)(**{**replay.__dict__, "events": replay.events[: args.limit]})
    buckets, new_user = event_labels(replay)
    log.info("validation stream: %d events from %s to %s", len(replay.events), t, end)
    created = _created_ts(manifest)
    runs: list[dict[str, Any]] = []

    def run(online: OnlineSettings | None, learn_from: str = "after") -> float:
        settings = InferenceSettings(online=online or OnlineSettings())
        rec = OnnxRecommender.load(args.bundle, settings)
        if rec.popularity_scale is None:
            rec.popularity_scale = dataset_popularity_scale(ds, t)
        ranker = ServingRanker(
            rec,
            replay,
            created_ts=created,
            online=online,
            learn_from=learn_from,  # type: ignore[arg-type]
        )
        t0 = time.perf_counter()
        ranks = prequential_ranks(replay, ranker, progress=False)
        rep = report(ranks, buckets, new_user)
        row = {
            "online": None if online is None else online.model_dump(),
            "learn_from": learn_from,
            "all": rep["all"]["ndcg@10"],
            "warm": rep["warm_items"]["ndcg@10"],
            "new_5+": _five_plus(rep),
            "new_0": rep["new_items"]["0"]["ndcg@10"],
            "new_users": rep["new_users"]["ndcg@10"],
            "seconds": time.perf_counter() - t0,
        }
        runs.append(row)
        print(json.dumps(row), flush=True)
        return float(row["all"])

    def best(candidates: list[tuple[OnlineSettings, str]]) -> tuple[OnlineSettings, str]:
        scores = [run(c, how) for c, how in candidates]
        return candidates[int(np.argmax(scores))]  # argmax: the first of equals

    static = run(None)
    base = OnlineSettings(vectors=False)
    pop, _ = best([(base.model_copy(update={"popularity_half_life_s": h}), "after")
                   for h in grid["half_life_s"]])  # fmt: skip
    new, _ = best([
        (pop.model_copy(update={"vectors": True, "lr_new": lr, "bound_new": b,
                                "lr_trained": 0.0, "bound_trained": 0.0}), "after")
        for lr in grid["lr_new"] for b in grid["bound_new"]
    ])  # fmt: skip
    trained, _ = best([
        (new.model_copy(update={"lr_trained": lr, "bound_trained": b}), "after")
        for lr in grid["lr_trained"] for b in grid["bound_trained"]
    ])  # fmt: skip
    chosen, how = trained, "after"
    print(f"static all NDCG@10 {static:.4f}; chosen ({how}): {chosen.model_dump()}")
    if args.out:
        doc = {"dataset": args.dataset, "bundle": str(args.bundle), "until": args.until,
               "grid": args.grid, "command": " ".join(sys.argv),
               "events": len(replay.events), "runs": runs,
               "chosen": {"online": chosen.model_dump(), "learn_from": how}}  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
