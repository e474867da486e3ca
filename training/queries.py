"""Text-query evaluation for users with no history: synthetic queries from item attributes.

A query is built from one target item: one or two of its genres plus its decade,
in a few phrasings ("90s comedy movies", "a thriller from the 1970s", ...). A
top-k list is judged by genre precision (share of returned items that carry ALL
the query's genres) and by whether the target itself is returned (hit@10/@50).

Hubness (:func:`hubness_at_k`): an item whose text vector sits near every query
(MovieLens's placeholder "unkonwn", which has no text at all, was in the top 10
of 8 of 20 ordinary typed queries) wins lists it has no business in. The figure
is the largest share of queries whose top k holds one same item, over all
queries and over the queries the item's text does not match (it lacks one of
their genres), with the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.data.types import Catalog

__all__ = [
    "TextQuery",
    "decade_precision_at_k",
    "genre_precision_at_k",
    "hubness_at_k",
    "query_hits",
    "synthetic_queries",
]

# MovieLens genre labels -> words people type.
GENRE_WORDS: dict[str, str] = {
    "Sci-Fi": "science fiction",
    "Children's": "children's",
    "Film-Noir": "film noir",
}
_ONE_GENRE = (
    "{decade_short} {g} movies",
    "{g} films from the {decade}",
    "I want to watch a {g} movie from the {decade}",
    "a good {g} from the {decade_short}",
)
_TWO_GENRES = (
    "{decade_short} {g} {g2} movies",
    "a {g} {g2} film from the {decade}",
)


@dataclass(frozen=True)
class TextQuery:
    text: str  # e.g. "90s comedy movies"
    genres: frozenset[str]  # catalog genre labels the query asks for
    decade: int | None  # e.g. 1990
    target: int  # an item row matching it (for hit@10/@50)


def genre_word(label: str) -> str:
    return GENRE_WORDS.get(label, label.lower())


def synthetic_queries(catalog: Catalog, *, n: int, seed: int = 0) -> list[TextQuery]:
    """``n`` queries, each from a random (seeded) item that has genres and a year."""
    eligible = [
        (r, year) for r in range(len(catalog)) if catalog.genres(r) and (year := catalog.year(r))
    ]
    if not eligible:
        raise ValueError("no catalog item has both genres and a year")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(eligible), size=n, replace=n > len(eligible))
    out = []
    for pick in picks:
        target, year = eligible[int(pick)]
        genres = catalog.genres(target)
        decade = year // 10 * 10
        two = len(genres) >= 2 and rng.random() < 0.3
        picked = list(rng.choice(genres, size=2 if two else 1, replace=False))
        template = rng.choice(_TWO_GENRES if two else _ONE_GENRE)
        text = template.format(
            g=genre_word(picked[0]),
            g2=genre_word(picked[-1]),
            decade=f"{decade}s",
            decade_short=f"{decade % 100:02d}s",
        )
        out.append(TextQuery(text, frozenset(str(g) for g in picked), decade, target))
    return out


def _check(topk_rows: np.ndarray, queries: Sequence[TextQuery], k: int) -> np.ndarray:
    if topk_rows.ndim != 2 or topk_rows.shape[0] != len(queries) or topk_rows.shape[1] < k:
        raise ValueError(f"topk_rows {topk_rows.shape} for {len(queries)} queries at k={k}")
    if not queries:
        raise ValueError("no queries")
    return topk_rows[:, :k]


def genre_precision_at_k(
    topk_rows: np.ndarray, queries: Sequence[TextQuery], catalog: Catalog, k: int = 10
) -> float:
    """Mean over queries of the share of the top-k items having all the query's genres."""
    top = _check(topk_rows, queries, k)
    item_genres = [frozenset(catalog.genres(r)) for r in range(len(catalog))]
    hits = [
        sum(q.genres <= item_genres[int(r)] for r in row) / k
        for row, q in zip(top, queries, strict=True)
    ]
    return float(np.mean(hits))


def decade_precision_at_k(
    topk_rows: np.ndarray, queries: Sequence[TextQuery], catalog: Catalog, k: int = 10
) -> float:
    """Mean share of the top-k items released in the query's decade."""
    top = _check(topk_rows, queries, k)
    decade = [(y // 10 * 10 if y else None) for y in map(catalog.year, range(len(catalog)))]
    return float(
        np.mean(
            [
                np.mean([decade[int(r)] == q.decade for r in row])
                for row, q in zip(top, queries, strict=True)
            ]
        )
    )


def query_hits(
    topk_rows: np.ndarray, queries: Sequence[TextQuery], ks: Sequence[int] = (10, 50)
) -> dict[str, float]:
    """hit@k: how often the query's target item is in the top k."""
    targets = np.asarray([q.target for q in queries])
    out = {}
    for k in ks:
        top = _check(topk_rows, queries, k)
        out[f"hit@{k}"] = float((top == targets[:, None]).any(1).mean())
    return out


def hubness_at_k(
    topk_rows: np.ndarray, queries: Sequence[TextQuery], catalog: Catalog, k: int = 10
) -> dict[str, float | str | None]:
    """The item in the most queries' top k, and the item in the most top-k lists of queries
    it does not match (it lacks one of the query's genres).

    ``hub_share@k`` / ``hub_item@k``: the largest share of queries whose top k holds one
    same item, and that item's id; ``hub_share_unmatched@k`` / ``hub_item_unmatched@k``:
    the same counting, for each item, only the queries whose genres it does not all carry
    (over ALL queries, so the two shares compare). Ties go to the lower row; an item
    is None when no list counts one.
    """
    top = _check(topk_rows, queries, k)
    n = len(catalog)
    item_genres = [frozenset(catalog.genres(r)) for r in range(n)]
    shown = np.zeros(n, np.int64)
    unmatched = np.zeros(n, np.int64)
    for row, q in zip(top, queries, strict=True):
        items = np.unique(row[row >= 0])
        shown[items] += 1
        unmatched[[r for r in items.tolist() if not q.genres <= item_genres[r]]] += 1
    hub, hub_unmatched = int(np.argmax(shown)), int(np.argmax(unmatched))
    return {
        f"hub_share@{k}": float(shown[hub] / len(queries)),
        f"hub_item@{k}": catalog.item_ids[hub] if shown[hub] else None,
        f"hub_share_unmatched@{k}": float(unmatched[hub_unmatched] / len(queries)),
        f"hub_item_unmatched@{k}": (
            catalog.item_ids[hub_unmatched] if unmatched[hub_unmatched] else None
        ),
    }
