"""Prequential quality side by side on the IDENTICAL replay (issue 20).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python bench/stream_quality.py --dataset ml-100k \\
        --bundle B [--gru4rec --work W] [--cache DIR] [--rows static,trending] [--out results.json]

B is a bundle trained with ``recstream train --split temporal`` (default T at the
0.7 quantile). Every interaction from T on is replayed once per row, in time
order, test then learn (tools/prequential.py):

- ``static``: the bundle served by the worker's code, the users' sequences
  updated, nothing else learned (``recstream evaluate --protocol stream --no-online``);
- ``online``: the same plus online item learning with the default settings;
- ``trending``: trending popularity alone (decayed click counts, the user's own
  items excluded), its half-life chosen on the validation part of the stream
  (the events between the ``--valid-from`` quantile's time and T);
- ``GRU4Rec`` (``--gru4rec``): RecBole GRU4Rec trained on the bundle's own pre-T
  data (the same leave-one-out cases early-stop it) and scored on the same
  events, reading each user's last 100 known items. Static: it cannot learn new
  items, so an event on a new item is a miss (an honest zero); a user with no
  known item yet is served the bundle's popularity prior, as recstream serves
  them.

Ratios come with a 95 % paired bootstrap interval over the replayed events.

``--cache DIR`` keeps each row's per-event ranks (with what produced them: the
bundle version, the online settings, the trending half-life); a later run with
the same DIR reuses a row whose record matches instead of replaying it, so
``--rows`` can compute rows in separate runs (e.g. static and trending while the
online settings are still being chosen on validation) and a final run prints
the table of them all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_env import ensure_recbole_env
from recbole_files import write_benchmark_files

from inference.settings import InferenceSettings
from recstream.malloc import find_tcmalloc
from recstream.settings import Settings
from tools.prequential import (
    Replay,
    event_labels,
    per_event_ndcg,
    prequential_ranks,
    report,
    rows,
)
from tools.stream_eval import bundle_split, evaluate_stream
from tools.stream_rankers import TrendingRanker
from tools.stream_replay import build_replay
from training.data import Dataset, load_dataset
from training.metrics import paired_bootstrap_ratio
from training.split import EvalCases, Split, known_before, leave_one_out, split_time

log = logging.getLogger("bench.stream_quality")
HALF_LIVES_S = (3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)
EXCLUDE_WINDOW = 100  # the worker's default exclude_window: items a user is never re-served


def choose_trending(ds: Dataset, valid: Replay) -> tuple[float, dict[str, float]]:
    """The half-life with the best validation NDCG@10 (events before T only)."""
    by: dict[str, float] = {}
    for h in HALF_LIVES_S:
        ranks = prequential_ranks(valid, TrendingRanker(valid, half_life_s=h), progress=False)
        by[f"{h:g}"] = float(per_event_ndcg(ranks).mean())
        log.info("trending half-life %gs: validation NDCG@10 %.4f", h, by[f"{h:g}"])
    best = max(HALF_LIVES_S, key=lambda h: (by[f"{h:g}"], -h))
    return best, by


def gru4rec_ranks(
    ds: Dataset, t: float, replay: Replay, bundle: Path, args: argparse.Namespace
) -> tuple[np.ndarray, dict[str, Any]]:
    """(E,) GRU4Rec's rank of each replayed event (k = miss), trained on the pre-T data."""
    known = known_before(ds, t)
    row = known.catalog.rows  # item id -> pre-T row (RecBole token)
    offline = leave_one_out(known.interactions)
    seqs: dict[str, list[str]] = {}
    for e in replay.history:
        seqs.setdefault(e.user_id, []).append(e.item_id)
    users, hists, targets, cases = [], [], [], []
    fallback = np.zeros(len(replay.events), bool)
    for i, e in enumerate(replay.events):
        recent = seqs.get(e.user_id, [])[-EXCLUDE_WINDOW:]
        hist = np.array([row[x] for x in recent if x in row], np.int64)
        if e.item_id in row and len(hist):
            users.append(1_000_000 + i)  # RecBole tokens only; GRU4Rec has no user embedding
            hists.append(hist)
            targets.append(row[e.item_id])
            cases.append(i)
        elif e.item_id in row:
            fallback[i] = True  # no known item yet: the popularity prior, as served
        seqs.setdefault(e.user_id, []).append(e.item_id)
    stream = EvalCases(np.asarray(users, np.int32), hists, np.asarray(targets, np.int32))
    split = Split(offline.train_sequences, offline.valid, stream, np.empty(0, np.int32))
    work = args.work / ds.name
    name = f"stream-{ds.name}"
    out = work / "GRU4Rec.test_ranks.npy"
    if not (args.reuse and out.exists()):
        write_benchmark_files(split, work, name, max_len=100)
        env = ensure_recbole_env(Settings().cache_dir)
        run_env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(args.threads))
        tcmalloc = find_tcmalloc()
        if tcmalloc is not None:
            run_env["LD_PRELOAD"] = str(tcmalloc)
        cmd = [
            "nice", "-n", "10", str(env.python), str(Path(__file__).with_name("recbole_runner.py")),
            "--work", str(work), "--dataset", name, "--model", "GRU4Rec",
            "--n-items", str(len(known.catalog)), "--max-epochs", str(args.max_epochs),
            "--patience", "3", "--time-budget", str(args.time_budget),
            "--threads", str(args.threads), "--train-batch-size", "256", "--max-len", "100",
            "--ranks-only", *(["--resume"] if args.resume else []),
        ]  # fmt: skip
        log.info("RecBole GRU4Rec in %s", work)
        subprocess.run(cmd, cwd=work, env=run_env, check=True)
    case_ranks = np.load(out)
    ranks = np.full(len(replay.events), args.k, np.int64)
    ranks[np.asarray(cases, np.int64)] = np.minimum(case_ranks, args.k)
    if fallback.any():
        pop = np.load(bundle / "popularity.npy")
        ranks[fallback] = _popularity_ranks(replay, fallback, known.catalog.item_ids, pop, args.k)
    info = json.loads((work / "GRU4Rec.json").read_text())
    info.update(scored_by_gru4rec=len(cases), served_popularity=int(fallback.sum()))
    return ranks, info


