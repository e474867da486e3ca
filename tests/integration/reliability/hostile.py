"""An adversarial message generator for ``user-events`` and ``search-text``.

Each :class:`Hostile` says what a correct worker must do with it: answer it
(``reason`` None: odd but valid, e.g. unknown item ids or control characters)
or dead-letter it with ``reason`` (the stable code of
:class:`recstream.errors.SchemaError`, or ``empty`` for a tombstone). The unit
tests check these expectations against ``recstream.schemas.decode``; the
integration test and ``bench/soak.py`` send the messages to a real worker.
Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from recstream.schemas import DEFAULT_LIMITS, Limits

EVENTS, QUERIES = "user-events", "search-text"


@dataclass(frozen=True)
class Hostile:
    kind: str  # which attack (a label for reports)
    topic: str  # EVENTS or QUERIES (the default topic names; map them to the test's)
    key: bytes | None
    value: bytes | None
    reason: str | None  # expected DLQ reason; None = must be answered
    event_id: str | None = None  # set when the message is valid (to match its answer)


def _event(rng: random.Random, now: float, i: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": f"h{i}",
        "user_id": f"hu{rng.randrange(200)}",
        "item_id": f"i{rng.randrange(100)}",
        "type": rng.choice(["click", "view", "cart", "purchase", "rating"]),
        "ts": now - rng.random() * 60,
    }
    base.update(over)
    return base


def _query(rng: random.Random, now: float, i: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": f"h{i}",
        "user_id": f"hu{rng.randrange(200)}",
        "text": "space adventure",
        "ts": now - rng.random() * 60,
    }
    base.update(over)
    return base


def _without(d: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in d.items() if k != key}


def _dump(d: dict[str, object]) -> bytes:
    return json.dumps(d).encode()


Maker = Callable[[random.Random, float, int, Limits], Hostile]


def _valid(topic: str, kind: str, d: dict[str, object]) -> Hostile:
    return Hostile(kind, topic, str(d["user_id"]).encode(), _dump(d), None, str(d["event_id"]))


def _bad(topic: str, kind: str, value: bytes | None, reason: str, user: str = "hx") -> Hostile:
    return Hostile(kind, topic, user.encode(), value, reason)


MAKERS: dict[str, Maker] = {
    "invalid_utf8": lambda r, now, i, lim: _bad(
        EVENTS, "invalid_utf8", b'{"event_id":"\xff\xfe\xc3\x28"}', "invalid_utf8"
    ),
    "truncated_json": lambda r, now, i, lim: _bad(
        EVENTS, "truncated_json", _dump(_event(r, now, i))[: r.randrange(1, 40)], "invalid_json"
    ),
    "empty_value": lambda r, now, i, lim: _bad(QUERIES, "empty_value", b"", "invalid_json"),
    "tombstone": lambda r, now, i, lim: _bad(EVENTS, "tombstone", None, "empty"),
    # valid bodies keyed by another user ("hx") or by nothing: their partition is
    # not their user's, so applying them would split that user's state
    "foreign_key": lambda r, now, i, lim: (
        _bad(EVENTS, "foreign_key", _dump(_event(r, now, i)), "key_mismatch")
        if r.random() < 0.5
        else _bad(QUERIES, "foreign_key", _dump(_query(r, now, i)), "key_mismatch")
    ),
    "deep_nesting": lambda r, now, i, lim: _bad(
        EVENTS, "deep_nesting", b"[" * 1000 + b"]" * 1000, "invalid_json"
    ),
    "lone_surrogate": lambda r, now, i, lim: _bad(
        EVENTS,
        "lone_surrogate",
        _dump(_event(r, now, i)).replace(b'"hu', b'"\\ud800hu', 1),
        "invalid_json",
    ),
    "top_level_array": lambda r, now, i, lim: _bad(
        EVENTS, "top_level_array", _dump(_event(r, now, i)).join([b"[", b"]"]), "schema"
    ),
    "wrong_type_user": lambda r, now, i, lim: _bad(
        EVENTS, "wrong_type_user", _dump(_event(r, now, i, user_id=r.randrange(10**6))), "schema"
    ),
    "ts_as_string": lambda r, now, i, lim: _bad(
        EVENTS, "ts_as_string", _dump(_event(r, now, i, ts=str(now))), "schema"
    ),
    "unknown_type": lambda r, now, i, lim: _bad(
        EVENTS, "unknown_type", _dump(_event(r, now, i, type="like")), "schema"
    ),
    "missing_field": lambda r, now, i, lim: _bad(
        EVENTS,
        "missing_field",
        _dump(_without(_event(r, now, i), r.choice(["item_id", "ts"]))),
        "schema",
    ),
    "query_missing_text": lambda r, now, i, lim: _bad(
        QUERIES,
        "query_missing_text",
        _dump({k: v for k, v in _query(r, now, i).items() if k != "text"}),
        "schema",
    ),
    "nan_ts": lambda r, now, i, lim: _bad(
        EVENTS,
        "nan_ts",
        _dump(_event(r, now, i, ts=0.5)).replace(b"0.5", r.choice([b"NaN", b"Infinity"])),
        "schema",
    ),
    "overflow_ts": lambda r, now, i, lim: _bad(
        EVENTS, "overflow_ts", _dump(_event(r, now, i, ts=0.5)).replace(b"0.5", b"1e400"), "schema"
    ),
    "negative_ts": lambda r, now, i, lim: _bad(
        EVENTS, "negative_ts", _dump(_event(r, now, i, ts=-r.random() * 1e9)), "schema"
    ),
    "future_ts": lambda r, now, i, lim: _bad(
        EVENTS,
        "future_ts",
        _dump(_event(r, now, i, ts=now + lim.max_future_skew_s + 3600 + r.random() * 1e9)),
        "schema",
    ),
    "empty_id": lambda r, now, i, lim: _bad(
        EVENTS, "empty_id", _dump(_event(r, now, i, item_id="")), "schema"
    ),
    "long_id": lambda r, now, i, lim: _bad(
        EVENTS, "long_id", _dump(_event(r, now, i, item_id="x" * 300)), "schema"
    ),
    "megabyte_text": lambda r, now, i, lim: _bad(
        QUERIES,
        "megabyte_text",
        _dump(_query(r, now, i, text="A" * (900_000 + r.randrange(1000)))),
        "too_large",
    ),
    "megabyte_control_chars": lambda r, now, i, lim: _bad(
        QUERIES,
        "megabyte_control_chars",
        # JSON-escaped control characters: 6 bytes each on the wire, 150k of them.
        _dump(_query(r, now, i, text="\x00\x1b\x07" * 50_000)),
        "too_large",
    ),
    "text_over_limit": lambda r, now, i, lim: _bad(
        QUERIES,
        "text_over_limit",
        _dump(_query(r, now, i, text="b" * (lim.max_text_chars + 1))),
        "text_too_long",
    ),
    "huge_sequence_field": lambda r, now, i, lim: _bad(
        EVENTS,
        "huge_sequence_field",
        _dump(_event(r, now, i, history=[f"i{n}" for n in range(lim.max_message_bytes // 4)])),
        "too_large",
    ),
    # Valid, if odd: a correct worker answers these.
    "unknown_item": lambda r, now, i, lim: _valid(
        EVENTS, "unknown_item", _event(r, now, i, item_id=f"never-seen-{r.randrange(10**9)}")
    ),
    "control_chars_in_ids": lambda r, now, i, lim: _valid(
        EVENTS,
        "control_chars_in_ids",
        _event(r, now, i, user_id=f"hu\x00\x1b[31m\u202e{r.randrange(50)}", item_id="i\t\n1"),
    ),
    "control_chars_in_text": lambda r, now, i, lim: _valid(
        QUERIES, "control_chars_in_text", _query(r, now, i, text="drama\x00\x07 \u202e\U0001f600")
    ),
    "long_sequence_field": lambda r, now, i, lim: _valid(
        EVENTS,
        "long_sequence_field",  # an unknown field, large but under the byte limit
        _event(r, now, i, history=list(range(lim.max_message_bytes // 16))),
    ),
    "ancient_ts": lambda r, now, i, lim: _valid(EVENTS, "ancient_ts", _event(r, now, i, ts=0.0)),
    "max_text": lambda r, now, i, lim: _valid(
        QUERIES, "max_text", _query(r, now, i, text="c " * (lim.max_text_chars // 2))
    ),
}

# Rare kinds that cost a megabyte each are drawn less often.
WEIGHTS = {"megabyte_text": 0.05, "megabyte_control_chars": 0.05}


def hostile_messages(
    n: int, seed: int = 7, now: float | None = None, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Hostile]:
    """``n`` adversarial messages; every kind appears at least once when ``n`` allows."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    kinds = list(MAKERS)
    weights = [WEIGHTS.get(k, 1.0) for k in kinds]
    for i in range(n):
        kind = kinds[i] if i < len(kinds) else rng.choices(kinds, weights)[0]
        yield MAKERS[kind](rng, now, i, limits)
