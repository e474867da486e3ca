"""A torch-free builder of small but REAL bundles (same files as docs/bundle.md).

    from inference.testing import build_tiny_bundle
    path = build_tiny_bundle(tmp_path, n_items=200, dim=32)   # tmp_path/"tiny-1"
    rec = OnnxRecommender.load(path)

The text encoder is an ONNX graph (token-embedding Gather → masked sum → L2
normalise) over a word-level ``tokenizers`` tokenizer; genre words share a
direction, so a query "funny comedy" lands near comedy items. The sequence
encoder is a recency-weighted masked mean (most recent item weighs most).
Item ``i`` has genre ``GENRES[i % len(GENRES)]`` (also in its attributes).
Needs the ``onnx`` package (a dev/train extra), imported inside the functions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inference.bundle import manifest as bf
from inference.bundle.writer import staging

# genre → words whose embeddings point the same way (the first is the genre name).
GENRES: dict[str, tuple[str, ...]] = {
    "comedy": ("comedy", "funny", "laugh", "hilarious", "jokes"),
    "horror": ("horror", "scary", "ghost", "monster", "fear"),
    "romance": ("romance", "love", "kiss", "wedding", "heart"),
    "action": ("action", "explosion", "chase", "fight", "hero"),
    "scifi": ("scifi", "space", "robot", "alien", "future"),
    "documentary": ("documentary", "history", "nature", "facts", "real"),
    "animation": ("animation", "cartoon", "animated", "pixar", "drawn"),
    "western": ("western", "cowboy", "desert", "horse", "sheriff"),
}
FILLER = ("a", "an", "the", "film", "movie", "about", "story", "of", "with", "and", "in")
SPECIAL = ("[PAD]", "[UNK]")
OPSET, IR_VERSION = 17, 8


def genre_of(row: int) -> str:
    """The genre of tiny-catalog row ``row``."""
    names = list(GENRES)
    return names[row % len(names)]


def vocabulary() -> dict[str, int]:
    words = [*SPECIAL, *FILLER, *(w for ws in GENRES.values() for w in ws)]
    return {w: i for i, w in enumerate(words)}


def build_tokenizer(vocab: dict[str, int]) -> Any:
    """A word-level tokenizer (lower-cased, whitespace/punctuation split)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tok


def token_embeddings(vocab: dict[str, int], dim: int, rng: np.random.Generator) -> np.ndarray:
    """(V, D): genre words = genre direction + noise, filler words small, [PAD] zero."""
    emb = 0.15 * rng.standard_normal((len(vocab), dim)).astype(np.float32)
    for words in GENRES.values():
        direction = rng.standard_normal(dim).astype(np.float32)
        direction /= np.linalg.norm(direction)
        for w in words:
            emb[vocab[w]] += direction
    emb[vocab["[PAD]"]] = 0.0
    return emb


