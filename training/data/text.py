"""Item text for the text tower: title + year + genres (+ any free-text attribute)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["display_title", "item_text"]

# MovieLens stores "Usual Suspects, The"; the text tower reads natural English better.
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+?), (?P<art>The|A|An)(?P<rest>( \(.*\))?)$")


def display_title(raw: str) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects' (also before a parenthesised alias)."""
    raw = raw.strip()
    m = _TRAILING_ARTICLE.match(raw)
    if m is None:
        return raw
    return f"{m['art']} {m['body']}{m['rest']}"


def item_text(title: str, year: int | None, genres: Sequence[str], extra: str | None = None) -> str:
    """One line the text encoder embeds, e.g. 'Toy Story (1995). Animation, Children's, Comedy.'"""
    text = title if year is None else f"{title} ({year})"
    if genres:
        text += ". " + ", ".join(genres)
    text += "."
    if extra:
        text += " " + extra.strip()
    return text
