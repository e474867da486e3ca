"""Plain aiokafka producers/consumers for the reliability tests (no consumer groups)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recstream.kafka_admin import client_kwargs
from recstream.settings import KafkaSecurity


def producer(
    bootstrap: str, security: KafkaSecurity | None = None, **extra: Any
) -> AIOKafkaProducer:
    """acks=all with idempotence: an acknowledged record is on min.insync.replicas brokers."""
    opts: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "request_timeout_ms": 30_000,
        "max_request_size": 4 * 1024 * 1024,
        "linger_ms": 2,
    }
    opts.update(extra)
    return AIOKafkaProducer(**client_kwargs(bootstrap, security), **opts)


async def produce_all(
    bootstrap: str,
    topic: str,
    pairs: Iterable[tuple[bytes | None, bytes]],
    security: KafkaSecurity | None = None,
) -> int:
    p = producer(bootstrap, security)
    n = 0
    try:
        await p.start()  # inside try: a refused start must still close the client
        futures = [await p.send(topic, key=k, value=v) for k, v in pairs]
        for f in futures:
            await f
            n += 1
    finally:
        await p.stop()
    return n


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    security: KafkaSecurity | None = None,
    until: Any = None,
    timeout_s: float = 60.0,
    idle_s: float = 3.0,
    stall_s: float | None = None,
) -> list[Any]:
    """Every record of ``topic`` from the beginning.

    Stops when ``until(records)`` is true, or (without ``until``) when the end offsets
    are reached and nothing new arrived for ``idle_s``, or (with ``until``) when
    nothing new arrived for ``stall_s``, or at ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(
        **client_kwargs(bootstrap, security),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    got: list[Any] = []
    try:
        await consumer.start()
        parts = await _partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            for records in batch.values():
                got.extend(records)
            if batch:
                last_new = time.monotonic()
            if until is not None and until(got):
                break
            if stall_s is not None and time.monotonic() - last_new > stall_s:
                break
            if until is None and time.monotonic() - last_new > idle_s:
                ends = await consumer.end_offsets(parts)
                positions = [await consumer.position(tp) for tp in parts]
                if all(pos >= ends[tp] for pos, tp in zip(positions, parts, strict=True)):
                    break
    finally:
        await consumer.stop()
    return got


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(100):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()  # topic just created
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} has no partitions")
