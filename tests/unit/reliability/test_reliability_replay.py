"""At-least-once replays: state is applied once, answers repeat; limits and DLQ bounds apply."""

from __future__ import annotations

import base64
import json

from recstream.schemas import DEFAULT_LIMITS, Limits
from recstream.settings import TopicNames
from stream.messages import InMessage
from stream.metrics import WorkerMetrics
from stream.processing import BatchProcessor
from stream.settings import WorkerSettings
from stream.testing import FakeRecommender

TOPICS = TopicNames()


def processor(limits: Limits = DEFAULT_LIMITS) -> tuple[BatchProcessor, dict, list[str]]:
    sequences: dict = {}
    clicks: list[str] = []
    proc = BatchProcessor(
        settings=WorkerSettings(store="memory://"),
        topics=TOPICS,
        model=lambda: FakeRecommender({"a": ("A", ""), "b": ("B", ""), "c": ("C", "")}),
        sequences=sequences,
        interests={},
        metrics=WorkerMetrics(),
        on_click=clicks.append,
        limits=limits,
    )
    return proc, sequences, clicks


def click(offset: int, item: str, partition: int = 0, user: str = "u") -> InMessage:
    body = {"event_id": f"e{offset}", "user_id": user, "item_id": item, "type": "click", "ts": 5.0}
    return InMessage(
        TOPICS.user_events, partition, offset, user.encode(), json.dumps(body).encode()
    )


def test_a_replayed_batch_is_answered_again_but_not_applied_twice() -> None:
    proc, sequences, clicks = processor()
    first = proc.process([click(10, "a"), click(11, "b")])
    # crash: the changelog already holds the state after offset 11, the offsets were
    # not committed, so the same records come again, then new ones.
    again = proc.process([click(10, "a"), click(11, "b"), click(12, "c")])
    assert [r.trigger_event_id for r in first.recommendations] == ["e10", "e11"]
    assert [r.trigger_event_id for r in again.recommendations] == ["e10", "e11", "e12"]
    assert sequences["u"]["items"] == ["a", "b", "c"]
    assert sequences["u"]["applied"] == [0, 12]
    assert clicks == ["a", "b", "c"], "trending counts each click once too"


def test_the_same_offset_on_another_partition_is_a_new_event() -> None:
    proc, sequences, _ = processor()
    proc.process([click(7, "a", partition=0)])
    proc.process([click(7, "b", partition=1)])  # partitions were changed under the user
    assert sequences["u"]["items"] == ["a", "b"]


def test_edge_limits_come_from_the_processor_and_dead_letters_are_bounded() -> None:
    proc, _, _ = processor(
        Limits(max_message_bytes=2048, max_text_chars=5, dlq_oversize_head_bytes=100)
    )
    long_query = {"event_id": "q", "user_id": "u", "text": "x" * 6, "ts": 5.0}
    big = b'{"pad":"' + b"\x01" * 100_000 + b'"}'
    out = proc.process([
        InMessage(TOPICS.search_text, 0, 1, b"u", json.dumps(long_query).encode()),
        InMessage(TOPICS.user_events, 0, 2, b"u", big),
    ])  # fmt: skip
    assert [d.reason for d in out.dlq] == ["text_too_long", "too_large"]
    assert out.dlq[1].raw_truncated and out.dlq[1].raw_size == len(big)
    # a rejected message within the size limit is kept whole; an oversized one only its head
    assert out.dlq[0].raw == json.dumps(long_query) and not out.dlq[0].raw_truncated
    assert out.dlq[1].raw_encoding == "base64"  # control characters: smaller than escaped
    assert base64.b64decode(out.dlq[1].raw) == big[:100]
    assert all(len(m.value) < 4 * 2048 // 3 + 500 for m in out.messages)
