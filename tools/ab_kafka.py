"""Read ``recommendations`` and ``user-events`` over a time range, for ``recstream ab report``.

No consumer group and no commits: every partition is assigned, each read from
the first offset whose record timestamp is at or after the range's start (Kafka's
time index, ``offsets_for_times``) up to the end offsets seen when reading began.
Clicks are kept when their ``ts`` is in ``[start, end]``. Lists are read from
``lookback_s`` before ``start`` (a click just after ``start`` is judged against
a list sent before it) to ``grace_s`` after ``end`` (so a click's own answer is
known and excluded, as the worker excludes it). A record that does not parse is
counted and skipped. Progress is shown per topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from tqdm.auto import tqdm

from recstream.kafka_admin import client_kwargs
from recstream.settings import Settings
from stream.faust_compat import topic_partitions
from stream.feedback import CLICK
from tools.ab_report import Click, Sent, sent_from_record

log = logging.getLogger(__name__)

__all__ = ["Read", "read_range"]


@dataclass
class Read:
    sent: list[Sent]
    clicks: list[Click]
    skipped: dict[str, int]  # topic -> records that did not parse


async def _read_topic(
    settings: Settings,
    topic: str,
    start_ts: float,
    stop_ts: float,
    keep: Callable[[Any, dict[str, Any]], None],
    progress: bool,
) -> int:
    """Feed every record of ``topic`` with a timestamp from ``start_ts`` on (up to the
    end offsets now, and not past ``stop_ts``) to ``keep``; return how many did not parse."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **client_kwargs(settings.bootstrap, settings.security),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    bad = 0
    try:
        parts = await topic_partitions(consumer, topic)
        if not parts:
            raise ValueError(f"topic {topic!r} does not exist on {settings.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found = await consumer.offsets_for_times({tp: max(0, int(start_ts * 1000)) for tp in tps})
        begins = {tp: (found[tp].offset if found[tp] is not None else ends[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, begins[tp])
        todo = {tp for tp in tps if begins[tp] < ends[tp]}
        total = sum(ends[tp] - begins[tp] for tp in tps)
        stop_ms = stop_ts * 1000
        with tqdm(total=total, unit="rec", desc=topic, disable=not progress) as bar:
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for rec in records:
                        if rec.offset >= ends[tp] or rec.timestamp > stop_ms:
                            todo.discard(tp)
                            break
                        try:
                            value = orjson.loads(rec.value)
                            if not isinstance(value, dict):
                                raise ValueError("not a JSON object")
                            keep(rec, value)
                        except (ValueError, TypeError, KeyError):
                            bad += 1
                    if records:
                        bar.update(len(records))
                    if tp in todo and await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
    finally:
        await consumer.stop()
    return bad


async def read_range(
    settings: Settings,
    start: float,
    end: float,
    *,
    lookback_s: float = 3600.0,
    grace_s: float = 60.0,
    progress: bool = True,
) -> Read:
    """The lists and clicks the report needs (see the module docstring)."""
    topics = settings.topics
    sent: list[Sent] = []
    clicks: list[Click] = []

    def keep_sent(rec: Any, v: dict[str, Any]) -> None:
        sent.append(sent_from_record(v, rec.partition, rec.offset))

    def keep_click(rec: Any, v: dict[str, Any]) -> None:
        if v.get("type") != CLICK:
            return
        ts = float(v["ts"])
        if start <= ts <= end:
            clicks.append(Click(str(v["event_id"]), str(v["user_id"]), str(v["item_id"]), ts))

    bad_recs = await _read_topic(
        settings, topics.recommendations, start - lookback_s, end + grace_s, keep_sent, progress
    )
    # Events are stamped by their producers: read from a little before the range, since
    # a record's broker timestamp can trail the ts inside it.
    bad_events = await _read_topic(
        settings, topics.user_events, start - grace_s, end + grace_s, keep_click, progress
    )
    if bad_recs or bad_events:
        log.warning("skipped unparsable records: %d lists, %d events", bad_recs, bad_events)
    return Read(sent, clicks, {topics.recommendations: bad_recs, topics.user_events: bad_events})


def read_range_sync(settings: Settings, start: float, end: float, **kw: Any) -> Read:
    return asyncio.run(read_range(settings, start, end, **kw))
