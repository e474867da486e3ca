"""The warm/cold frontier of the item residual's norm bound (issue 20, section 3).

    PYTHONPATH=. python bench/item_bound.py --dataset ml-100k --split cold --seeds 0,1,2 \\
        --bounds none,1.0,0.5,0.3,0.2,0.1 --work DIR [--threads 1]

Each (seed, bound) trains what ``recstream train --split SPLIT --seed S --delta-bound B``
trains (``training.train.fit``: the default config, text tower then sequence stage; the
bundle's export is left out; a seed's bounds share its text stage, which does not depend
on the bound) without its wall-clock budgets, which would cut runs short
at load-dependent points on a shared machine (``--max-epochs`` caps the sequence stage
instead, where the budget binds on a quiet machine: ml-1m), scores the validation and
test cases with the torch models (full ranking, history masked, as the bundle's
metrics) and the synthetic text queries
(``training.offline_eval.query_metrics``), and saves the per-case NDCG@10, the item,
content and query vectors in ``WORK/<dataset>-<split>-s<seed>-b<bound>.npz`` with its
metrics in a ``.json`` beside it. A run already in WORK is loaded, not trained again, so
the bench resumes and a later call with more bounds or seeds adds to the table. A seed's
tuned text stage is kept too (``...-s<seed>-text.pt``), so the bounds can be trained one
call (one lock hold) at a time on the same tower.

It then prints, per bound (seeds pooled): validation and test NDCG@10 of all, cold-target
and warm-target cases, the cold/warm ratio, and each bound's NDCG@10 against the
unbounded run's on the same cases (paired bootstrap over the cases of all seeds). On a
cold split the bound validation picks is printed by two rules: the best validation
cold/warm ratio among the bounds whose validation warm NDCG@10 is within 3 % of the
unbounded's (the target's trade-off, judged on validation), and the best validation
NDCG@10 over all cases. Test figures never choose anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.metrics import mask_history, ndcg_per_case, paired_bootstrap_ratio, target_ranks
from training.split import EvalCases, Split, cold_target_mask


def _bound_name(bound: float | None) -> str:
    return "none" if bound is None else f"{bound:g}"


def _parse_bounds(text: str) -> list[float | None]:
    out: list[float | None] = []
    for part in text.split(","):
        part = part.strip()
        out.append(None if part in ("none", "inf", "") else float(part))
    return out


def user_vectors(encoder: Any, items: np.ndarray, cases: EvalCases, batch: int = 256) -> np.ndarray:
    """(B,D) the torch encoder's user vectors for each case's history."""
    from training.offline_eval import torch_user_fn
    from training.sequence_train import pad_histories

    n, d = items.shape
    padded = np.concatenate([items, np.zeros((1, d), np.float32)])
    run = torch_user_fn(encoder)
    out = []
    for i in range(0, len(cases), batch):
        idx = pad_histories(cases.histories[i : i + batch], encoder.cfg.max_len, n)
        out.append(run(padded[idx], (idx != n).astype(np.float32)))
    return np.concatenate(out)


def case_ndcg(users: np.ndarray, items: np.ndarray, cases: EvalCases, batch: int = 512):
    """(B,) NDCG@10 of each case: full ranking, the case's history masked."""
    out = []
    for i in range(0, len(cases), batch):
        sel = slice(i, i + batch)
        scores = mask_history(users[sel] @ items.T, cases.histories[sel])
        out.append(ndcg_per_case(target_ranks(scores, cases.targets[sel]), 10))
    return np.concatenate(out)


def config(args: argparse.Namespace, seed: int, bound: float | None) -> Any:
    """The default TrainConfig for one (seed, bound), without wall-clock budgets."""
    from training.train import TrainConfig

    base = TrainConfig.quick_preset() if args.quick else TrainConfig()
    # no wall-clock budgets: on a shared machine they would stop the text tuning and the
    # sequence stage at load-dependent points, and the bounds would not be compared on
    # equal training; --max-epochs stands in for a budget that binds on a quiet machine
    text = dataclasses.replace(base.text, seed=seed, max_minutes=1e6)
    seq = dataclasses.replace(base.seq, seed=seed, delta_bound=bound, max_minutes=1e6)
    if args.max_epochs:
        seq = dataclasses.replace(seq, epochs=args.max_epochs)
    return dataclasses.replace(
        base, split=args.split, seed=seed, threads=args.threads, text=text, seq=seq
    )


