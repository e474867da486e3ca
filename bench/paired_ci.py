"""Is recstream's NDCG@10 ratio to a peer told apart from noise on this split?

    PYTHONPATH=. python bench/paired_ci.py --bundle BUNDLES/ml-100k-... --dataset ml-100k \\
        --peer GRU4Rec=WORK/loo/GRU4Rec.test_scores.npy

Scores the bundle's sequence encoder (ONNX, as ``recstream evaluate`` does) on the
leave-one-out test cases, loads each peer's test scores as ``bench/quality.py``'s
RecBole runs save them (``<work>/loo/<model>.test_scores.npy``, same cases, same
order), masks histories and ranks both with ``training.metrics``, and prints the
NDCG@10 ratio with a paired bootstrap interval (cases resampled jointly). On
ml-100k's 943 cases one NDCG@10 has a standard error of about 8 % of its value,
so a 1.10x target needs this interval, not two point estimates.

``--bundle`` repeats: several bundles (e.g. seeds of one config) count as one
model whose per-case NDCG@10 is their mean, so seed noise averages out and the
interval is over test cases only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import load_dataset
from training.metrics import (
    mask_history,
    ndcg_per_case,
    paired_bootstrap_ratio,
    target_ranks,
)
from training.split import EvalCases, leave_one_out


def bundle_scores(bundle: Path, cases: EvalCases, batch: int = 256) -> np.ndarray:
    """(len(cases), N) scores of the bundle's ONNX sequence encoder."""
    from training.bundle_io import verify_bundle
    from training.evaluate_bundle import bundle_sequence_scorer

    manifest = verify_bundle(bundle)
    vectors = np.load(bundle / "item_vectors.npy", allow_pickle=False)
    score = bundle_sequence_scorer(bundle, manifest, vectors)
    hist = cases.histories
    return np.concatenate([score(hist[i : i + batch]) for i in range(0, len(hist), batch)])


def per_case_ndcg(scores: np.ndarray, cases: EvalCases, k: int = 10) -> np.ndarray:
    masked = mask_history(scores, cases.histories)
    return ndcg_per_case(target_ranks(masked, cases.targets), k)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--bundle", type=Path, action="append", required=True,
        help="a recstream bundle directory (repeatable: per-case NDCG@10 averaged over them)",
    )  # fmt: skip
    ap.add_argument("--dataset", default="ml-100k", help="the bundle's dataset")
    ap.add_argument(
        "--peer", action="append", default=[], metavar="NAME=SCORES.npy",
        help="a peer's test scores (repeatable)",
    )  # fmt: skip
    ap.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    args = ap.parse_args()

    cases = leave_one_out(load_dataset(args.dataset).interactions).test
    each = [per_case_ndcg(bundle_scores(b, cases), cases) for b in args.bundle]
    ours = np.mean(each, axis=0)
    seeds = " / ".join(f"{e.mean():.4f}" for e in each)
    print(f"recstream NDCG@10 {ours.mean():.4f} on {len(ours)} cases (bundles: {seeds})")
    for spec in args.peer:
        name, _, path = spec.partition("=")
        peer = np.load(path, allow_pickle=False)
        if peer.shape[0] != len(cases):
            sys.exit(f"{name}: {peer.shape[0]} score rows for {len(cases)} cases")
        theirs = per_case_ndcg(peer, cases)
        ratio, lo, hi = paired_bootstrap_ratio(ours, theirs, n=args.bootstrap)
        print(
            f"{name} NDCG@10 {theirs.mean():.4f}; recstream / {name} = {ratio:.3f} "
            f"(95 % paired bootstrap {lo:.3f}–{hi:.3f}, {args.bootstrap} resamples)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
