"""The hostile generator's expectations agree with the edge decoder, kind by kind."""

from __future__ import annotations

from collections import Counter

import pytest

from recstream.errors import SchemaError
from recstream.schemas import Limits, SearchText, UserEvent, decode
from stream.processing import check_key
from tests.integration.reliability.hostile import MAKERS, QUERIES, hostile_messages


def outcome(topic: str, key: bytes | None, value: bytes | None, limits: Limits) -> str | None:
    """What the worker's edge does: None = valid, else the DLQ reason."""
    if value is None:
        return "empty"
    try:
        event = decode(SearchText if topic == QUERIES else UserEvent, value, limits)
        check_key(key, event.user_id)
    except SchemaError as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("limits", [Limits(), Limits(max_text_chars=50, max_message_bytes=8192)])
def test_every_kind_is_classified_as_declared(limits: Limits) -> None:
    msgs = list(hostile_messages(3 * len(MAKERS), seed=3, limits=limits))
    assert {m.kind for m in msgs} == set(MAKERS)
    for m in msgs:
        assert outcome(m.topic, m.key, m.value, limits) == m.reason, m.kind
        assert (m.event_id is None) == (m.reason is not None)


def test_a_large_draw_is_mostly_bad_deterministic_and_bounded() -> None:
    a = list(hostile_messages(2000, seed=11, now=1.7e9))
    b = list(hostile_messages(2000, seed=11, now=1.7e9))
    assert a == b
    reasons = Counter(m.reason for m in a)
    assert reasons[None] < len(a) / 3, "mostly hostile"
    assert {
        "invalid_utf8",
        "invalid_json",
        "schema",
        "too_large",
        "text_too_long",
        "empty",
        "key_mismatch",
    } <= set(reasons)
    # Everything fits a default broker (message.max.bytes = 1 MiB) with room for headers.
    assert max(len(m.value or b"") for m in a) < 1_000_000
    ids = [m.event_id for m in a if m.event_id]
    assert len(ids) == len(set(ids))


def test_every_bad_message_of_a_large_draw_is_rejected_as_declared() -> None:
    """Not only a sample: each of 3,000 draws (random choices inside a kind included)."""
    for m in hostile_messages(3000, seed=5):
        if m.kind not in ("megabyte_text", "megabyte_control_chars"):  # covered above, slow
            assert outcome(m.topic, m.key, m.value, Limits()) == m.reason, m.kind
