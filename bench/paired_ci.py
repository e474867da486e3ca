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

``--served`` compares what apps receive instead of the bare models. recstream's
list is the served fusion (``inference.fusion``: the user's cosines standardised
over the catalog plus the bundle's popularity prior at the configured weight),
ranked over the whole catalog, which is what ``recommend_batch`` serves when the
index is exact, at the warm prior weight serving would use for that bundle (its
manifest's, chosen on validation by training). Each peer is then shown three
ways: bare, with the SAME prior at the first bundle's weight
(``inference.fusion.fuse_dense`` on its scores), and with the
prior at the weight that maximises its own test NDCG@10 (``--prior-grid``; an
oracle, so generous to the peer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.fusion import Weights, fuse_dense, fusion_weights
from inference.settings import InferenceSettings
from training.data import load_dataset
from training.metrics import (
    mask_history,
    ndcg_per_case,
    paired_bootstrap_ratio,
    target_ranks,
)
from training.split import EvalCases, leave_one_out


def bundle_scorer(bundle: Path) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Histories -> (B, N) scores of the bundle's ONNX sequence encoder (verified once)."""
    from inference.bundle import open_bundle
    from inference.bundle.load import parse_npy
    from inference.bundle.manifest import ITEM_VECTORS
    from training.evaluate_bundle import bundle_sequence_scorer

    files = open_bundle(bundle)
    vectors = parse_npy(files.read(ITEM_VECTORS), ITEM_VECTORS)
    score = bundle_sequence_scorer(files, vectors)
    files.verify_rest()
    return score


def bundle_scores(bundle: Path, cases: EvalCases, batch: int = 256) -> np.ndarray:
    """(len(cases), N) scores of the bundle's ONNX sequence encoder."""
    score, hist = bundle_scorer(bundle), cases.histories
    return np.concatenate([score(hist[i : i + batch]) for i in range(0, len(hist), batch)])


def chosen_prior(bundle: Path, valid: EvalCases, popularity: np.ndarray) -> float:
    """The warm prior weight training would choose for ``bundle`` on ``valid`` (as
    ``training.train`` does, through the ONNX encoder), for bundles written before
    training chose one."""
    from training.prior_tuning import choose_warm_prior

    choice = choose_warm_prior(bundle_scorer(bundle), valid, popularity)
    grid = ", ".join(f"{w:g}: {v:.4f}" for w, v in choice.ndcg_by_weight.items())
    print(
        f"{bundle.name}: validation NDCG@10 by warm prior weight {grid}; chosen {choice.weight:g}"
    )
    return choice.weight


def served_weights(
    bundle: Path, cases: EvalCases, tuned: float | None = None
) -> tuple[float, list[Weights]]:
    """The warm prior weight serving uses for ``bundle`` (``tuned``, else its manifest's,
    unless a ``RECSTREAM_INFERENCE_FUSION__*`` override names one) and the fusion weights
    a behaviour-only request with each case's history gets."""
    from inference.bundle import load_bundle

    if tuned is None:
        tuned = load_bundle(bundle).manifest.fusion.popularity_weight_warm
    fusion = InferenceSettings().fusion.for_bundle(tuned)
    return fusion.warm_prior(), [
        fusion_weights(len(h), False, None, fusion) for h in cases.histories
    ]


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
    ap.add_argument(
        "--served", action="store_true",
        help="rank recstream as served (fusion with its popularity prior) and give each peer "
        "the same prior, at the same weight and at its best weight on test",
    )  # fmt: skip
    ap.add_argument(
        "--prior-grid", default="0,0.025,0.05,0.1,0.15,0.2,0.3,0.5",
        help="--served: popularity weights (per unit of sequence weight) tried for each peer",
    )  # fmt: skip
    ap.add_argument(
        "--choose-prior", action="store_true",
        help="--served: choose each bundle's warm prior weight on its validation cases, as "
        "training does (for bundles written before training chose one)",
    )  # fmt: skip
    args = ap.parse_args()

    split = leave_one_out(load_dataset(args.dataset).interactions)
    cases = split.test
    popularity = np.load(args.bundle[0] / "popularity.npy", allow_pickle=False)
    each, priors, first_weights = [], [], None
    for b in args.bundle:
        scores = bundle_scores(b, cases)
        if args.served:
            pop = np.load(b / "popularity.npy", allow_pickle=False)
            if not np.array_equal(pop, popularity):
                sys.exit(f"{b}: another popularity prior than {args.bundle[0]}'s (another split?)")
            tuned = chosen_prior(b, split.valid, pop) if args.choose_prior else None
            warm, weights = served_weights(b, cases, tuned)
            priors.append(f"{warm:g}")
            first_weights = first_weights or weights
            scores = fuse_dense(scores, pop, weights)
        each.append(per_case_ndcg(scores, cases))
    ours = np.mean(each, axis=0)
    seeds = " / ".join(f"{e.mean():.4f}" for e in each)
    how = f"served (fusion, warm prior {' / '.join(priors)})" if args.served else "offline"
    print(f"recstream {how} NDCG@10 {ours.mean():.4f} on {len(ours)} cases (bundles: {seeds})")

    def report(name: str, theirs: np.ndarray) -> None:
        ratio, lo, hi = paired_bootstrap_ratio(ours, theirs, n=args.bootstrap)
        print(
            f"{name} NDCG@10 {theirs.mean():.4f}; recstream / {name} = {ratio:.3f} "
            f"(95 % paired bootstrap {lo:.3f}–{hi:.3f}, {args.bootstrap} resamples)"
        )

    for spec in args.peer:
        name, _, path = spec.partition("=")
        peer = np.load(path, allow_pickle=False)
        if peer.shape[0] != len(cases):
            sys.exit(f"{name}: {peer.shape[0]} score rows for {len(cases)} cases")
        report(name, per_case_ndcg(peer, cases))
        if not args.served:
            continue
        assert first_weights is not None
        report(
            f"{name} + the first bundle's prior ({priors[0]})",
            per_case_ndcg(fuse_dense(peer, popularity, first_weights), cases),
        )
        grid = {
            lam: per_case_ndcg(
                fuse_dense(peer, popularity, [Weights(1.0, 0.0, lam)] * len(peer)), cases
            )
            for lam in (float(x) for x in args.prior_grid.split(","))
        }
        print(f"{name} + prior, test NDCG@10 by weight: " + ", ".join(
            f"{lam:g}: {v.mean():.4f}" for lam, v in grid.items()
        ))  # fmt: skip
        best = max(grid, key=lambda lam: grid[lam].mean())
        report(f"{name} + prior at its best weight on test ({best:g})", grid[best])
    return 0


if __name__ == "__main__":
    sys.exit(main())