def save_text_stage(path: Path, text: Any) -> None:
    """Keep a seed's tuned text stage, so a later call (one bound per lock hold on a shared
    machine) trains only its sequence stage on the same tower."""
    import torch

    state = {
        "encoder": text.encoder.state_dict(),
        "text_vectors": text.text_vectors,
        "tune": dataclasses.asdict(text.tune),
        "seconds": text.seconds,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_text_stage(path: Path, cfg: Any) -> Any:
    """The text stage :func:`save_text_stage` kept (LoRA is merged into plain modules, so
    every mode's tower loads into the pretrained one)."""
    import torch

    from training.text_finetune import TextTuneReport
    from training.text_tower import load_text_encoder, minilm_dir
    from training.tokenization import load_tokenizer
    from training.train import TunedText

    state = torch.load(path, weights_only=False)
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", cfg.text.max_length)
    encoder = load_text_encoder(Path(cfg.text_model_dir) if cfg.text_model_dir else None)
    encoder.load_state_dict(state["encoder"])
    tune = TextTuneReport(**state["tune"])
    return TunedText(tok, encoder, state["text_vectors"], tune, state["seconds"])


def run_one(dataset: Any, split: Split, cfg: Any, text: Any, quiet: bool):
    """Train one (seed, bound)'s sequence stage on the seed's text stage; (arrays, metrics)."""
    import torch

    from training.offline_eval import query_metrics
    from training.text_tower import encode_texts
    from training.train import fit_sequence

    seed, bound = cfg.seed, cfg.seq.delta_bound
    t0 = time.perf_counter()
    fitted = fit_sequence(dataset, split, cfg, text, progress=not quiet)
    items = fitted.item_vectors
    content = fitted.sequence.space.export_content()
    enc = fitted.sequence.encoder
    arrays: dict[str, np.ndarray] = {"items": items, "content": content}
    metrics: dict[str, Any] = {
        "seed": seed,
        "bound": bound,
        "best_epoch": fitted.sequence.best_epoch,
        "epochs_run": len(fitted.sequence.history),
        "valid_history": [h["ndcg@10"] for h in fitted.sequence.history],
        "timings": fitted.timings,
    }
    for part in ("valid", "test"):
        cases: EvalCases = getattr(split, part)
        users = user_vectors(enc, items, cases)
        arrays[f"{part}_users"] = users
        arrays[f"{part}_ndcg"] = case_ndcg(users, items, cases)

    def encode(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return encode_texts(fitted.text_encoder, fitted.tokenizer, texts, progress=False)

    from training.queries import synthetic_queries

    metrics["text_query"] = query_metrics(encode, items, dataset.catalog, cfg.n_queries)
    # the evaluation's queries (seed 0) and another draw of them (seed 1), for post-hoc looks
    # at hubness remedies (choose on the second draw, report on the first)
    for qseed in (0, 1):
        qs = synthetic_queries(dataset.catalog, n=cfg.n_queries, seed=qseed)
        arrays[f"queries{qseed}"] = encode([q.text for q in qs])
    # the same queries ranked by raw cosine, items without usable text included (before the rule)
    metrics["text_query_raw"] = query_metrics(
        encode, items, dataset.catalog, cfg.n_queries, text_evidence=False
    )
    res = fitted.sequence.space.residual.detach()
    norm = res.norm(dim=-1) / fitted.sequence.space.content().detach().norm(dim=-1)
    warm = fitted.sequence.space.warm.bool()
    metrics["residual_over_content"] = {
        "mean": float(norm[warm].mean()),
        "p50": float(norm[warm].median()),
        "max": float(norm[warm].max()),
    }
    cos = (items * content).sum(1)[warm.numpy()]
    metrics["cos_item_content"] = {"mean": float(cos.mean()), "min": float(cos.min())}
    metrics["seconds"] = time.perf_counter() - t0
    return arrays, metrics


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _ratio_ci(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, ...]:
    """mean(a) / mean(b) over two independent case sets, percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    ra = rng.integers(0, len(a), size=(n, len(a)))
    rb = rng.integers(0, len(b), size=(n, len(b)))
    ratios = a[ra].mean(1) / np.maximum(b[rb].mean(1), 1e-12)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return a.mean() / max(b.mean(), 1e-12), float(lo), float(hi)


def main() -> int:
    from recstream.malloc import reexec_with_tcmalloc

    reexec_with_tcmalloc([sys.executable, *sys.argv])  # as `recstream train`: 1.8x faster
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--split", choices=("cold", "loo"), default="cold")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--bounds", default="none,1.0,0.5,0.3,0.2,0.1", help="'none' = unbounded")
    ap.add_argument("--work", type=Path, required=True, help="where runs are saved and found")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per training")
    ap.add_argument(
        "--max-epochs", type=int, default=None,
        help="cap on sequence epochs (default: the config's; early stopping still applies)",
    )  # fmt: skip
    ap.add_argument("--no-train", action="store_true", help="only tabulate the saved runs")
    ap.add_argument(
        "--posthoc", default=None,
        help="comma-separated bounds applied AFTER training to each seed's unbounded run "
        "(served vectors moved into the cap; user vectors kept): a cheap preview, not a "
        "bounded training",
    )  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--quick", action="store_true", help="the --quick preset (a smoke test)")
    args = ap.parse_args()

    from training.data import load_dataset
    from training.train import make_split

    ds = load_dataset(args.dataset)
    seeds = [int(s) for s in args.seeds.split(",")]
    bounds = _parse_bounds(args.bounds)
    args.work.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[int, float | None], tuple[dict, dict]] = {}
    splits: dict[int, Split] = {}
    for seed in seeds:
        from training.train import TrainConfig, tune_text

        splits[seed] = make_split(ds, TrainConfig(split=args.split, seed=seed))
        text = None  # the seed's text stage, shared by its bounds (it does not depend on them)
        text_file = args.work / f"{args.dataset}-{args.split}-s{seed}-text.pt"
        for bound in bounds:
            stem = args.work / f"{args.dataset}-{args.split}-s{seed}-b{_bound_name(bound)}"
            if stem.with_suffix(".json").is_file():
                arrays = dict(np.load(stem.with_suffix(".npz")))
                metrics = json.loads(stem.with_suffix(".json").read_text())
            elif args.no_train:
                continue
            else:
                print(f"training seed {seed} bound {_bound_name(bound)}", flush=True)
                cfg = config(args, seed, bound)
                if text is None and text_file.is_file():
                    text = load_text_stage(text_file, cfg)
                if text is None:
                    text = tune_text(ds, splits[seed], cfg, progress=not args.quiet)
                    save_text_stage(text_file, text)
                arrays, metrics = run_one(ds, splits[seed], cfg, text, args.quiet)
                np.savez(stem.with_suffix(".npz"), **arrays)
                stem.with_suffix(".json").write_text(json.dumps(metrics, indent=1))
            runs[(seed, bound)] = (arrays, metrics)
    _table(args, seeds, bounds, runs, splits)
    if args.posthoc:
        _posthoc(args, seeds, _parse_bounds(args.posthoc), runs, splits)
    return 0


def cap(items: np.ndarray, content: np.ndarray, bound: float) -> np.ndarray:
    """Each unit row of ``items`` moved onto the cap ``cos(item, content) >= sqrt(1 - b^2)``
    around its unit ``content`` row (the directions ``L2norm(c + r)``, ``||r|| <= b||c||``,
    can take), along the great circle; rows inside stay."""
    # b = 1: up to 90 degrees; b > 1: r can cancel c, so every direction
    limit = float(np.arcsin(bound)) if bound <= 1.0 else np.pi
    cos = np.clip((items * content).sum(1), -1.0, 1.0)
    angle = np.arccos(cos)
    over = angle > limit + 1e-7
    ortho = items - cos[:, None] * content
    ortho /= np.maximum(np.linalg.norm(ortho, axis=1, keepdims=True), 1e-12)
    moved = np.cos(limit) * content + np.sin(limit) * ortho
    return np.where(over[:, None], moved, items).astype(np.float32)


def _posthoc(args, seeds, bounds, runs, splits) -> None:
    """The unbounded run's served item vectors capped after training, scored with its
    user vectors (a preview of the frontier's shape: a bounded training also moves the
    user vectors and the encoder, so it is not the same figure)."""
    print("post hoc (unbounded run's vectors capped after training; user vectors kept):")
    print("| seed | bound | valid all | warm | cold | test all | warm | cold |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for seed in seeds:
        if (seed, None) not in runs:
            continue
        arrays = runs[(seed, None)][0]
        for bound in [None, *bounds]:
            items = arrays["items"]
            if bound is not None:
                items = cap(items, arrays["content"], bound)
            cells = []
            for part in ("valid", "test"):
                cases = getattr(splits[seed], part)
                nd = case_ndcg(arrays[f"{part}_users"], items, cases)
                cold = cold_target_mask(splits[seed], cases)
                cells += [_mean(nd), _mean(nd[~cold]), _mean(nd[cold])]
            row = " | ".join(f"{x:.4f}" for x in cells)
            print(f"| {seed} | {_bound_name(bound)} | {row} |")


def _table(args, seeds, bounds, runs, splits) -> None:
    """Print the frontier (seeds pooled) and the bounds validation picks."""
    cold_split = args.split == "cold"
    rows = []
    for bound in bounds:
        have = [s for s in seeds if (s, bound) in runs]
        if not have:
            continue
        row: dict[str, Any] = {"bound": _bound_name(bound), "seeds": have}
        for part in ("valid", "test"):
            nd = {k: [] for k in ("all", "cold", "warm", "base_all", "base_warm", "base_cold")}
            for s in have:
                a = runs[(s, bound)][0][f"{part}_ndcg"]
                cases = getattr(splits[s], part)
                cold = cold_target_mask(splits[s], cases) if cold_split else np.zeros(len(a), bool)
                nd["all"].append(a)
                nd["cold"].append(a[cold])
                nd["warm"].append(a[~cold])
                if (s, None) in runs:
                    b = runs[(s, None)][0][f"{part}_ndcg"]
                    nd["base_all"].append(b)
                    nd["base_warm"].append(b[~cold])
                    nd["base_cold"].append(b[cold])
            cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in nd.items()}
            row[f"{part}_all"] = _mean(cat["all"])
            row[f"{part}_warm"] = _mean(cat["warm"])
            if cold_split:
                row[f"{part}_cold"] = _mean(cat["cold"])
                row[f"{part}_ratio"] = _ratio_ci(cat["cold"], cat["warm"])
            if len(cat["base_warm"]) == len(cat["warm"]) and len(cat["warm"]):
                key = "warm" if cold_split else "all"
                row[f"{part}_vs_none"] = paired_bootstrap_ratio(
                    cat[key], cat[f"base_{key}"], n=2000
                )
                if cold_split and cat["base_cold"].sum() > 0:
                    row[f"{part}_cold_vs_none"] = paired_bootstrap_ratio(
                        cat["cold"], cat["base_cold"], n=2000
                    )
        tq = [runs[(s, bound)][1]["text_query"] for s in have]
        row["genre_p10"] = float(np.mean([t["genre_precision@10"] for t in tq]))
        row["hub"] = [(t.get("hub_share_unmatched@10"), t.get("hub_item_unmatched@10")) for t in tq]
        row["cos_min"] = min(runs[(s, bound)][1]["cos_item_content"]["min"] for s in have)
        row["epochs"] = [
            f"{runs[(s, bound)][1]['best_epoch']}/{runs[(s, bound)][1]['epochs_run']}" for s in have
        ]
        rows.append(row)

    def f(x: Any) -> str:
        if isinstance(x, tuple):
            return f"{x[0]:.3f} ({x[1]:.3f}–{x[2]:.3f})"
        if isinstance(x, float):
            return f"{x:.4f}"
        return str(x)

    cols = ["bound", "seeds", "valid_all", "valid_warm"]
    if cold_split:
        cols += ["valid_cold", "valid_ratio"]
    cols += ["valid_vs_none", "test_all", "test_warm"]
    if cold_split:
        cols += ["test_cold", "test_ratio", "test_cold_vs_none"]
    cols += ["test_vs_none", "genre_p10", "cos_min", "epochs", "hub"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(f(row.get(c, "–")) for c in cols) + " |")
    if not cold_split or not rows or rows[0]["bound"] != "none":
        return
    base = rows[0]
    ok = [r for r in rows if r["valid_warm"] >= 0.97 * base["valid_warm"]]
    pick = max(ok, key=lambda r: r["valid_ratio"][0])
    best_all = max(rows, key=lambda r: r["valid_all"])
    print(
        f"validation picks: bound {pick['bound']} (best validation cold/warm "
        f"{pick['valid_ratio'][0]:.3f} with validation warm >= 97 % of unbounded); "
        f"bound {best_all['bound']} by validation NDCG@10 over all cases "
        f"({best_all['valid_all']:.4f})"
    )


if __name__ == "__main__":
    sys.exit(main())
