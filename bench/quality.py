"""Offline quality side by side, on the IDENTICAL split (issue 3).

    PYTHONPATH=. python bench/quality.py --dataset ml-100k

Rows: popularity (train counts), RecBole 1.2.1 SASRec and GRU4Rec (trained in their
own venv, bench/recbole_env.py, fed our split as benchmark files, early-stopped on
our masked valid NDCG@10, scored here with training/metrics.py), and recstream's
model through ``training.train.train_bundle`` (bench/recstream_side.py) when that
exists; otherwise the row says "recstream model not available" (never a made-up number).

Main columns use time-ordered leave-one-out; warm/cold columns use the seeded
10% cold-item split (cold items never reach training; ID-only models get random
embeddings for them, which is what they would do in production). Text-only users:
synthetic genre+decade queries, genre precision@10 and target hit@10/@50.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# bench/ for the sibling helpers, the repo root for the project's packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import recstream_side
from recbole_env import ensure_recbole_env
from recbole_files import write_benchmark_files

from recstream.malloc import find_tcmalloc, reexec_with_tcmalloc
from recstream.settings import Settings
from training.baselines import Popularity
from training.data import Dataset, load_dataset
from training.metrics import evaluate, evaluate_matrix, top_k
from training.queries import (
    decade_precision_at_k,
    genre_precision_at_k,
    query_hits,
    synthetic_queries,
)
from training.split import Split, cold_item_split, cold_target_mask, leave_one_out

log = logging.getLogger("bench.quality")
TCMALLOC = find_tcmalloc()


@dataclass
class Row:
    name: str
    loo: dict[str, float] = field(default_factory=dict)
    warm: dict[str, float] = field(default_factory=dict)
    cold: dict[str, float] = field(default_factory=dict)
    queries: dict[str, float] = field(default_factory=dict)
    train_s: float | None = None
    note: str = ""


def run_recbole(
    model: str,
    split: Split,
    n_items: int,
    work: Path,
    max_epochs: int,
    args: argparse.Namespace,
    python: Path,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train one RecBole model on ``split`` in its venv; test scores (B, N) + run info."""
    name = f"bench-{args.dataset}"  # not "ml-100k": RecBole would load its bundled copy
    write_benchmark_files(split, work, name, max_len=args.max_len)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(args.threads))
    if TCMALLOC is not None:
        env["LD_PRELOAD"] = str(TCMALLOC)
    cmd = [
        "nice", "-n", "10", str(python), str(Path(__file__).with_name("recbole_runner.py")),
        "--work", str(work), "--dataset", name, "--model", model, "--n-items", str(n_items),
        "--max-epochs", str(max_epochs), "--patience", str(args.patience),
        "--time-budget", str(args.time_budget), "--threads", str(args.threads),
        "--train-batch-size", str(args.train_batch_size), "--max-len", str(args.max_len),
        *(["--resume"] if args.resume else []),
    ]  # fmt: skip
    log.info("RecBole %s in %s", model, work)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail: list[str] = []
    for line in proc.stderr:
        if line.startswith("{") or "budget" in line:
            log.info("%s %s", model, line.strip())
        tail = [*tail, line][-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"RecBole {model} failed:\n{''.join(tail)}")
    info = json.loads((work / f"{model}.json").read_text())
    info["wall_s"] = time.perf_counter() - t0
    return np.load(work / f"{model}.test_scores.npy"), info


