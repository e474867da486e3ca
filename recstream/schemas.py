"""Message schemas of every topic (docs/architecture.md), validated at the edge.

Decoding is strict: JSON types must match (no "12" for a number), timestamps
must be finite, non-negative and not far in the future, ids and text are
bounded. Unknown extra fields are ignored so producers can add fields without
breaking older workers. Failures raise :class:`~recstream.errors.SchemaError`
with a stable ``reason`` code and the offending field.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_json

from recstream.errors import SchemaError

__all__ = [
    "DLQRecord",
    "EventType",
    "ItemFeedback",
    "ItemUpdate",
    "Limits",
    "RecItem",
    "Recommendation",
    "SearchText",
    "UserEvent",
    "decode",
    "dlq_raw",
    "dlq_value_bound",
    "encode",
    "json_schemas",
]

MAX_ID_CHARS = 256
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
EventType = Literal["click", "view", "cart", "purchase", "rating"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what a decoder accepts (settings with safe defaults)."""

    max_message_bytes: int = 64 * 1024
    max_text_chars: int = 2_000
    max_future_skew_s: float = 24 * 3600.0  # clock skew tolerated on ``ts``
    dlq_oversize_head_bytes: int = 4 * 1024  # what the dead letter of an oversized message keeps


DEFAULT_LIMITS = Limits()


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", allow_inf_nan=False)

    @field_validator("ts", check_fields=False)
    @classmethod
    def _ts_sane(cls, v: float, info: ValidationInfo) -> float:
        if v < 0:
            raise ValueError("timestamp must be seconds since the epoch, not negative")
        limits = (info.context or {}).get("limits", DEFAULT_LIMITS)  # set by decode()
        if v > time.time() + limits.max_future_skew_s:
            raise ValueError("timestamp is in the future beyond the allowed clock skew")
        return v


class UserEvent(_Message):
    """``user-events`` value: one interaction of a user with an item."""

    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    ts: float
    value: float | None = None


class SearchText(_Message):
    """``search-text`` value: something a user typed."""

    event_id: Id
    user_id: Id
    text: Annotated[str, Field(min_length=1)]
    ts: float


class ItemUpdate(_Message):
    """``item-updates`` value: the catalog changed."""

    item_id: Id
    op: Literal["upsert", "delete"]
    title: str = ""
    text: str | None = None
    attributes: dict[str, Any] | None = None
    ts: float


class ItemFeedback(_Message):
    """``item-feedback`` value (internal, keyed by item): what one event teaches one item.

    ``op="click"``: written by the worker that answered the click; ``step`` is the
    direction the click moves the item's vector in the item space of bundle
    ``version`` (base64 little-endian float32, ``inference.online.feedback_step``;
    None when there is no step to take, so only the item's click count learns);
    ``source_partition``/``source_offset`` locate the click in ``user-events`` so a
    replayed click is folded once. ``op="forget"``: the catalog deleted the item;
    its learned state goes (``ts`` is the deletion's).
    """

    item_id: Id
    op: Literal["click", "forget"] = "click"
    ts: float
    version: str = Field(default="", max_length=MAX_ID_CHARS)
    created_ts: float = 0.0
    step: str | None = Field(default=None, max_length=65_536)
    trained: bool = True
    source_partition: int = Field(default=0, ge=0)
    source_offset: int = Field(default=0, ge=0)


class RecItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    score: float
    sources: list[str]
    because: str | None = None


class Recommendation(BaseModel):
    """``recommendations`` value: the answer to one input event."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    trigger_event_id: str
    trigger: Literal["event", "query", "item"]
    items: list[RecItem]
    model_version: str
    # Which bucket's bundle answered (stream/buckets.py): "control" (the CURRENT
    # pointer) or "canary" (CANDIDATE). Optional: absent from older workers' records.
    bucket: Literal["control", "canary"] | None = None
    event_ts: float
    emitted_ts: float


class DLQRecord(BaseModel):
    """``recstream-dlq`` value: an input that could not be processed, and why."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    reason: str  # stable code, also the metric label
    error: str  # human-readable message naming the field
    raw: str  # the original bytes: text if valid UTF-8, else base64 (see dlq_raw)
    raw_encoding: Literal["text", "base64"] = "text"
    raw_size: int | None = None  # bytes of the original value; raw may hold only a prefix
    raw_truncated: bool = False


