"""Synthetic text queries and their precision / hit metrics."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.types import Catalog
from training.queries import (
    TextQuery,
    decade_precision_at_k,
    genre_precision_at_k,
    genre_word,
    query_hits,
    synthetic_queries,
)


def _catalog() -> Catalog:
    attrs = [
        {"year": 1995, "genres": ["Comedy"]},
        {"year": 1994, "genres": ["Comedy", "Romance"]},
        {"year": 1972, "genres": ["Crime", "Drama"]},
        {"year": 1982, "genres": ["Sci-Fi", "Action"]},
        {"year": None, "genres": ["Drama"]},  # no year: never a query target
    ]
    ids = [str(i) for i in range(len(attrs))]
    return Catalog(ids, ids, ids, attrs)


def test_synthetic_queries_describe_their_target_and_are_seeded() -> None:
    cat = _catalog()
    qs = synthetic_queries(cat, n=50, seed=1)
    assert qs == synthetic_queries(cat, n=50, seed=1)
    assert qs != synthetic_queries(cat, n=50, seed=2)
    for q in qs:
        assert q.target != 4
        assert q.genres <= set(cat.genres(q.target)) and 1 <= len(q.genres) <= 2
        year = cat.year(q.target)
        assert year is not None and q.decade == year // 10 * 10
        assert f"{q.decade % 100:02d}s" in q.text
        assert all(genre_word(g) in q.text for g in q.genres)
    assert len({q.text for q in qs}) > 5  # several phrasings
    assert any("science fiction" in q.text for q in qs)


def test_genre_precision_hits_and_decade_by_hand() -> None:
    cat = _catalog()
    queries = [
        TextQuery("90s comedy", frozenset({"Comedy"}), 1990, target=1),
        TextQuery("70s crime drama", frozenset({"Crime", "Drama"}), 1970, target=2),
    ]
    top = np.array([[0, 1, 2, 3], [2, 4, 0, 1]])
    # q1: items 0, 1 are comedies -> 2/4; q2: only item 2 has both genres -> 1/4
    assert genre_precision_at_k(top, queries, cat, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert genre_precision_at_k(top, queries, cat, k=1) == pytest.approx(1.0)
    assert decade_precision_at_k(top, queries, cat, k=2) == pytest.approx((1.0 + 0.5) / 2)
    assert query_hits(top, queries, ks=(1, 2)) == {"hit@1": 0.5, "hit@2": 1.0}
    with pytest.raises(ValueError):
        genre_precision_at_k(top, queries, cat, k=10)


def test_hubness_counts_the_item_in_most_lists_and_the_queries_it_does_not_match() -> None:
    from training.queries import hubness_at_k

    cat = _catalog()
    queries = [
        TextQuery("90s comedy", frozenset({"Comedy"}), 1990, target=0),
        TextQuery("90s romance", frozenset({"Romance"}), 1990, target=1),
        TextQuery("70s crime", frozenset({"Crime"}), 1970, target=2),
        TextQuery("80s sci-fi", frozenset({"Sci-Fi"}), 1980, target=3),
    ]
    # item 1 (Comedy, Romance) is in the first three lists and matches two of them; item 4
    # (Drama) is in two lists and matches none: it is the unmatched hub
    top = np.array([[1, 0], [1, 4], [1, 4], [3, 0]])
    hub = hubness_at_k(top, queries, cat, k=2)
    assert hub == {
        "hub_share@2": 0.75,
        "hub_item@2": "1",
        "hub_share_unmatched@2": 0.5,
        "hub_item_unmatched@2": "4",
    }
    # a row repeating an item counts it once for that query
    again = hubness_at_k(np.array([[2, 2], [2, 2], [0, 1], [3, 0]]), queries, cat, k=2)
    assert again["hub_share@2"] == 0.5 and again["hub_item@2"] == "0"
    # lists that hold only matching items have no unmatched hub
    matched = hubness_at_k(np.array([[0, 1], [1, 0], [2, 4], [3, 3]]), queries, cat, k=2)
    assert matched["hub_share_unmatched@2"] == 0.25 and matched["hub_item_unmatched@2"] == "0"
    none = hubness_at_k(np.array([[0, 1], [1, 1], [2, 2], [3, 3]]), queries, cat, k=2)
    assert none["hub_share_unmatched@2"] == 0.0 and none["hub_item_unmatched@2"] is None
