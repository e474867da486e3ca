"""Cold-item diagnostics of a cold-split bundle, through its ONNX files (as served).

    PYTHONPATH=. python bench/cold_items.py BUNDLE_DIR [--dataset ml-100k]

Prints, for the test users, how the scores of cold items (never in training)
compare with those of warm items, where cold targets rank overall and among cold
items, and how often cold items reach anybody's top-10. This is how the
"cold-item NDCG@10 = 0.0" failure was traced (bench/RESULTS.md, training).

``--boost`` also prints what a global new-item boost would trade: cold item
vectors replaced by ``m_warm + k * (v_cold - m_text)`` (``m_warm`` the mean
trained vector of warm items, ``m_text`` the mean of their text-only vectors
from the bundle's text encoder; a score-space z-score match for k = the spread
ratio), on the validation and the test cases. Analysis only: the vectors
are no longer unit-norm, which the bundle format does not allow.

``--impute`` prints what content-based residual imputation would give: each cold
item borrows what behaviour added to its ``K`` text-nearest warm items (trained
vector minus text-only vector, softmax-weighted by text cosine at temperature
0.05), scaled by ``alpha``, and is renormalised (unit-norm, so servable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def user_vectors(sess, vectors: np.ndarray, histories, max_len: int) -> np.ndarray:
    """(B,D) user vectors of the ONNX sequence encoder; histories see the bundle's item vectors."""
    from training.sequence_train import pad_histories

    n, d = vectors.shape
    padded = np.concatenate([vectors, np.zeros((1, d), np.float32)])
    out = []
    for i in range(0, len(histories), 256):
        idx = pad_histories(histories[i : i + 256], max_len, n)
        x, m = padded[idx], (idx != n).astype(np.float32)
        out.append(sess.run(["user_vector"], {"item_vectors": x, "mask": m})[0])
    return np.concatenate(out)


def main() -> None:
    from training.data import load_dataset
    from training.metrics import mask_history, metrics_from_ranks, target_ranks, top_k
    from training.onnx_export import session
    from training.split import cold_item_split, cold_target_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--boost", action="store_true", help="print the new-item boost trade-off")
    ap.add_argument(
        "--impute", action="store_true", help="print kNN residual imputation for cold items"
    )
    args = ap.parse_args()

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    cfg = manifest["config"]
    if cfg.get("split") != "cold":
        raise SystemExit(f"{args.bundle} was not trained on a cold split")
    ds = load_dataset(args.dataset)
    split = cold_item_split(ds, frac=cfg.get("cold_frac", 0.1), seed=cfg.get("seed", 0))
    vectors = np.load(args.bundle / "item_vectors.npy")
    n = len(vectors)
    cold = np.zeros(n, bool)
    cold[split.cold_items] = True
    warm = np.zeros(n, bool)
    for seq in split.train_sequences:
        warm[seq] = True
    seq_sess = session(args.bundle / manifest["sequence_encoder"]["file"], args.threads)
    max_len = int(manifest["sequence_encoder"]["max_length"])
    hist = split.test.histories
    users = {
        "valid": user_vectors(seq_sess, vectors, split.valid.histories, max_len),
        "test": user_vectors(seq_sess, vectors, hist, max_len),
    }
    scores = users["test"] @ vectors.T
    masked = mask_history(scores, hist)
    is_cold = cold_target_mask(split)

    print(f"{args.bundle.name}: {n} items, {cold.sum()} cold, {warm.sum()} warm")
    for name, sel in (("warm", warm), ("cold", cold)):
        s = scores[:, sel]
        print(
            f"  {name} item scores: mean {s.mean():+.3f}, per-user std {s.std(1).mean():.3f}, "
            f"per-user max {s.max(1).mean():+.3f}"
        )
    ranks = target_ranks(masked[is_cold], split.test.targets[is_cold])
    only_cold = np.where(cold[None], masked[is_cold], -np.inf)
    cold_ranks = target_ranks(only_cold, split.test.targets[is_cold])
    print(
        f"  cold targets ({is_cold.sum()} cases): rank median {np.median(ranks):.0f} / {n} "
        f"overall, {np.median(cold_ranks):.0f} / {cold.sum()} among cold items; "
        f"NDCG@10 {metrics_from_ranks(ranks)['ndcg@10']:.4f}"
    )
    warm_ranks = target_ranks(masked[~is_cold], split.test.targets[~is_cold])
    print(f"  warm targets: NDCG@10 {metrics_from_ranks(warm_ranks)['ndcg@10']:.4f}")
    top = top_k(masked, 10)
    print(
        f"  cold share of all users' top-10: {cold[top].mean():.3f} "
        f"(catalog share {cold.mean():.3f})"
    )
    if args.boost or args.impute:
        text_only = text_only_vectors(args.bundle, manifest, ds, args.threads)
    if args.boost:
        boost_tradeoff(split, vectors, text_only, users, cold, warm)
    if args.impute:
        impute_tradeoff(split, vectors, text_only, users, cold, warm)