DLQ_MAX_KEY_BYTES = 1024  # a dead letter keeps at most this much of the original key
DLQ_MAX_ERROR_CHARS = 1000  # ... and of the error message
_DLQ_ENVELOPE_BYTES = 8 * 1024  # every other field of a dead letter, JSON-escaped, with room


def dlq_raw(value: bytes | None, limit: int) -> tuple[str, Literal["text", "base64"], bool]:
    """``(raw, raw_encoding, truncated)`` of a rejected value for its DLQ record.

    At most ``limit`` bytes of the original are kept, and they never take more
    than base64 would (4 characters per 3 bytes) once in the JSON record: text
    when the kept bytes are UTF-8 and JSON-escape no larger than that (a
    character split by the cut dropped), else base64. So a dead letter is
    bounded by ``limit`` whatever the bytes (:func:`dlq_value_bound`): without
    that, 200 KiB of NULs, each escaped as ``\\u0000``, made a 1.2 MB record, over
    the producer's request limit, and the worker crashed on it at every retry.
    Only the kept head is decoded: a megabyte message costs what its head costs.
    """
    value = value or b""
    truncated = len(value) > limit
    head = value[:limit] if truncated else value
    b64_len = 4 * -(-len(head) // 3)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        split = truncated and exc.reason == "unexpected end of data" and exc.start > len(head) - 4
        if not split:
            return base64.b64encode(head).decode("ascii"), "base64", truncated
        text = head[: exc.start].decode("utf-8")  # the cut fell inside a character
    if len(to_json(text)) - 2 <= b64_len:
        return text, "text", truncated
    return base64.b64encode(head).decode("ascii"), "base64", truncated


def dlq_value_bound(limits: Limits) -> int:
    """The most bytes a dead letter's value (its JSON) can take under ``limits``."""
    keep = limits.max_message_bytes  # an oversized value keeps at most this much too
    return 4 * -(-keep // 3) + _DLQ_ENVELOPE_BYTES


M = TypeVar("M", bound=BaseModel)


def decode(model: type[M], raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> M:
    """Parse and validate one message value, or raise :class:`SchemaError`."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limits.max_message_bytes:
        raise SchemaError("too_large", f"message is {size} bytes, limit {limits.max_message_bytes}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError("invalid_utf8", f"value is not valid UTF-8 ({exc.reason})") from exc
    try:
        msg = model.model_validate_json(raw, context={"limits": limits})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err["type"] == "json_invalid":
            raise SchemaError("invalid_json", f"value is not JSON: {err['msg']}") from exc
        field = ".".join(str(p) for p in err["loc"]) or None
        raise SchemaError("schema", err["msg"], field=field) from exc
    for name in ("text", "title"):  # a query's text; an item's title and text
        text = getattr(msg, name, None)
        if isinstance(text, str) and len(text) > limits.max_text_chars:
            raise SchemaError(
                "text_too_long", f"{len(text)} characters, limit {limits.max_text_chars}", name
            )
    return msg


def encode(msg: BaseModel) -> bytes:
    """Serialise a message value as compact UTF-8 JSON."""
    return msg.model_dump_json(exclude_none=True).encode()


TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "user-events": UserEvent,
    "search-text": SearchText,
    "item-updates": ItemUpdate,
    "item-feedback": ItemFeedback,
    "recommendations": Recommendation,
    "recstream-dlq": DLQRecord,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of every topic's value, keyed by default topic name."""
    out = {}
    for topic, model in TOPIC_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"recstream/{topic}.schema.json"
        out[topic] = schema
    return out


def dump_json_schemas() -> dict[str, str]:
    """The files ``recstream schema`` writes: name → pretty JSON text."""
    return {
        f"{topic}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for topic, schema in json_schemas().items()
    }
