"""Properties of the edge decoders beyond tests/unit/foundation (round trips of any valid
event, exact limit boundaries, forward compatibility, outputs the worker can always produce)."""

from __future__ import annotations

import json
import math
import time

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recstream.errors import SchemaError
from recstream.schemas import MAX_ID_CHARS, Limits, SearchText, UserEvent, decode, encode
from recstream.settings import InputLimits, Settings

NOW = time.time()
ids = st.text(min_size=1, max_size=MAX_ID_CHARS)  # any code point, control characters too
timestamps = st.floats(min_value=0, max_value=NOW, allow_nan=False)
values = st.none() | st.floats(allow_nan=False, allow_infinity=False)
event_types = st.sampled_from(["click", "view", "cart", "purchase", "rating"])
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
extras = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(
        lambda k: k not in {"event_id", "user_id", "item_id", "type", "ts", "value", "text"}
    ),
    st.recursive(json_scalars, lambda c: st.lists(c, max_size=5), max_leaves=20),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(ids, ids, ids, event_types, timestamps, values, extras)
def test_any_valid_event_round_trips_and_its_ids_encode_to_utf8(
    event_id: str, user_id: str, item_id: str, kind: str, ts: float, value, extra: dict
) -> None:
    body = {"event_id": event_id, "user_id": user_id, "item_id": item_id, "type": kind, "ts": ts}
    if value is not None:
        body["value"] = value
    raw = json.dumps({**extra, **body}).encode()  # unknown fields ride along
    assume(len(raw) <= Limits().max_message_bytes)
    msg = decode(UserEvent, raw)
    assert (msg.event_id, msg.user_id, msg.item_id, msg.type, msg.ts) == (
        event_id, user_id, item_id, kind, ts,
    )  # fmt: skip
    assert decode(UserEvent, encode(msg)) == msg
    # The worker keys outputs by user_id and writes ids into JSON: never an encode error.
    assert msg.user_id.encode("utf-8") and math.isfinite(msg.ts)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.integers(min_value=200, max_value=4000))
def test_byte_limit_boundary_is_exact(pad: int, limit: int) -> None:
    body = {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": 1.0}
    raw = json.dumps({**body, "pad": "p" * pad}).encode()
    limits = Limits(max_message_bytes=limit)
    try:
        decode(UserEvent, raw, limits)
    except SchemaError as exc:
        assert exc.reason == "too_large" and len(raw) > limit
    else:
        assert len(raw) <= limit
    # str input is measured in UTF-8 bytes, like the bytes Kafka delivers.
    text = raw.decode()
    try:
        decode(UserEvent, text, limits)
    except SchemaError as exc:
        assert exc.reason == "too_large" and len(text.encode()) > limit


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=300))
def test_text_limit_counts_characters_not_bytes(text: str, limit: int) -> None:
    raw = json.dumps({"event_id": "q", "user_id": "u", "text": text, "ts": 1.0}).encode()
    try:
        msg = decode(SearchText, raw, Limits(max_text_chars=limit))
    except SchemaError as exc:
        assert (exc.reason, exc.field) == ("text_too_long", "text")
        assert len(text) > limit
    else:
        assert msg.text == text and len(text) <= limit


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=60, max_value=1e6), st.floats(min_value=0, max_value=1e6))
def test_future_skew_is_the_configured_one(skew: float, ahead: float) -> None:
    raw = json.dumps(
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": time.time() + ahead}
    ).encode()
    try:
        decode(UserEvent, raw, Limits(max_future_skew_s=skew))
    except SchemaError as exc:
        assert exc.field == "ts" and ahead > skew - 5  # 5 s of slack for the clock moving
    else:
        assert ahead <= skew + 5


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_input_is_decoded_or_rejected_with_a_known_reason(raw: str) -> None:
    for model in (UserEvent, SearchText):
        try:
            msg = decode(model, raw)
        except SchemaError as exc:
            assert exc.reason in {"invalid_json", "schema", "too_large", "text_too_long"}
        else:
            assert msg.user_id.encode("utf-8")


def test_limits_come_from_settings_with_safe_defaults(monkeypatch) -> None:
    default = Settings().limits
    assert default == InputLimits()
    assert default.max_message_bytes <= 512 * 1024  # below the broker's 1 MiB, DLQ-safe
    monkeypatch.setenv("RECSTREAM_LIMITS__MAX_MESSAGE_BYTES", "4096")
    monkeypatch.setenv("RECSTREAM_LIMITS__MAX_TEXT_CHARS", "20")
    monkeypatch.setenv("RECSTREAM_LIMITS__MAX_FUTURE_SKEW_S", "0")
    limits = Settings().limits.schema_limits()
    assert limits == Limits(max_message_bytes=4096, max_text_chars=20, max_future_skew_s=0.0)
    q = json.dumps({"event_id": "q", "user_id": "u", "text": "x" * 21, "ts": 1.0})
    try:
        decode(SearchText, q, limits)
    except SchemaError as exc:
        assert exc.reason == "text_too_long"
    else:
        raise AssertionError("the setting was not applied")
    soon = json.dumps(
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": time.time() + 60}
    )
    try:
        decode(UserEvent, soon, limits)
    except SchemaError as exc:
        assert exc.field == "ts"
    else:
        raise AssertionError("max_future_skew_s=0 should reject a timestamp a minute ahead")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode), st.integers(1, 2000))
def test_dead_letter_raw_is_bounded_and_faithful(value: bytes, limit: int) -> None:
    import base64

    from recstream.schemas import DLQRecord, dlq_raw

    raw, encoding, truncated = dlq_raw(value, limit)
    kept = raw.encode() if encoding == "text" else base64.b64decode(raw)
    assert truncated == (len(value) > limit)
    assert len(kept) <= limit and value.startswith(kept)
    if not truncated:
        assert kept == value
    elif encoding == "text":
        assert len(kept) > limit - 4  # only a split character is dropped
    record = DLQRecord(topic="t", partition=0, offset=1, reason="too_large", error="e",
                       raw=raw, raw_encoding=encoding, raw_size=len(value),
                       raw_truncated=truncated)  # fmt: skip
    # Never more than base64 of the kept bytes (JSON escapes would take up to 6 a byte).
    assert len(encode(record)) <= 4 * -(-limit // 3) + 400


def test_a_megabyte_of_escaped_control_characters_dead_letters_under_the_broker_limit() -> None:
    from recstream.schemas import DLQRecord, dlq_raw

    value = json.dumps({"text": "\x00\x1b" * 100_000}).encode()  # ~1.2 MB of \\u00XX
    raw, encoding, truncated = dlq_raw(value, Limits().max_message_bytes)
    record = DLQRecord(topic="t", partition=0, offset=1, reason="too_large", error="e",
                       raw=raw, raw_encoding=encoding, raw_size=len(value),
                       raw_truncated=truncated)  # fmt: skip
    assert truncated and len(encode(record)) < 1_000_000
