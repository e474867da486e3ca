"""``item-updates``: every worker applies every catalog change to its live index.

Why not a Faust agent: an agent's topic is consumed by the app's consumer
group, so each worker would only see its share of the partitions, and a worker
would keep recommending an item another worker saw deleted. A GlobalTable would
also reach every worker, but it needs its own changelog copy of the topic and
replays it through the table machinery. Instead each worker runs one plain
aiokafka consumer **without a group** (``group_id=None``), assigned to every
partition of ``item-updates`` and reading from the earliest offset. It commits
nothing: a restarted worker replays the topic, which is idempotent (the last
upsert/delete per item wins), and ``item-updates`` is meant to be compacted by
``item_id``.

Each change is applied to every model the worker serves (the control's and the
canary's) and kept in an :class:`~stream.overlay.ItemOverlay` so that a
hot-reloaded bundle gets them too (the rules for applying one are there).
A record is keyed by its ``item_id`` (compaction keeps the last record per key,
so a record keyed otherwise could outlive or erase another item's change); a
null value (a tombstone) deletes the item its key names, as a ``delete`` does:
compaction keeps tombstones (``stream.topics``: ``delete.retention.ms`` forever).
Values are decoded with the worker's configured limits. Invalid messages are
dead-lettered by every worker that reads them (each worker sees them); DLQ
consumers can dedupe by topic/partition/offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError

from recstream.errors import SchemaError
from recstream.schemas import DEFAULT_LIMITS, ItemUpdate, Limits, decode
from stream.follow import from_start
from stream.messages import InMessage
from stream.model import ModelHolder
from stream.overlay import ItemOverlay, apply_update

log = logging.getLogger(__name__)

DeadLetter = Callable[[InMessage, str, str], Awaitable[None]]


class CatalogFollower:
    """Consumes every partition of ``item-updates`` and keeps the live model current."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        holders: Sequence[ModelHolder],
        overlay: ItemOverlay,
        dead_letter: DeadLetter,
        on_applied: Callable[[], None] = lambda: None,
        on_upsert: Callable[[str], object] = lambda item_id: None,
        consumer_options: dict[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.holders = holders
        self.overlay = overlay
        self.dead_letter = dead_letter
        self.on_applied = on_applied
        self.on_upsert = on_upsert  # an item became live: what was learned for it applies now
        self.options = consumer_options or {}
        self.limits = limits
        self.clock = clock
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        async with from_start(self.bootstrap, self.topic, self.options, fetch_max_wait_ms=100) as (
            consumer,
            tps,
            ends,
        ):
            log.info(
                "following %s (%d partitions, %d updates to replay)",
                self.topic,
                len(tps),
                sum(ends.values()),
            )
            while True:
                if not self.caught_up.is_set() and all(
                    await asyncio.gather(*(self._at_end(consumer, tp, ends[tp]) for tp in tps))
                ):
                    self.caught_up.set()
                    log.info("catalog caught up: %d item changes applied", len(self.overlay))
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    for rec in records:
                        await self._handle(
                            InMessage(tp.topic, tp.partition, rec.offset, rec.key, rec.value)
                        )

    def decode(self, msg: InMessage) -> ItemUpdate:
        """The change a record carries, or :class:`SchemaError` (a dead letter)."""
        if msg.key is None:
            raise SchemaError("key_mismatch", "record has no key; it must be the item_id")
        try:
            key = msg.key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError("invalid_utf8", f"key is not valid UTF-8 ({exc.reason})") from exc
        if msg.value is None:  # a tombstone: the item named by the key is deleted
            try:
                return ItemUpdate(item_id=key, op="delete", ts=self.clock())
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                raise SchemaError("schema", f"tombstone key: {err['msg']}", "item_id") from exc
        update = decode(ItemUpdate, msg.value, self.limits)
        if update.item_id != key:
            raise SchemaError("key_mismatch", "record key differs from the item_id", "item_id")
        return update

    @staticmethod
    async def _at_end(consumer: Any, tp: Any, end: int) -> bool:
        return bool(await consumer.position(tp) >= end)

    async def _handle(self, msg: InMessage) -> None:
        try:
            update = self.decode(msg)
        except SchemaError as exc:
            await self.dead_letter(msg, exc.reason, str(exc))
            return
        self.overlay.record(update)
        applied = False
        for holder in self.holders:
            current = holder.current
            if current is None:
                continue  # replayed onto the model when it loads
            try:
                apply_update(current, update, holder.created_ts)
            except Exception as exc:
                log.exception("item update %s failed (%s)", update.item_id, holder.bucket)
                await self.dead_letter(msg, "processing", f"{type(exc).__name__}: {exc}")
                return
            applied = True
        if applied:
            self.on_applied()
            if update.op == "upsert":
                self.on_upsert(update.item_id)
