"""Which item texts are evidence for a text match (inference/text_evidence.py)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.text_evidence import has_usable_text, usable_text_mask


@pytest.mark.parametrize(
    "text",
    [
        "unkonwn.",  # MovieLens's placeholder, misspelt in the data
        "unknown",
        "Untitled.",
        "N/A",
        "",
        None,
        "   ",
        "The",
        "42 (1995).",
        "Item 42",
        "movie",
    ],
)
def test_texts_that_say_nothing_are_not_evidence(text: str | None) -> None:
    assert not has_usable_text(text)


def test_one_edit_misspellings_of_long_placeholders_only() -> None:
    assert not has_usable_text("unkonwn")  # a swap
    assert not has_usable_text("unknwn")  # a deletion
    assert not has_usable_text("untitledd")  # an insertion
    assert has_usable_text("untitltedness")  # far from every placeholder
    assert has_usable_text("Black")  # one edit from "blank", a short placeholder: a real word


def test_an_items_own_id_is_not_evidence() -> None:
    assert not has_usable_text("tt0114709", item_id="tt0114709")
    assert has_usable_text("tt0114709")  # without the id it reads as the letters "tt"
    assert has_usable_text("Toy Story (1995). tt0114709", item_id="tt0114709")


@pytest.mark.parametrize(
    "text",
    [
        "Good Morning (1971).",  # a title, no genre
        "Toy Story (1995). Animation, Children's, Comedy.",
        "42. Drama.",  # a number title with a genre
        "a quiet film about grief",  # free text
    ],
)
def test_titles_genres_and_descriptions_are_evidence(text: str) -> None:
    assert has_usable_text(text)


def test_mask_over_a_catalog() -> None:
    mask = usable_text_mask(["unkonwn.", "Heat (1995). Action.", "i9"], ["1", "2", "i9"])
    assert mask.tolist() == [False, True, False]
    assert mask.dtype == np.bool_