def text_only_vectors(bundle: Path, manifest: dict, ds, threads: int) -> np.ndarray:
    """(N,D) every item's text-only vector from the bundle's text encoder (as served)."""
    from training.onnx_export import onnx_text_vectors, session
    from training.tokenization import load_tokenizer

    tok = load_tokenizer(bundle / "tokenizer.json", int(manifest["text_encoder"]["max_length"]))
    text_sess = session(bundle / manifest["text_encoder"]["file"], threads)
    return onnx_text_vectors(text_sess, tok, ds.catalog.texts)  # batches internally


def cold_warm_cells(split, users, vectors: np.ndarray) -> list[float]:
    """Cold / warm NDCG@10 on the valid then the test cases; histories keep served vectors."""
    from training.metrics import evaluate_matrix
    from training.split import cold_target_mask

    cells = []
    for name, c in (("valid", split.valid), ("test", split.test)):
        sc = users[name] @ vectors.T
        is_cold = cold_target_mask(split, c)
        cells += [
            evaluate_matrix(sc, c, subset=is_cold)["ndcg@10"],
            evaluate_matrix(sc, c, subset=~is_cold)["ndcg@10"],
        ]
    return cells


def boost_tradeoff(split, vectors, text_only, users, cold, warm) -> None:
    m_warm, m_text = vectors[warm].mean(0), text_only[warm].mean(0)
    print("  new-item boost k: valid cold / warm NDCG@10 | test cold / warm NDCG@10")
    for k in (1.0, 1.2, 1.4, 1.6, 1.8):
        boosted = vectors.copy()
        boosted[cold] = m_warm + k * (text_only[cold] - m_text)
        cells = cold_warm_cells(split, users, boosted)
        print(f"  k={k:.1f}: {cells[0]:.4f} / {cells[1]:.4f} | {cells[2]:.4f} / {cells[3]:.4f}")


def impute_tradeoff(split, vectors, text_only, users, cold, warm, temp: float = 0.05) -> None:
    warm_rows = np.flatnonzero(warm)
    added = vectors[warm_rows] - text_only[warm_rows]  # what behaviour moved each warm item
    sim = text_only[cold] @ text_only[warm_rows].T  # (cold, warm) text cosine
    print("  kNN imputation K, alpha: valid cold / warm NDCG@10 | test cold / warm NDCG@10")
    for k in (5, 20):
        top = np.argsort(-sim, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, 1)
        w = np.exp((s - s[:, :1]) / temp)
        borrowed = ((w / w.sum(1, keepdims=True))[:, :, None] * added[top]).sum(1)
        for alpha in (0.5, 1.0, 1.5):
            imputed = vectors.copy()
            x = text_only[cold] + alpha * borrowed
            imputed[cold] = x / np.linalg.norm(x, axis=1, keepdims=True)
            c = cold_warm_cells(split, users, imputed)
            print(f"  K={k} alpha={alpha:.1f}: {c[0]:.4f} / {c[1]:.4f} | {c[2]:.4f} / {c[3]:.4f}")


if __name__ == "__main__":
    main()
