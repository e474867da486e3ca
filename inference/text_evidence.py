"""Whether an item's text is evidence for a text match.

Every item gets a text vector, also an item whose text says nothing about it: MovieLens's
placeholder titled "unkonwn" (no year, no genre), an item known only by its id, an upsert
with an empty title. A text with no content lands near every short query, because a
query says little too: on ml-100k the placeholder was in the top 10 of 8 of 20 ordinary
typed queries and ranked first for a query about nothing in particular. Such an item has
no evidence for a text match, so serving neither lets the query search propose it nor
lets its query score count (``inference.fusion``: its query term is the catalog average,
z = 0), and the offline text-query evaluation ranks it the same way. It still competes on
behaviour (the sequence source) and popularity.

The rule is lexical and cheap, so it runs on every item update: a text is usable when,
the item's own id taken out, it has a word (two letters or more) that is neither a
stopword nor a placeholder ("unknown", "untitled", "n/a", ...) nor a one-edit misspelling
of one of the long placeholders ("unkonwn"). Titles, genres and free text all count: an
item whose only text is its title "Good Morning (1971)" is usable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

__all__ = ["PLACEHOLDERS", "has_usable_text", "usable_text_mask"]

# words that stand for "no text" in catalogs and item feeds
PLACEHOLDERS = frozenset(
    [
        "unknown",
        "untitled",
        "unnamed",
        "undefined",
        "placeholder",
        "none",
        "null",
        "nil",
        "nan",
        "na",
        "tbd",
        "tba",
        "notitle",
        "title",
        "item",
        "product",
        "movie",
        "film",
        "test",
        "dummy",
        "missing",
        "empty",
        "blank",
    ]
)
# a word one edit (insert, delete, substitute, swap two neighbours) from one of these is a
# misspelt placeholder; shorter placeholders are too close to real words ("blank"/"black")
_FUZZY = tuple(w for w in PLACEHOLDERS if len(w) >= 7)
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "and",
        "or",
        "in",
        "on",
        "to",
        "for",
        "with",
        "by",
        "at",
        "from",
        "is",
        "it",
        "its",
        "this",
        "that",
        "as",
        "be",
        "no",
    ]
)
_WORD = re.compile(r"[^\W\d_]{2,}")  # runs of two or more letters


def has_usable_text(text: str | None, item_id: str | None = None) -> bool:
    """True when ``text`` (an item's whole text: title, year, genres, description) has a
    word that is not a stopword, a placeholder or ``item_id``."""
    text = (text or "").lower()
    if item_id:
        text = text.replace(item_id.lower(), " ")
    return any(_informative(w) for w in _WORD.findall(text))


def usable_text_mask(texts: Iterable[str | None], item_ids: Iterable[str | None]) -> np.ndarray:
    """(N,) bool, :func:`has_usable_text` of each (text, id) pair."""
    return np.fromiter(
        (has_usable_text(t, i) for t, i in zip(texts, item_ids, strict=True)), dtype=bool
    )


def _informative(word: str) -> bool:
    if word in _STOPWORDS or word in PLACEHOLDERS:
        return False
    return not any(_one_edit(word, p) for p in _FUZZY)


def _one_edit(a: str, b: str) -> bool:
    """Optimal-string-alignment distance of ``a`` and ``b`` is exactly 1."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((j for j in range(len(short)) if short[j] != long[j]), len(short))
    return short[i:] == long[i + 1 :]
