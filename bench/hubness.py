"""Hubness of a bundle's text-only rankings, with and without the text-evidence rule
(issue 20, section 3).

    PYTHONPATH=. python bench/hubness.py BUNDLE_DIR --dataset ml-100k [--seeds 0,1]

Ranks the bundle's item vectors for the synthetic genre/decade queries
(``training.queries``, 500 per seed) encoded by the bundle's fp32 text encoder, as
``recstream train``'s ``text_query`` metrics do, twice: by raw cosine (before the rule)
and with items without usable text (``inference/text_evidence.py``) at the query's
catalog average (as served: the query source never proposes them, their query term is
0). Prints, per seed and rule: hubness@10 (the largest share of queries whose top 10
holds one same item, over all queries, and counting only the queries whose genres the
item does not all carry), the item, and genre precision@10; then, for 20 vague typed
queries (no genre, no decade), in how many top 10s an item without usable text sits,
raw and with the rule. Costs seconds: no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("bundle", type=Path, help="a <bundle_dir>/<version> directory")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seeds", default="0", help="comma-separated query draws")
    ap.add_argument("--n-queries", type=int, default=500)
    args = ap.parse_args()

    from inference.bundle import load_bundle
    from inference.bundle.manifest import TOKENIZER
    from inference.text_evidence import usable_text_mask
    from training import onnx_export as ox
    from training.data import load_dataset
    from training.offline_eval import query_metrics
    from training.tokenization import load_tokenizer

    bundle = load_bundle(args.bundle)
    catalog = load_dataset(args.dataset).catalog
    m = bundle.manifest
    tok = load_tokenizer(bundle.file(TOKENIZER), m.text_encoder.max_length)
    sess = ox.session(bundle.file(m.text_encoder.file))

    def encode(texts: list[str]) -> np.ndarray:
        return ox.onnx_text_vectors(sess, tok, texts)

    # the catalog as served: bundle rows where the bundle has the item, else the item's
    # text vector (what publishing it through item-updates gives it; a temporal split's
    # bundle lacks the items first seen after T)
    rows = {iid: r for r, iid in enumerate(it.item_id for it in bundle.items)}
    vectors = np.zeros((len(catalog), m.dim), dtype=np.float32)
    missing = [r for r, iid in enumerate(catalog.item_ids) if iid not in rows]
    for r, iid in enumerate(catalog.item_ids):
        if iid in rows:
            vectors[r] = bundle.vectors[rows[iid]]
    if missing:
        vectors[missing] = encode([catalog.texts[r] for r in missing])
    if len(rows) + len(missing) != len(catalog):
        raise SystemExit(f"{args.bundle} has items outside {args.dataset}'s catalog")

    print(
        f"bundle {m.version} ({args.dataset}: {len(catalog) - len(missing)} bundle items, "
        f"{len(missing)} by text only), {args.n_queries} queries per seed"
    )
    print("| query seed | rule | hub share@10 (item) | unmatched share (item) | genre P@10 |")
    print("|---|---|---|---|---:|")
    for seed in (int(s) for s in args.seeds.split(",")):
        for rule in (False, True):
            q = query_metrics(
                encode, vectors, catalog, args.n_queries, seed=seed, text_evidence=rule
            )
            print(
                f"| {seed} | {'on' if rule else 'off (raw cosine)'} "
                f"| {q['hub_share@10']:.3f} ({q['hub_item@10']}) "
                f"| {q['hub_share_unmatched@10']:.3f} ({q['hub_item_unmatched@10']}) "
                f"| {q['genre_precision@10']:.3f} |"
            )
    # typed queries about nothing in particular: where a text-less item sat near the top
    scores = encode(list(VAGUE)) @ vectors.T  # (Q, N)
    textless = ~usable_text_mask(catalog.texts, catalog.item_ids)
    print(f"{len(VAGUE)} vague typed queries; items without usable text: "
          f"{[catalog.item_ids[r] for r in np.flatnonzero(textless)]}")  # fmt: skip
    print("| rule | queries with a text-less item in the top 10 | its best rank |")
    print("|---|---:|---:|")
    for rule in (False, True):
        s = scores.copy()
        if rule:
            s[:, textless] = s.mean(axis=1, keepdims=True)
        rank = (s[:, :, None] > s[:, None, textless]).sum(1).min(1) + 1  # (Q,) best textless rank
        print(
            f"| {'on' if rule else 'off (raw cosine)'} | {int((rank <= 10).sum())} of {len(VAGUE)} "
            f"| {int(rank.min())} |"
        )
    return 0


# ordinary typed queries that name no genre or decade (a text-less item's vector sits near
# such short, contentless texts)
VAGUE = (
    "something to watch tonight",
    "a good movie",
    "anything",
    "movie",
    "what should I watch",
    "something new",
    "a film I have not seen",
    "recommend me something",
    "best movies",
    "a classic",
    "something short",
    "a movie for the weekend",
    "popular films",
    "good reviews",
    "the one everyone talks about",
    "surprise me",
    "an old favourite",
    "a movie with a twist",
    "something different",
    "films",
)


if __name__ == "__main__":
    sys.exit(main())
