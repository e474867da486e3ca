"""The vectorised serving path ranks exactly as the per-request one it replaced.

``inference.testing.reference_recommend_batch`` is the old path (``fusion.fuse`` per
request, FAISS per group of equal depth); both run on real tiny bundles (ONNX, FAISS
flat and HNSW) over random batches that exercise histories, queries, cached query
vectors, exclusions beyond the margin, unknown ids, k of 0 and above the pool, and
a catalog changed by upserts and deletes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.batch_fusion import union
from inference.recommender import OnnxRecommender
from inference.settings import CandidateSettings, InferenceSettings
from inference.testing import reference_recommend_batch
from inference.types import Request

WORDS = ("funny", "jokes", "space", "robot", "love", "ghost", "cowboy", "pixar", "facts")


def _requests(rec: OnnxRecommender, n: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    n_items = len(rec.index)
    cached = rec.encode_texts(["scary monster"])[0]
    out = []
    for i in range(n):
        hist = [f"i{j}" for j in rng.integers(0, n_items, size=int(rng.integers(0, 30)))]
        if i % 7 == 3:
            hist.append("no-such-item")
        query = " ".join(rng.choice(WORDS, size=2)) if rng.random() < 0.5 else None
        exclude: frozenset[str] = frozenset()
        if i % 9 == 4:  # more exclusions than the margin: searched again alone
            exclude = frozenset(f"i{j}" for j in range(0, n_items, 3))
        out.append(
            Request(
                f"u{i}",
                history=hist,
                query=query,
                query_age_s=float(rng.integers(0, 4000)),
                query_vector=cached if i % 11 == 5 else None,
                exclude=exclude,
                k=int(rng.choice([0, 1, 5, 10, 10, 10, 60])),
            )
        )
    return out


def _same(rec: OnnxRecommender, reqs: list[Request]) -> None:
    got = rec.recommend_batch(reqs)
    want = reference_recommend_batch(rec, reqs)
    for req, res, ref in zip(reqs, got, want, strict=True):
        assert [(i.item_id, i.sources, i.because) for i in res.items] == [
            (i.item_id, i.sources, i.because) for i in ref
        ], req.user_id
        np.testing.assert_allclose(
            [i.score for i in res.items], [i.score for i in ref], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("which", ["flat_bundle", "hnsw_bundle"])
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_path_ranks_as_the_per_request_path(
    which: str, seed: int, request: pytest.FixtureRequest
) -> None:
    rec = OnnxRecommender.load(request.getfixturevalue(which))
    _same(rec, _requests(rec, 64, seed))


def test_batch_path_ranks_as_before_after_upserts_and_deletes(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle)
    for j in range(0, 60, 4):
        rec.delete_item(f"i{j}")
    rec.upsert_item("new-1", "Space robots", "a scifi robot alien movie")
    rec.upsert_item("i5", "Ghost story", "a horror ghost monster movie")  # replaced
    # items without usable text, one of them sitting on a query: never a query candidate
    rec.upsert_item("blank", "", None)
    rec.upsert_item("placeholder", "unknown", None)
    rec.index.upsert("placeholder", rec.encode_texts(["funny jokes"])[0])
    assert int((~rec.index.has_text).sum()) == 2
    _same(rec, _requests(rec, 48, 3))


def test_small_pools_and_margins_still_agree(flat_bundle: Path) -> None:
    small = InferenceSettings(candidates=CandidateSettings(sequence=4, query=3, popular=2))
    rec = OnnxRecommender.load(flat_bundle, small)
    _same(rec, _requests(rec, 48, 4))


def test_union_merges_sources_per_request() -> None:
    rows = np.array([[5, 3, -1, 3, 9], [-1, -1, -1, -1, -1], [2, 2, 2, 1, -1]])
    bits = np.array([[1, 1, 1, 2, 4], [1, 1, 2, 2, 4], [1, 2, 4, 4, 4]], dtype=np.int8)
    urows, ubits = union(rows, bits)
    assert urows.tolist() == [[3, 5, 9], [-1, -1, -1], [1, 2, -1]]
    assert ubits.tolist() == [[3, 1, 4], [0, 0, 0], [4, 7, 0]]