def recstream_row(
    ds: Dataset, loo: Split, cold_mask: np.ndarray, args: argparse.Namespace, out: Path
) -> Row:
    entry = recstream_side.load_entry_point()
    if isinstance(entry, str):
        log.warning("%s", entry)
        return Row("recstream", note=entry)
    row = Row("recstream" + (" (quick preset)" if args.recstream_quick else ""))
    metrics, row.train_s = recstream_side.train_and_read(
        ds, "loo", out, quick=args.recstream_quick, n_queries=args.queries
    )
    row.loo = recstream_side.check_cases(metrics, "all", len(loo.test))
    row.queries = recstream_side.query_row(metrics)
    row.note = (
        f"{metrics.get('epochs_run')} epochs (best {metrics.get('best_epoch')}), text tower "
        f"{metrics.get('text_tower', {}).get('mode', '?')}; train s = whole train_bundle"
    )
    if not args.no_cold and "cold" in args.splits.split(","):
        cm, _ = recstream_side.train_and_read(
            ds, "cold", out, quick=args.recstream_quick, n_queries=args.queries
        )
        row.cold = recstream_side.check_cases(cm, "cold_target", int(cold_mask.sum()))
        row.warm = recstream_side.check_cases(cm, "warm_target", int((~cold_mask).sum()))
    return row