def text_encoder_graph(emb: np.ndarray) -> Any:
    """ONNX: input_ids, attention_mask (B,T) int64 → embedding (B,D) L2-normalised."""
    from onnx import TensorProto, helper, numpy_helper

    dim = emb.shape[1]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["e"], axis=0),  # (B, T, D)
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),  # (B, T)
        helper.make_node("Unsqueeze", ["mf", "ax2"], ["m3"]),  # (B, T, 1)
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "ax1"], ["s"], keepdims=0),  # (B, D)
        *_l2_nodes("s", "embedding"),
    ]
    inits = [
        numpy_helper.from_array(emb.astype(np.float32), "E"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", dim])],
        inits,
    )
    return _model(graph)


def sequence_encoder_graph(max_length: int, dim: int, decay: float = 0.7) -> Any:
    """ONNX: item_vectors (B,L,D), mask (B,L) → user_vector (B,D); weight decay**(age)."""
    from onnx import TensorProto, helper, numpy_helper

    recency = decay ** np.arange(max_length - 1, -1, -1, dtype=np.float32)  # (L,) newest = 1
    nodes = [
        helper.make_node("Mul", ["mask", "recency"], ["w"]),  # (B, L)
        helper.make_node("Unsqueeze", ["w", "ax2"], ["w3"]),  # (B, L, 1)
        helper.make_node("Mul", ["item_vectors", "w3"], ["xw"]),  # (B, L, D)
        helper.make_node("ReduceSum", ["xw", "ax1"], ["s"], keepdims=0),  # (B, D)
        *_l2_nodes("s", "user_vector"),
    ]
    inits = [
        numpy_helper.from_array(recency, "recency"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sequence_encoder",
        [
            helper.make_tensor_value_info(
                "item_vectors", TensorProto.FLOAT, ["B", max_length, dim]
            ),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", max_length]),
        ],
        [helper.make_tensor_value_info("user_vector", TensorProto.FLOAT, ["B", dim])],
        inits,
    )
    return _model(graph)


def _l2_nodes(x: str, out: str) -> list[Any]:
    from onnx import helper

    return [
        helper.make_node("Mul", [x, x], [f"{x}_sq"]),
        helper.make_node("ReduceSum", [f"{x}_sq", "ax1"], [f"{x}_n2"], keepdims=1),  # (B, 1)
        helper.make_node("Add", [f"{x}_n2", "eps"], [f"{x}_n2e"]),
        helper.make_node("Sqrt", [f"{x}_n2e"], [f"{x}_n"]),
        helper.make_node("Div", [x, f"{x}_n"], [out]),
    ]


def _model(graph: Any) -> Any:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_index(
    path: Path, vectors: np.ndarray, kind: Literal["flat", "hnsw"], params: dict
) -> None:
    """``index.faiss`` per docs/bundle.md (ids = rows)."""
    import faiss

    dim = vectors.shape[1]
    if kind == "flat":
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        flat.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
        faiss.write_index(flat, str(path))
        return
    hnsw = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = int(params["efConstruction"])
    hnsw.hnsw.efSearch = int(params["efSearch"])
    hnsw.add(vectors)
    faiss.write_index(hnsw, str(path))


def tiny_items(n_items: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Catalog rows with genre words in their text (row ``i`` has :func:`genre_of` ``(i)``)."""
    items = []
    for i in range(n_items):
        genre = genre_of(i)
        words = rng.choice(GENRES[genre], size=3, replace=False)
        title = f"{words[0].capitalize()} {i}"
        text = f"{title}. A {genre} {' '.join(words[1:])} movie"
        items.append(
            {"item_id": f"i{i}", "title": title, "text": text, "attributes": {"genre": genre}}
        )
    return items


def build_tiny_bundle(
    out_dir: Path,
    *,
    n_items: int = 200,
    dim: int = 32,
    version: str = "tiny-1",
    index_kind: Literal["flat", "hnsw"] = "flat",
    with_int8: bool = False,
    text_max_length: int = 16,
    sequence_max_length: int = 20,
    seed: int = 0,
    popularity_weight_warm: float | None = None,
) -> Path:
    """Write a sealed bundle to ``out_dir/version`` and return that path (an existing
    version is refused with a :class:`~recstream.errors.BundleError`).

    ``popularity_weight_warm``: the manifest's tuned warm prior (None: no fusion entry,
    as in bundles written before training chose one).
    """
    import onnx

    from inference.encoders import TextEncoder
    from inference.providers import OnnxPlan

    rng = np.random.default_rng(seed)
    with staging(Path(out_dir), version) as stage:
        tmp = stage.path
        vocab = vocabulary()
        build_tokenizer(vocab).save(str(tmp / bf.TOKENIZER))
        onnx.save(text_encoder_graph(token_embeddings(vocab, dim, rng)), str(tmp / bf.TEXT_ENCODER))
        onnx.save(sequence_encoder_graph(sequence_max_length, dim), str(tmp / bf.SEQUENCE_ENCODER))
        if with_int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                tmp / bf.TEXT_ENCODER, tmp / bf.TEXT_ENCODER_INT8, weight_type=QuantType.QInt8
            )

        items = tiny_items(n_items, rng)
        with (tmp / bf.ITEMS).open("w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps(it) + "\n")
        encoder = TextEncoder(
            tmp / bf.TEXT_ENCODER,
            tmp / bf.TOKENIZER,
            OnnxPlan(("CPUExecutionProvider",), 1),
            text_max_length,
        )
        vectors = encoder.encode([it["text"] for it in items])  # (N, D), the serving tower's own
        np.save(tmp / bf.ITEM_VECTORS, vectors)
        ranks = rng.permutation(n_items)
        popularity = (1.0 / (1.0 + ranks) ** 0.8).astype(np.float32)
        np.save(tmp / bf.POPULARITY, popularity / popularity.max())
        params = {"M": 16, "efConstruction": 40, "efSearch": 64} if index_kind == "hnsw" else {}
        write_index(tmp / bf.INDEX, vectors, index_kind, params)

        manifest = bf.Manifest(
            version=version,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            dataset="tiny-synthetic",
            dim=dim,
            text_encoder=bf.TextEncoderEntry(
                file=bf.TEXT_ENCODER,
                int8_file=bf.TEXT_ENCODER_INT8 if with_int8 else None,
                max_length=text_max_length,
            ),
            sequence_encoder=bf.SequenceEncoderEntry(
                file=bf.SEQUENCE_ENCODER, max_length=sequence_max_length
            ),
            index=bf.IndexEntry(
                file=bf.INDEX, kind=index_kind, metric="inner_product", params=params
            ),
            config={"builder": "inference.testing.build_tiny_bundle", "seed": seed},
            metrics={},
        )
        if popularity_weight_warm is not None:
            fusion = bf.FusionEntry(popularity_weight_warm=popularity_weight_warm)
            manifest = manifest.model_copy(update={"fusion": fusion})
        return stage.seal(manifest)


def reference_recommend_batch(
    rec: Any, requests: list[Any], *, group_texts: bool = True
) -> list[list[Any]]:
    """What ``OnnxRecommender.recommend_batch`` returned before it was vectorised (the
    oracle its tests and bench/serving_parity.py compare with): per request, its
    ``ScoredItem`` list, from :func:`inference.fusion.fuse` one request at a time,
    FAISS searched per group of equal depth, and every history padded to the
    sequence encoder's ``max_length`` through its whole graph (also when the bundle's
    encoder is split). Same settings, same answers: scores may differ in the last
    float bits, never the order, sources or reasons. ``group_texts=False`` encodes a
    batch's texts in one call, as before issue 24 (a dynamic-int8 text encoder's
    vectors then differ: see :meth:`inference.encoders.TextEncoder.encode`).
    """
    from collections import defaultdict

    from inference.fusion import fuse, fusion_weights
    from inference.types import ScoredItem

    idx, s = rec.index, rec.settings
    c = s.candidates
    vectors = idx.vectors
    hist_rows, hist_ids, excluded = [], [], []
    for req in requests:
        pairs = [(r, iid) for iid in req.history if (r := idx.row(iid)) is not None]
        hist_rows.append(np.array([r for r, _ in pairs], dtype=np.int64))
        hist_ids.append([iid for _, iid in pairs])
        ex = {r for iid in req.exclude if (r := idx.row(iid)) is not None}
        excluded.append(np.fromiter(ex.union(r for r, _ in pairs), dtype=np.int64))
    qvecs: dict[int, np.ndarray] = {}
    todo: dict[str, list[int]] = defaultdict(list)
    for i, req in enumerate(requests):
        v = req.query_vector
        if v is not None:
            v = np.asarray(v, dtype=np.float32).reshape(-1)
            if v.shape == (rec.dim,) and np.all(np.isfinite(v)):
                qvecs[i] = v
                continue
        text = (req.query or "").strip()
        if text:
            todo[text].append(i)
    if todo:
        texts = list(todo)
        vecs = rec.text_encoder.encode(texts, group=group_texts)
        for text, vec in zip(texts, vecs, strict=True):
            for i in todo[text]:
                qvecs[i] = vec
    enc = rec.sequence_encoder
    if enc.split:  # before, the whole graph served: open it from the bundle directory
        from inference.encoders import SequenceEncoder
        from inference.providers import OnnxPlan

        se = rec.manifest.sequence_encoder
        plan = OnnxPlan(("CPUExecutionProvider",), 1)
        enc = SequenceEncoder(Path(rec.path) / se.file, plan, se.max_length, rec.dim)
    with_hist = [i for i, rows in enumerate(hist_rows) if len(rows)]
    uvecs: dict[int, np.ndarray] = {}
    if with_hist:
        seq, mask = enc.pack([hist_rows[i] for i in with_hist], vectors)  # max_length
        out = enc._session.run([enc._output], {"item_vectors": seq, "mask": mask})[0]
        out = np.asarray(out, dtype=np.float32)
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        uvecs = dict(zip(with_hist, out.astype(np.float32), strict=True))

    def first(rows: np.ndarray, ex: np.ndarray, n: int, text_only: bool = False) -> np.ndarray:
        keep = rows >= 0
        if len(ex):
            keep &= ~np.isin(rows, ex)
        if text_only:  # the query source never proposes an item without usable text
            keep &= idx.has_text[np.where(rows >= 0, rows, 0)]
        return rows[keep][:n]

    def want(pool: int, req: Any) -> int:
        return max(1, min(max(pool, req.k), len(idx)))

    def search(
        vecs: dict[int, np.ndarray], pool: int, text_only: bool = False
    ) -> dict[int, np.ndarray]:
        barred = int((~idx.has_text).sum()) if text_only else 0
        if text_only and barred == len(idx.has_text):
            return {i: np.zeros(0, dtype=np.int64) for i in vecs}
        groups: dict[int, list[int]] = defaultdict(list)
        for i in vecs:
            extra = min(c.exclusion_margin, -(-len(excluded[i]) // 8) * 8)
            groups[want(pool, requests[i]) + extra].append(i)
        out: dict[int, np.ndarray] = {}
        for k, members in groups.items():
            _, rows = idx.search(np.stack([vecs[i] for i in members]), k)
            for j, i in enumerate(members):
                n = want(pool, requests[i])
                out[i] = first(rows[j], excluded[i], n, text_only)
                if len(out[i]) < n and rows[j, -1] >= 0:
                    _, alone = idx.search(vecs[i][None], n + len(excluded[i]) + barred)
                    out[i] = first(alone[0], excluded[i], n, text_only)
        return out

    seq_hits, q_hits = search(uvecs, c.sequence), search(qvecs, c.query, text_only=True)
    pops = idx.popular(c.popular + max((len(e) for e in excluded), default=0))
    results = []
    for i, req in enumerate(requests):
        w = fusion_weights(len(hist_rows[i]), i in qvecs, req.query_age_s, s.fusion)
        cands: dict[Any, np.ndarray] = {"popular": first(pops, excluded[i], c.popular)}
        if i in seq_hits:
            cands["sequence"] = seq_hits[i]
        if i in q_hits:
            cands["query"] = q_hits[i]
        fused = fuse(
            candidates=cands,
            vectors=vectors,
            popularity=idx.popularity,
            weights=w,
            user_vector=uvecs.get(i),
            query_vector=qvecs.get(i),
            query_text=(req.query or "").strip() or None,
            history_rows=hist_rows[i],
            history_ids=hist_ids[i],
            excluded_rows=excluded[i],
            k=max(min(req.k, len(idx)), 0),
            calibration=rec._calibration,
            text_evidence=idx.has_text,
        )
        results.append(
            [
                ScoredItem(iid, f.score, f.sources, f.because)
                for f in fused
                if (iid := idx.item_id(f.row)) is not None
            ]
        )
    return results
