"""What the fusion calibration costs per request: ``fuse`` raw vs standardised.

    PYTHONPATH=. python bench/fusion_cost.py [--items 100000] [--dim 384]

Synthetic unit item vectors and a uniform popularity prior (the cost does not
depend on their values); 80 sequence + 80 query + 20 popular candidates, 50
history items excluded, k = 10, the shape of a default request. Prints the time
to build the :class:`inference.fusion.Calibration` (once per bundle) and the
p50/p99 of one ``fuse`` call without and with it. Set OMP_NUM_THREADS=1 to match
the serving default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.fusion import Calibration, Weights, fuse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    popularity = rng.random(args.items).astype(np.float32)
    t0 = time.perf_counter()
    cal = Calibration.of(vectors, popularity)
    build_s = time.perf_counter() - t0
    history = rng.integers(0, args.items, 50)
    request = {
        "candidates": {
            "sequence": rng.integers(0, args.items, 80),
            "query": rng.integers(0, args.items, 80),
            "popular": np.arange(20),
        },
        "vectors": vectors,
        "popularity": popularity,
        "weights": Weights(0.5, 0.4, 0.1),
        "user_vector": vectors[5],
        "query_vector": vectors[7],
        "query_text": "q",
        "history_rows": history,
        "history_ids": [str(h) for h in history],
        "excluded_rows": history,
        "k": 10,
    }
    print(
        f"{args.items} items x {args.dim}: Calibration.of {build_s * 1e3:.1f} ms (once per bundle)"
    )
    print("| fuse | p50 µs | p99 µs |\n|---|---:|---:|")
    for name, calibration in (("raw", None), ("standardised", cal)):
        for _ in range(50):
            fuse(**request, calibration=calibration)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fuse(**request, calibration=calibration)
            times.append(time.perf_counter() - t0)
        p50, p99 = np.percentile(times, [50, 99]) * 1e6
        print(f"| {name} | {p50:.1f} | {p99:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
