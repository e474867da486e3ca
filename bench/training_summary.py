"""Print a markdown table of offline metrics from bundle manifests (bench/RESULTS.md rows).

    python bench/training_summary.py BUNDLE_DIR [BUNDLE_DIR ...]

Each bundle's manifest carries the test metrics measured right after training
(torch path), the text-query metrics through the fp32 and int8 ONNX text
encoders, their speed, and the wall time of each stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(bundle: Path) -> str:
    m = json.loads((bundle / "manifest.json").read_text())
    met, cfg = m["metrics"], m["config"]
    test = met["test"]["all"]
    cold = met["test"].get("cold_target", {}).get("ndcg@10")
    warm = met["test"].get("warm_target", {}).get("ndcg@10")
    tq = met.get("text_query", {})
    t = met["timings"]
    tower = met["text_tower"]
    cells = [
        m["dataset"],
        cfg["split"],
        f"{cfg['text']['mode']} ({tower['trainable_params'] / max(tower['total_params'], 1):.2%})",
        f"{test['ndcg@10']:.4f}",
        f"{test['recall@10']:.4f}",
        f"{test['ndcg@20']:.4f}",
        f"{test['mrr@10']:.4f}",
        f"{test['coverage@10']:.3f}",
        "-" if cold is None else f"{cold:.4f} / {warm:.4f}",
        f"{tq.get('genre_precision@10', float('nan')):.3f}",
        f"{tq.get('hit@50', float('nan')):.3f}",
        f"{met['best_epoch']}/{met['epochs_run']}",
        f"{t['text_s']:.0f}+{t['sequence_s']:.0f}+{t['export_s']:.0f}={t['total_s']:.0f}"
        + (f" (cpu {t['total_cpu_s']:.0f})" if "total_cpu_s" in t else ""),
    ]
    return "| " + " | ".join(cells) + " |"


def main(paths: list[str]) -> None:
    print(
        "| dataset | split | text tower (trainable) | NDCG@10 | Recall@10 | NDCG@20 | MRR@10 "
        "| cov@10 | cold / warm NDCG@10 | genre P@10 (text-only) | query hit@50 "
        "| best/run epochs | wall s (text+seq+export=total) |"
    )
    print("|" + "---|" * 13)
    for p in paths:
        print(row(Path(p)))
    for p in paths:
        met = json.loads((Path(p) / "manifest.json").read_text())["metrics"]
        if "int8" in met:
            sp = met["text_encoder_speed"]
            print(
                f"\n{Path(p).name}: int8 cos vs fp32 mean {met['int8']['cos_vs_fp32_mean']:.4f} "
                f"min {met['int8']['cos_vs_fp32_min']:.4f}; genre P@10 delta "
                f"{met['int8']['genre_precision@10_delta']:+.3f}; batch1 fp32 "
                f"{sp['fp32']['batch1_ms']:.2f} ms vs int8 {sp['int8']['batch1_ms']:.2f} ms; "
                f"batch32 per query fp32 {sp['fp32']['batch32_ms_per_query']:.2f} ms vs int8 "
                f"{sp['int8']['batch32_ms_per_query']:.2f} ms"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