def query_eval(score_queries: Any, ds: Dataset, n: int) -> dict[str, float]:
    queries = synthetic_queries(ds.catalog, n=n, seed=0)
    scores = np.asarray(score_queries([q.text for q in queries]))
    top = top_k(scores, 50)
    return {
        "genre_p@10": genre_precision_at_k(top, queries, ds.catalog),
        "decade_p@10": decade_precision_at_k(top, queries, ds.catalog),
        **query_hits(top, queries),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k, ml-1m or an event-log path")
    ap.add_argument("--models", default="pop,sasrec,gru4rec,recstream")
    ap.add_argument("--no-cold", action="store_true", help="same as --splits loo")
    ap.add_argument(
        "--splits",
        default="loo,cold",
        help="RecBole runs: loo (main columns), cold (warm/cold columns) or both",
    )
    ap.add_argument("--max-epochs", type=int, default=20, help="RecBole epoch cap")
    ap.add_argument(
        "--cold-max-epochs",
        type=int,
        default=None,
        help="epoch cap for the cold-split RecBole runs (default: --max-epochs)",
    )
    ap.add_argument("--train-batch-size", type=int, default=256, help="RecBole (its default: 2048)")
    ap.add_argument("--patience", type=int, default=3, help="RecBole early stopping (epochs)")
    ap.add_argument(
        "--max-len",
        type=int,
        default=50,
        help="RecBole: most recent items a model reads (MAX_ITEM_LIST_LENGTH; its default 50). "
        "recstream reads 100 on data up to 300k interactions",
    )
    ap.add_argument(
        "--time-budget",
        type=float,
        default=900.0,
        help="RecBole: no new epoch starts after this many seconds of training",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--resume",
        action="store_true",
        help="RecBole: continue each run from its per-epoch checkpoint in --work\n"
        "(raise --time-budget: it counts the earlier sittings' training too)",
    )
    ap.add_argument(
        "--recstream-quick",
        action="store_true",
        help="train recstream with TrainConfig.quick_preset() (frozen tower)",
    )
    ap.add_argument("--queries", type=int, default=500, help="synthetic text queries")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir for RecBole files")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    models = set(args.models.split(","))
    splits = {"loo"} if args.no_cold else set(args.splits.split(","))
    cache = Settings().cache_dir
    work = args.work or cache / "bench-quality" / args.dataset

    ds = load_dataset(args.dataset)
    n = len(ds.catalog)
    loo = leave_one_out(ds.interactions)
    cold = cold_item_split(ds, frac=0.1, seed=0)
    cold_mask = cold_target_mask(cold)
    log.info(
        "%s: %d users, %d items, %d interactions; %d test cases, %d with a cold target",
        ds.name, ds.interactions.n_users, n, len(ds.interactions), len(loo.test), cold_mask.sum(),
    )  # fmt: skip
    rows: list[Row] = []

    if "pop" in models:
        row = Row("popularity")
        t0 = time.perf_counter()
        pop = Popularity(loo.train_sequences, n)
        row.train_s = time.perf_counter() - t0
        row.loo = evaluate(pop, loo.test, n, progress=False)
        if "cold" in splits:
            pop_c = Popularity(cold.train_sequences, n)
            row.warm = evaluate(pop_c, cold.test, n, subset=~cold_mask, progress=False)
            row.cold = evaluate(pop_c, cold.test, n, subset=cold_mask, progress=False)
        row.queries = query_eval(
            lambda texts: pop([np.empty(0, np.int64)] * len(texts)), ds, args.queries
        )
        rows.append(row)

    recbole = [m for m in ("SASRec", "GRU4Rec") if m.lower() in models]
    if recbole:
        python = ensure_recbole_env(cache).python
        # leave-one-out first (the main comparison), cold-item runs after, so a
        # run cut short still has the main numbers; the table is printed as rows land
        recbole_rows = {m: Row(f"RecBole {m}") for m in recbole}
        rows += recbole_rows.values()
        for model in recbole if "loo" in splits else []:
            row = recbole_rows[model]
            scores, info = run_recbole(model, loo, n, work / "loo", args.max_epochs, args, python)
            row.loo = evaluate_matrix(scores, loo.test)
            row.train_s = info["train_seconds"]
            row.note = (
                f"{info['epochs_run']} epochs (best {info['best_epoch'] + 1}, cap "
                f"{info['max_epochs']}, patience {info['patience']}, "
                f"batch {info['train_batch_size']})"
            )
            progress(ds.name, rows, loo, cold_mask, args.json)
        for model in recbole if "cold" in splits else []:
            row = recbole_rows[model]
            scores, info = run_recbole(
                model, cold, n, work / "cold", args.cold_max_epochs or args.max_epochs, args, python
            )
            row.warm = evaluate_matrix(scores, cold.test, subset=~cold_mask)
            row.cold = evaluate_matrix(scores, cold.test, subset=cold_mask)
            row.note += f"; cold split: {info['epochs_run']} epochs, {info['train_seconds']:.0f} s"
            progress(ds.name, rows, loo, cold_mask, args.json)

    if "recstream" in models:
        rows.append(recstream_row(ds, loo, cold_mask, args, work / "bundles"))

    progress(ds.name, rows, loo, cold_mask, args.json)
    return 0


def progress(
    name: str, rows: list[Row], loo: Split, cold_mask: np.ndarray, out: Path | None
) -> None:
    print(render(name, rows, len(loo.test), int(cold_mask.sum())) + "\n", flush=True)
    if out is not None:
        out.write_text(json.dumps([r.__dict__ for r in rows], indent=2))


def render(name: str, rows: list[Row], n_test: int, n_cold: int) -> str:
    def f(d: dict[str, float], k: str) -> str:
        return f"{d[k]:.4f}" if k in d else "–"

    lines = [
        f"### {name}: full ranking over all items, history masked; {n_test} test users "
        f"(cold split: {n_cold} cold-target cases)",
        "",
        "| model | NDCG@10 | NDCG@20 | Recall@10 | Recall@20 | MRR@10 | Cov@10 "
        "| warm NDCG@10 | cold NDCG@10 | text genre P@10 | text hit@10 | text hit@50 "
        "| train s | notes |",
        "|---|" + "---:|" * 12 + "---|",
    ]
    for r in rows:
        cells = [f(r.loo, k) for k in ("ndcg@10", "ndcg@20", "recall@10", "recall@20",
                                       "mrr@10", "coverage@10")]  # fmt: skip
        cells += [f(r.warm, "ndcg@10"), f(r.cold, "ndcg@10")]
        cells += [f(r.queries, k) for k in ("genre_p@10", "hit@10", "hit@50")]
        cells.append(f"{r.train_s:.1f}" if r.train_s is not None else "–")
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {r.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    # recstream's row trains in this process: same allocator as the RecBole rows.
    reexec_with_tcmalloc([sys.executable, *sys.argv])
    sys.exit(main())