def _popularity_ranks(
    replay: Replay, which: np.ndarray, ids: list[str], pop: np.ndarray, k: int
) -> np.ndarray:
    """Ranks of the chosen events in the popularity prior's order, the user's items excluded."""
    order = [ids[r] for r in np.argsort(-pop, kind="stable")]
    seqs: dict[str, list[str]] = {}
    for e in replay.history:
        seqs.setdefault(e.user_id, []).append(e.item_id)
    out = []
    for i, e in enumerate(replay.events):
        if which[i]:
            seen = set(seqs.get(e.user_id, [])[-EXCLUDE_WINDOW:])
            top = [x for x in order[: k + len(seen)] if x not in seen][:k]
            out.append(top.index(e.item_id) if e.item_id in top else k)
        seqs.setdefault(e.user_id, []).append(e.item_id)
    return np.asarray(out, np.int64)


def _fmt(m: dict[str, Any]) -> str:
    return "–" if m["n"] == 0 else f"{m['ndcg@10']:.4f} / {m['hr@10']:.4f}"


class RankCache:
    """Per-event ranks of each row, reused when what produced them is the same."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def get(self, row: str, key: dict[str, Any]) -> np.ndarray | None:
        if self.root is None or not (self.root / f"{row}.json").exists():
            return None
        if json.loads((self.root / f"{row}.json").read_text()) != key:
            log.info("cached %s ranks were produced otherwise: replaying", row)
            return None
        log.info("%s: ranks reused from %s", row, self.root)
        return np.load(self.root / f"{row}.npy")

    def put(self, row: str, key: dict[str, Any], ranks: np.ndarray) -> None:
        if self.root is not None:
            np.save(self.root / f"{row}.npy", np.asarray(ranks))
            (self.root / f"{row}.json").write_text(json.dumps(key, sort_keys=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--bundle", type=Path, required=True, help="a temporal-split bundle")
    ap.add_argument("--valid-from", type=float, default=0.6, help="validation stream start")
    ap.add_argument("--gru4rec", action="store_true", help="add the RecBole GRU4Rec row")
    ap.add_argument("--work", type=Path, default=Path("bench-stream-work"))
    ap.add_argument("--reuse", action="store_true", help="reuse GRU4Rec ranks in --work")
    ap.add_argument("--resume", action="store_true", help="resume GRU4Rec's checkpoint")
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--time-budget", type=float, default=5400.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    ap.add_argument("--until", type=float, default=None, help="replay up to this quantile's time")
    ap.add_argument("--cache", type=Path, default=None, help="reuse/keep each row's ranks here")
    ap.add_argument(
        "--rows", default=None, help="rows to compute now (default: all); others from --cache"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    ds = load_dataset(args.dataset)
    _, t = bundle_split(args.bundle, ds)
    end = None if args.until is None else split_time(ds.interactions, args.until)
    replay = build_replay(ds, t, end)
    buckets, new_user = event_labels(replay)
    t_valid = split_time(ds.interactions, args.valid_from)
    valid = build_replay(ds, t_valid, t)
    runs: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"events": len(replay.events), "split_time": t}
    cache = RankCache(args.cache)
    names = ["static", "online", "trending", *(["GRU4Rec"] if args.gru4rec else [])]
    now = set(names if args.rows is None else args.rows.split(","))
    version = json.loads((args.bundle / "manifest.json").read_text())["version"]
    online_settings = InferenceSettings().online

    def row(name: str, key: dict[str, Any], compute: Any) -> None:
        key = {"row": name, "bundle": version, "events": len(replay.events), **key}
        got = None if name in now else cache.get(name, key)
        if got is None and name not in now:
            log.info("%s: not asked for (--rows) and not in --cache: left out", name)
            return
        if got is None:
            t0 = time.perf_counter()
            got = compute()
            info[f"{name}_s"] = time.perf_counter() - t0
            cache.put(name, key, got)
        runs[name] = got

    row(
        "static",
        {},
        lambda: evaluate_stream(args.bundle, ds, online=False, end_quantile=args.until).ranks,
    )
    info["online_settings"] = online_settings.model_dump()
    row(
        "online",
        {"online": online_settings.model_dump()},
        lambda: evaluate_stream(args.bundle, ds, online=True, end_quantile=args.until).ranks,
    )
    half_life, by = choose_trending(ds, valid)
    info["trending"] = {"half_life_s": half_life, "valid_ndcg@10_by_half_life": by}
    row(
        "trending",
        {"half_life_s": half_life},
        lambda: prequential_ranks(
            replay, TrendingRanker(replay, half_life_s=half_life), desc="trending"
        ),
    )
    if args.gru4rec:

        def gru4rec() -> np.ndarray:
            ranks, info["GRU4Rec"] = gru4rec_ranks(ds, t, replay, args.bundle, args)
            return ranks

        row("GRU4Rec", {}, gru4rec)
    if "static" not in runs:
        print("no static row (compute it, or point --cache at it): nothing to compare")
        return 0

    reports = {name: report(r, buckets, new_user, k=args.k) for name, r in runs.items()}
    labels = [label for label, _ in rows(reports["static"])]
    print(f"\n{args.dataset}: {len(replay.events)} events from T={t:.0f}; NDCG@10 / HR@10 (n)")
    print("| bucket | n | " + " | ".join(runs) + " |")
    print("|---|---:|" + "---:|" * len(runs))
    for j, label in enumerate(labels):
        cells = [_fmt(list(rows(reports[name]))[j][1]) for name in runs]
        n = list(rows(reports["static"]))[j][1]["n"]
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")
    ndcg = {name: per_event_ndcg(r, args.k) for name, r in runs.items()}
    warm = np.asarray(buckets) == "warm"
    ratios: dict[str, Any] = {}
    pairs = [("online", "static", None), ("online", "static", warm), ("online", "trending", None)]
    pairs.append(("online", "GRU4Rec", None))
    for a, b, mask in pairs:
        if a not in runs or b not in runs:
            continue
        sel = np.ones(len(replay.events), bool) if mask is None else mask
        r, lo, hi = paired_bootstrap_ratio(ndcg[a][sel], ndcg[b][sel])
        key = f"{a}/{b}" + ("" if mask is None else " warm_items")
        ratios[key] = {"ratio": r, "ci95": [lo, hi]}
        print(f"{key}: {r:.3f} ({lo:.3f}-{hi:.3f})")
    # the new-item target: after 5+ stream clicks, NDCG@10 >= 0.5x the same run's warm items
    five_plus = np.isin(np.asarray(buckets), ["5-19", "20+"])
    for name in runs:
        w, f = ndcg[name][warm], ndcg[name][five_plus]
        if len(f) and w.mean() > 0:
            ratios[f"{name} new_5+/warm_items"] = {"ratio": float(f.mean() / w.mean()),
                                                   "n_new_5+": len(f)}  # fmt: skip
            print(f"{name}: new items at 5+ clicks / warm items: {f.mean() / w.mean():.3f} "
                  f"(n={len(f)})")  # fmt: skip
    info["load_average"] = os.getloadavg()
    if args.out:
        doc = {"dataset": args.dataset, "bundle": str(args.bundle), "info": info,
               "stream": reports, "ratios": ratios}  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
