"""One micro-batch of user events and queries in, one recommendation per valid event out.

This is the worker's logic without Kafka: the Faust agent (``stream.app``)
hands a batch of raw messages to :meth:`BatchProcessor.process` and produces
what it returns. Per-user order is kept by walking the batch in arrival order
and snapshotting each user's state at that event, so a batch of several events
of one user gives the same answers as processing them one by one; the model is
still called once per batch.

State lives in two mappings (Faust tables in the worker, dicts in tests):

- ``sequences[user_id]`` = ``{"items": [item_id, ...], "ts_ms": [int, ...]}``
  oldest first, at most ``exclude_window`` long; the last ``sequence_length``
  are the model's input, all of them are excluded from recommendations.
- ``interests[user_id]`` = ``{"text", "ts", "vector", "model_version"}``: the
  last query, with its vector cached (base64 float32) for the model version that
  encoded it.

With a canary serving (``stream.rollout``), each event's user is put in a bucket
(``stream.buckets``) and answered by that bucket's model: a batch mixing buckets
calls each model once, for its users; every answer names its ``bucket``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from inference.types import Recommender, Request, Result
from recstream.errors import SchemaError
from recstream.schemas import (
    DEFAULT_LIMITS,
    DLQ_MAX_ERROR_CHARS,
    DLQ_MAX_KEY_BYTES,
    DLQRecord,
    Limits,
    SearchText,
    UserEvent,
    decode,
    dlq_raw,
    encode,
)
from recstream.settings import TopicNames
from stream.buckets import CANARY, CONTROL, Canary
from stream.codec import dumps
from stream.feedback import CLICK
from stream.messages import InMessage, OutMessage
from stream.metrics import WorkerMetrics
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)

PASSTHROUGH_VERSION = "passthrough"

Trigger = Literal["event", "query"]


class StateMap(Protocol):
    """Per-user state: a dict in tests, a :class:`stream.state.TableView` in the worker."""

    def get(self, key: str, default: Any = None, /) -> Any: ...

    def __setitem__(self, key: str, value: Any, /) -> None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """One recommendation a batch produced: what the agent needs of it, and its wire bytes."""

    user_id: str
    trigger_event_id: str
    trigger: Trigger
    event_ts: float
    emitted_ts: float
    value: bytes  # the ``recommendations`` record value (recstream.schemas.Recommendation)
    items: tuple[str, ...] = ()  # the recommended item ids, rank 1 first
    model_version: str = ""
    bucket: str = CONTROL
    clicked: str | None = None  # the clicked item, when the trigger was a click


@dataclass(frozen=True, slots=True)
class Click:
    """A user event the batch answered, and the user's vector that answered it: what
    online learning (``stream.learning``) needs to teach the item."""

    item_id: str
    ts: float
    partition: int  # where the event came from (its input partition and offset)
    offset: int
    user_vector: np.ndarray | None  # None: the user has no known history
    model_version: str


@dataclass
class BatchOutput:
    messages: list[OutMessage] = field(default_factory=list)  # to produce, in this order
    recommendations: list[Answer] = field(default_factory=list)
    dlq: list[DLQRecord] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)  # answered user events, in order


def dlq_record(
    msg: InMessage, reason: str, error: str, limits: Limits = DEFAULT_LIMITS
) -> DLQRecord:
    """The dead-letter record of ``msg``: raw kept as text when it is UTF-8, else base64.

    A message within ``limits.max_message_bytes`` is kept whole; a larger one only
    its first ``limits.dlq_oversize_head_bytes``, enough to identify it. Writing
    64 KiB (up to 6x that once JSON-escaped) per megabyte message slowed the valid
    traffic around a flood of them (bench/RESULTS.md, reliability).
    """
    size = len(msg.value or b"")
    keep = limits.max_message_bytes
    if size > keep:
        keep = min(keep, limits.dlq_oversize_head_bytes)
    raw, enc, truncated = dlq_raw(msg.value, keep)
    if len(error) > DLQ_MAX_ERROR_CHARS:
        error = error[: DLQ_MAX_ERROR_CHARS - 1] + "…"
    return DLQRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        reason=reason,
        error=error,
        raw=raw,
        raw_encoding=enc,
        raw_size=size,
        raw_truncated=truncated,
    )


def dlq_key(key: bytes | None) -> bytes | None:
    """A dead letter's key: the original one, cut to ``DLQ_MAX_KEY_BYTES`` (a key is not
    bounded by ``max_message_bytes``; the record still names topic, partition, offset)."""
    return key if key is None or len(key) <= DLQ_MAX_KEY_BYTES else key[:DLQ_MAX_KEY_BYTES]


def check_key(key: bytes | None, user_id: str) -> None:
    """Raise ``key_mismatch`` unless the record's key is its ``user_id`` (UTF-8).

    The inputs are partitioned by key and a user's state lives in the partition of
    its ``user_id``: a record keyed otherwise (or not at all) lands on another
    partition, so its user's history would be split between two owners and replay
    detection (one applied offset per user and partition) would no longer hold.
    """
    if key is None:
        raise SchemaError("key_mismatch", "record has no key; it must be the user_id", "user_id")
    if key != user_id.encode():  # neither is logged: both identify a user
        raise SchemaError("key_mismatch", "record key differs from the user_id", "user_id")


def pack_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def unpack_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").copy()


def _columns(value: Any) -> tuple[list[str], list[int]]:
    """A stored sequence as (item ids, ts in ms), oldest first.

    Stored column-wise with integer milliseconds: the whole window is written to
    the changelog on every click, and JSON of float pairs cost 4x more to encode.
    """
    if not value:
        return [], []
    if isinstance(value, dict):
        return list(value.get("items", [])), list(value.get("ts_ms", []))
    return [str(v[0]) for v in value], [round(float(v[1]) * 1000) for v in value]  # old rows


def _replayed(stored: Any, msg: InMessage | None) -> bool:
    """True if ``msg`` was already applied to this stored sequence."""
    applied = stored.get("applied") if isinstance(stored, dict) else None
    if msg is None or not applied:
        return False
    return bool(applied[0] == msg.partition and msg.offset <= applied[1])


@dataclass
class _Pending:
    """A decoded event waiting for its model answer."""

    msg: InMessage
    event: UserEvent | SearchText
    request: Request | None  # None in passthrough mode
    bucket: str = CONTROL
    recommender: Recommender | None = None  # the bucket's model (None in passthrough mode)


class BatchProcessor:
    """Decodes, updates per-user state, calls the model once, builds the outputs."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        topics: TopicNames,
        model: Callable[[], Recommender | None],
        sequences: StateMap,
        interests: StateMap,
        metrics: WorkerMetrics,
        on_click: Callable[[str], None] | None = None,
        on_click_replayed: Callable[[str], None] | None = None,
        on_message: Callable[[InMessage], None] | None = None,
        clock: Callable[[], float] = time.time,
        limits: Limits = DEFAULT_LIMITS,
        canary: Callable[[], Canary | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.limits = limits  # RECSTREAM_LIMITS__*: what the edge accepts
        self.topics = topics
        self.model = model  # the control bucket's model
        self.canary = canary  # the canary's model and who gets it, if one serves
        self.sequences = sequences
        self.interests = interests
        self.metrics = metrics
        self.on_click = on_click
        # A click applied before a crash, seen again: its other state (trending) is
        # written to the changelog again, as its sequence is (see _update_state).
        self.on_click_replayed = on_click_replayed
        # Called before each message's state is touched: the worker binds Faust's
        # current event there so table writes go to that message's partition.
        self.on_message = on_message
        self.clock = clock

    def _events_in(self, topic: str) -> Any:
        return self.metrics.child(self.metrics.events_in, topic)

    # -- one batch ---------------------------------------------------------
    def process(self, batch: Sequence[InMessage]) -> BatchOutput:
        out = BatchOutput()
        control = None if self.settings.passthrough else self.model()
        canary = None if control is None else self.canary()
        t0 = time.perf_counter()
        pending: list[_Pending] = []
        for msg in batch:
            self._events_in(msg.topic).inc()
            if self.on_message is not None:
                self.on_message(msg)
            event = self._decode(msg, out)
            if event is None:
                continue
            bucket, recommender = CONTROL, control
            if canary is not None and canary.buckets.of(event.user_id) == CANARY:
                bucket, recommender = CANARY, canary.recommender
            if recommender is None:
                pending.append(_Pending(msg, event, None, bucket))
                continue
            request = self._update_state(event, recommender.model_version, msg)
            pending.append(_Pending(msg, event, request, bucket, recommender))
        self.metrics.child(self.metrics.stage_latency, "decode").observe(time.perf_counter() - t0)
        if not pending:
            return out
        results = self._recommend(pending, out)
        for p, result in zip(pending, results, strict=True):
            if result is None:
                continue
            if isinstance(p.event, SearchText) and result.query_vector is not None:
                if self.on_message is not None:
                    self.on_message(p.msg)  # the write belongs to this event's partition
                self._cache_query_vector(p.event, result.query_vector, result.model_version)
            if isinstance(p.event, UserEvent) and result.model_version != PASSTHROUGH_VERSION:
                out.clicks.append(
                    Click(
                        p.event.item_id,
                        p.event.ts,
                        p.msg.partition,
                        p.msg.offset,
                        result.user_vector,
                        result.model_version,
                    )
                )
            answer = self._answer(p.event, result, p.bucket)
            out.recommendations.append(answer)
            out.messages.append(
                OutMessage(self.topics.recommendations, p.event.user_id.encode(), answer.value)
            )
        return out

    # -- steps -------------------------------------------------------------
    def _decode(self, msg: InMessage, out: BatchOutput) -> UserEvent | SearchText | None:
        model: type[UserEvent] | type[SearchText]
        model = UserEvent if msg.topic == self.topics.user_events else SearchText
        try:
            if msg.value is None:
                raise SchemaError("empty", "message has no value (tombstone)")
            event = decode(model, msg.value, self.limits)
            check_key(msg.key, event.user_id)
            return event
        except SchemaError as exc:
            self._dead_letter(msg, exc.reason, str(exc), out)
            return None

    def _dead_letter(self, msg: InMessage, reason: str, error: str, out: BatchOutput) -> None:
        log.warning(
            "dead-lettering %s[%s]@%s: %s (%s)", msg.topic, msg.partition, msg.offset, reason, error
        )
        record = dlq_record(msg, reason, error, self.limits)
        out.dlq.append(record)
        out.messages.append(OutMessage(self.topics.dlq, dlq_key(msg.key), encode(record)))
        self.metrics.dlq.labels(topic=msg.topic, reason=reason).inc()

    def _update_state(
        self, event: UserEvent | SearchText, version: str, msg: InMessage | None = None
    ) -> Request:
        """Apply ``event`` to the user's state and return the request that answers it."""
        self.apply(event, msg)
        return self.request_for(event.user_id, event.ts, version)

    def apply(self, event: UserEvent | SearchText, msg: InMessage | None = None) -> bool:
        """Apply ``event`` to its user's state; False if it was a replay (nothing appended).

        A sequence remembers the input (partition, offset) it last applied. An
        event at or before it is a replay after a crash (its offset was not
        committed yet): it is answered again but not appended again, so the table
        equals one built from the log. Its state is written again though: the
        store is written before the broker acknowledges the changelog record, so
        a worker killed in between kept a state its changelog never got, and the
        worker that restores from the changelog (after a partition move) would
        miss the event. Writing the stored value again makes the changelog catch up.
        """
        s = self.settings
        if isinstance(event, SearchText):
            self.interests[event.user_id] = {"text": event.text, "ts": event.ts}
            return True
        stored = self.sequences.get(event.user_id)
        if _replayed(stored, msg):
            self.sequences[event.user_id] = stored  # the changelog catches up (see above)
            if self.on_click_replayed is not None:
                self.on_click_replayed(event.item_id)
            return False
        items, stamps = _columns(stored)
        items = [*items[-(s.exclude_window - 1) :], event.item_id]
        stamps = [*stamps[-(s.exclude_window - 1) :], round(event.ts * 1000)]
        value: dict[str, Any] = {"items": items, "ts_ms": stamps}
        if msg is not None:
            value["applied"] = [msg.partition, msg.offset]
        self.sequences[event.user_id] = value
        if self.on_click is not None:
            self.on_click(event.item_id)
        return True

    def request_for(self, user_id: str, now_ts: float, version: str) -> Request:
        """The request that recommends for ``user_id`` from its state now (nothing changes)."""
        s = self.settings
        items, _ = _columns(self.sequences.get(user_id))
        query, age, vector = self._query_for(user_id, now_ts, version)
        return Request(
            user_id=user_id,
            history=tuple(items[-s.sequence_length :]),
            query=query,
            query_age_s=age,
            query_vector=vector,
            exclude=frozenset(items),
            k=s.top_k,
        )

    def _query_for(
        self, user_id: str, now_ts: float, version: str
    ) -> tuple[str | None, float | None, np.ndarray | None]:
        interest = self.interests.get(user_id)
        if not interest:
            return None, None, None
        age = max(0.0, now_ts - float(interest["ts"]))
        if age > self.settings.query_ttl_s:
            return None, None, None
        vector = None
        if interest.get("model_version") == version and interest.get("vector"):
            vector = unpack_vector(interest["vector"])
        return interest["text"], age, vector

    def _cache_query_vector(self, event: SearchText, vector: np.ndarray, version: str) -> None:
        current = self.interests.get(event.user_id)
        # Cache only if this query is still the user's latest one.
        if current and current.get("text") == event.text and current.get("ts") == event.ts:
            self.interests[event.user_id] = {
                "text": event.text,
                "ts": event.ts,
                "vector": pack_vector(vector),
                "model_version": version,
            }

    def _recommend(self, pending: list[_Pending], out: BatchOutput) -> list[Result | None]:
        """One ``recommend_batch`` per model, for its users; results in ``pending``'s order."""
        results: list[Result | None] = [None] * len(pending)
        groups: dict[int, tuple[Recommender, list[int]]] = {}  # a batch may mix buckets
        for i, p in enumerate(pending):
            if p.recommender is None:
                results[i] = Result(p.event.user_id, [], PASSTHROUGH_VERSION)
            else:
                groups.setdefault(id(p.recommender), (p.recommender, []))[1].append(i)
        for recommender, rows in groups.values():
            requests = [r for i in rows if (r := pending[i].request) is not None]
            try:
                got: list[Result | None] = list(recommender.recommend_batch(requests))
            except Exception:
                log.exception(
                    "recommend_batch failed for %d requests; retrying one by one", len(requests)
                )
                got = [self._recommend_one(recommender, pending[i], out) for i in rows]
            else:
                timings = got[0].timings if got and got[0] is not None else {}
                for stage, seconds in timings.items():
                    self.metrics.child(self.metrics.stage_latency, stage).observe(seconds)
            for i, result in zip(rows, got, strict=True):
                results[i] = result
        return results

    def _recommend_one(
        self, recommender: Recommender, p: _Pending, out: BatchOutput
    ) -> Result | None:
        try:
            return recommender.recommend_batch([p.request])[0] if p.request else None
        except Exception as exc:
            log.exception("recommendation failed for event %s", p.event.event_id)
            self._dead_letter(p.msg, "processing", f"{type(exc).__name__}: {exc}", out)
            return None

    def _answer(self, event: UserEvent | SearchText, result: Result, bucket: str) -> Answer:
        """The answer to ``event``, its value encoded (recstream.schemas.Recommendation).

        The value is built as a dict and dumped with orjson (``stream.codec``):
        constructing pydantic models for ten items per event was ~13 % of the
        worker's CPU. The unit tests parse every output with ``Recommendation`` to
        keep the shapes equal.
        """
        items = []
        ids = []
        for i in result.items:
            item: dict[str, Any] = {
                "item_id": i.item_id,
                "score": float(i.score),
                "sources": list(i.sources),
            }
            if i.because is not None:
                item["because"] = i.because
            items.append(item)
            ids.append(i.item_id)
        clicked = None
        if isinstance(event, UserEvent):
            trigger: Trigger = "event"
            if event.type == CLICK:
                clicked = event.item_id
        else:
            trigger = "query"
        emitted = self.clock()
        version = result.model_version
        value = {
            "user_id": event.user_id,
            "trigger_event_id": event.event_id,
            "trigger": trigger,
            "items": items,
            "model_version": version,
            "bucket": bucket,
            "event_ts": event.ts,
            "emitted_ts": emitted,
        }
        return Answer(
            event.user_id,
            event.event_id,
            trigger,
            event.ts,
            emitted,
            dumps(value),
            tuple(ids),
            version,
            bucket,
            clicked,
        )
