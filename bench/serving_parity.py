"""The vectorised serving path against the per-request one it replaced, on a real bundle.

    PYTHONPATH=. python bench/serving_parity.py --bundle BUNDLES/ml-100k-...

Serves the requests of ``bench/serving_quality.py`` (the bundle's leave-one-out test
users, the synthetic text queries, both together, and short histories) through
``OnnxRecommender.recommend_batch`` and through
``inference.testing.reference_recommend_batch`` (``fusion.fuse`` one request at a
time, FAISS per group of equal depth, histories padded to the sequence encoder's
``max_length``: the path before issue 24), in batches, and counts the requests
whose lists differ in items or order, in sources, or in reasons, with the largest
score difference. Exit status 1 if any list differs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving_quality import bundle_split, served_requests  # noqa: E402
from inference.bundle import load_bundle  # noqa: E402
from inference.recommender import OnnxRecommender  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402
from inference.testing import reference_recommend_batch  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.queries import synthetic_queries  # noqa: E402


def parity(rec: OnnxRecommender, requests: list, batch: int, desc: str) -> dict[str, float]:
    items = sources = because = 0
    worst = 0.0
    for start in tqdm(range(0, len(requests), batch), desc=desc, leave=False):
        chunk = requests[start : start + batch]
        for got, ref in zip(
            rec.recommend_batch(chunk), reference_recommend_batch(rec, chunk), strict=True
        ):
            a, b = got.items, ref
            if [i.item_id for i in a] != [i.item_id for i in b]:
                items += 1
                continue
            sources += [i.sources for i in a] != [i.sources for i in b]
            because += [i.because for i in a] != [i.because for i in b]
            if a:
                diff = np.subtract([i.score for i in a], [i.score for i in b])
                worst = max(worst, float(np.abs(diff).max()))
    return {"requests": len(requests), "items_differ": items, "sources_differ": sources,
            "because_differs": because, "max_score_diff": worst}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle version directory")
    ap.add_argument("--queries", type=int, default=300, help="synthetic text queries (seed 0)")
    ap.add_argument("--batch", type=int, default=64, help="requests per recommend_batch call")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bundle = load_bundle(args.bundle)
    dataset = load_dataset(bundle.manifest.dataset)
    cases = bundle_split(bundle, dataset).test
    queries = synthetic_queries(dataset.catalog, n=args.queries, seed=0)
    # no query cache: a cached vector comes from another batch, and a dynamic-int8 text
    # encoder's vectors depend on their batch (inference/encoders.py); this compares
    # the vectorised search, sequence encoding and fusion on equal query vectors
    rec = OnnxRecommender(bundle, InferenceSettings(query_cache_size=0))
    print(f"### {args.bundle.name}: vectorised vs per-request path\n")
    print("| slice | requests | items or order differ | sources differ | because differs "
          "| max score diff |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    bad = 0
    for name, reqs in served_requests(dataset, cases, queries).items():
        r = parity(rec, reqs, args.batch, name)
        bad += r["items_differ"] + r["sources_differ"] + r["because_differs"]
        print(f"| {name} | {r['requests']} | {r['items_differ']} | {r['sources_differ']} "
              f"| {r['because_differs']} | {r['max_score_diff']:.2e} |")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
