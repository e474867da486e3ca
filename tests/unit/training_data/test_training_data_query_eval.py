"""The offline text-query evaluation ranks items without usable text as serving does."""

from __future__ import annotations

import numpy as np

from training.data.types import Catalog
from training.offline_eval import query_metrics


def _catalog() -> tuple[Catalog, np.ndarray]:
    """Comedies of the 90s and dramas of the 70s, plus a placeholder with no text (row 0)
    whose vector sits nearest to every query, as a content-free text does."""
    attrs: list[dict] = [{"year": None, "genres": []}]
    texts = ["unkonwn."]
    for i in range(40):
        comedy = i % 2 == 0
        genre = "Comedy" if comedy else "Drama"
        attrs.append({"year": 1995 if comedy else 1975, "genres": [genre]})
        texts.append(f"Film {i} ({attrs[-1]['year']}). {attrs[-1]['genres'][0]}.")
    ids = [str(i) for i in range(len(texts))]
    rng = np.random.default_rng(0)
    comedy, drama, common = rng.standard_normal((3, 16))
    vecs = [common]
    for a in attrs[1:]:
        vecs.append(
            0.5 * common
            + (comedy if a["genres"] == ["Comedy"] else drama)
            + 0.1 * rng.standard_normal(16)
        )
    v = np.asarray(vecs, np.float32)
    return Catalog(ids, texts, texts, attrs), v / np.linalg.norm(v, axis=1, keepdims=True)


def _encode(texts: list[str]) -> np.ndarray:
    """Queries: the common direction (what short texts share) plus a little of their genre."""
    rng = np.random.default_rng(0)
    comedy, drama, common = rng.standard_normal((3, 16))
    q = np.asarray([common + 0.5 * (comedy if "comedy" in t else drama) for t in texts])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_an_item_without_usable_text_is_not_ranked_by_its_text() -> None:
    cat, vectors = _catalog()
    raw = query_metrics(_encode, vectors, cat, n=40, text_evidence=False)
    # ranked by raw cosine, the placeholder is in every query's top 10 (matching none)
    assert raw["hub_item_unmatched@10"] == "0" and raw["hub_share_unmatched@10"] == 1.0
    ruled = query_metrics(_encode, vectors, cat, n=40)
    # as served: it scores the query's catalog average, below the 20 items of its genre
    assert ruled["hub_item_unmatched@10"] is None and ruled["hub_share_unmatched@10"] == 0.0
    assert ruled["genre_precision@10"] == 1.0 > raw["genre_precision@10"]
