"""Event schemas: round trips, rejections that name the field, fuzzed decoders."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recstream.errors import SchemaError
from recstream.schemas import (
    DLQRecord,
    ItemUpdate,
    Limits,
    RecItem,
    Recommendation,
    SearchText,
    UserEvent,
    decode,
    dump_json_schemas,
    encode,
    json_schemas,
)

NOW = time.time()


def event(**overrides) -> dict:
    base = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": NOW}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "model,value",
    [
        (UserEvent, event()),
        (UserEvent, event(type="rating", value=4.5)),
        (SearchText, {"event_id": "q1", "user_id": "u1", "text": "90s comedy", "ts": NOW}),
        (
            ItemUpdate,
            {
                "item_id": "i9",
                "op": "upsert",
                "title": "Heat (1995)",
                "ts": NOW,
                "attributes": {"genres": ["Action"]},
            },
        ),
        (ItemUpdate, {"item_id": "i9", "op": "delete", "ts": NOW}),
    ],
)
def test_valid_messages_round_trip(model, value) -> None:
    msg = decode(model, json.dumps(value).encode())
    assert decode(model, encode(msg)) == msg
    assert (
        msg.model_dump(exclude_none=True, exclude_defaults=False).items()
        >= {k: v for k, v in value.items()}.items()
    )


def test_output_messages_round_trip() -> None:
    rec = Recommendation(
        user_id="u1",
        trigger_event_id="e1",
        trigger="event",
        model_version="v1",
        items=[RecItem(item_id="i2", score=0.9, sources=["sequence"], because="i1")],
        event_ts=NOW,
        emitted_ts=NOW + 0.003,
    )
    assert Recommendation.model_validate_json(encode(rec)) == rec
    dlq = DLQRecord(topic="t", partition=1, offset=7, reason="schema", error="x", raw="{}")
    assert DLQRecord.model_validate_json(encode(dlq)) == dlq


@pytest.mark.parametrize(
    "raw,reason,field",
    [
        (b"\xff\xfe", "invalid_utf8", None),
        (b"{not json", "invalid_json", None),
        (b"[]", "schema", None),
        (json.dumps(event(user_id=7)).encode(), "schema", "user_id"),
        (json.dumps(event(ts="1700000000")).encode(), "schema", "ts"),
        (json.dumps(event(type="like")).encode(), "schema", "type"),
        (json.dumps(event(ts=-1)).encode(), "schema", "ts"),
        (json.dumps(event(ts=NOW + 10 * 86400)).encode(), "schema", "ts"),
        (json.dumps(event(item_id="")).encode(), "schema", "item_id"),
        (json.dumps(event(event_id="x" * 300)).encode(), "schema", "event_id"),
        (
            json.dumps({k: v for k, v in event().items() if k != "item_id"}).encode(),
            "schema",
            "item_id",
        ),
        (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":NaN}', "schema", "ts"),
        (
            b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":Infinity}',
            "schema",
            "ts",
        ),
        (b" " * 70_000, "too_large", None),
    ],
)
def test_invalid_user_events_name_reason_and_field(raw: bytes, reason: str, field) -> None:
    with pytest.raises(SchemaError) as info:
        decode(UserEvent, raw)
    assert info.value.reason == reason
    assert info.value.field == field
    if field:
        assert field in str(info.value)


def test_text_limit_is_a_setting() -> None:
    raw = json.dumps({"event_id": "q", "user_id": "u", "text": "a" * 50, "ts": NOW}).encode()
    assert decode(SearchText, raw).text == "a" * 50
    with pytest.raises(SchemaError) as info:
        decode(SearchText, raw, Limits(max_text_chars=10))
    assert (info.value.reason, info.value.field) == ("text_too_long", "text")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    msg = decode(UserEvent, json.dumps(event(device="ios")).encode())
    assert not hasattr(msg, "device")


def test_json_schema_export_covers_every_topic_and_matches_models() -> None:
    schemas = json_schemas()
    assert set(schemas) == {
        "user-events",
        "search-text",
        "item-updates",
        "item-feedback",
        "recommendations",
        "recstream-dlq",
    }
    ue = schemas["user-events"]
    assert set(ue["required"]) == {"event_id", "user_id", "item_id", "type", "ts"}
    assert ue["properties"]["type"]["enum"] == ["click", "view", "cart", "purchase", "rating"]
    files = dump_json_schemas()
    assert all(json.loads(text)["$id"].endswith(name) for name, text in files.items())


def test_committed_schema_files_are_current() -> None:
    from pathlib import Path

    folder = Path(__file__).parents[3] / "deploy" / "schemas"
    for name, text in dump_json_schemas().items():
        committed = folder / name
        assert committed.is_file(), f"run `recstream schema --out deploy/schemas` ({name} missing)"
        assert committed.read_text() == text, f"{name} is stale: run `recstream schema --out ...`"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decoders_never_raise_anything_but_schema_error_on_bytes(raw: bytes) -> None:
    for model in (UserEvent, SearchText, ItemUpdate):
        try:
            decode(model, raw)
        except SchemaError as exc:
            assert exc.reason in {
                "invalid_utf8",
                "invalid_json",
                "schema",
                "too_large",
                "text_too_long",
            }


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["event_id", "user_id", "item_id", "type", "ts", "value"]), json_values
    )
)
def test_structured_garbage_is_rejected_or_valid(fields: dict) -> None:
    raw = json.dumps({**event(), **fields}).encode()
    try:
        msg = decode(UserEvent, raw)
    except SchemaError as exc:
        assert exc.reason == "schema" and exc.field
    else:
        assert isinstance(msg.ts, float) and math.isfinite(msg.ts) and msg.ts >= 0
        assert isinstance(msg.user_id, str) and msg.user_id
