"""Reading a whole topic from its start on every partition, with no consumer group:
what every worker does for ``item-updates`` (:mod:`stream.catalog`) and for the learned
items' changelog (:mod:`stream.learning`), so each worker sees every record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from stream.faust_compat import topic_partitions

log = logging.getLogger(__name__)


@asynccontextmanager
async def from_start(
    bootstrap: str, topic: str, options: dict[str, Any], *, fetch_max_wait_ms: int
) -> AsyncIterator[tuple[Any, list[Any], dict[Any, int]]]:
    """A started consumer assigned to every partition of ``topic`` (waiting for the
    topic to exist), positioned at the start; yields (consumer, partitions, end offsets
    at the start) and stops the consumer on exit."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        **{"bootstrap_servers": bootstrap, **options},
    )
    await consumer.start()
    try:
        parts: set[int] | None = None
        while not parts:
            parts = await topic_partitions(consumer, topic)
            if not parts:
                log.info("waiting for topic %s to exist", topic)
                await asyncio.sleep(1.0)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps, await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
