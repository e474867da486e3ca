"""Every private API of faust-streaming (and of its aiokafka) the worker relies on.

Each is a place an upgrade can break silently, so they are kept here and each is
pinned by ``tests/unit/stream/test_stream_faust_compat.py`` (an upgrade that
changes one fails that test, not a production worker):

- :func:`bind_current_event`: ``faust.streams._current_event``. ``take_events``-style
  batching hands the agent a list, so Faust's task-local "current event" is unset in
  the agent body; the RocksDB store's ``_set`` picks its partition database from it.
- :func:`store_get` / :func:`store_set` / :func:`store_del`: ``SerializedStore._get`` /
  ``_set`` / ``_del``, the bytes-level store API under Faust's serializers (``stream.state``).
- :func:`enable_passive` / :func:`remove_processor`: ``Stream._enable_passive`` and
  ``Stream._processors``, as Faust's own ``take_events`` uses them (``stream.batching``).
- :func:`drop_faust_index`: ``Web.blueprints._enabled``, the list of Faust's own
  web blueprints still to be mounted; its index page at "/" has no setting to turn
  it off (the others do: ``web_tables_enabled`` and friends, set in ``stream.app``).
- :func:`topic_partitions`: aiokafka's ``AIOKafkaConsumer._client.fetch_all_metadata``
  (a consumer has no public "describe this topic"; ``stream.catalog``).
- :data:`FaustConsumer` and :data:`CONSUMER_INTERNALS`: ``stream.consumer`` subclasses
  Faust's aiokafka consumer and overrides its offset bookkeeping (``_add_gap``,
  ``_new_offset``) over the attributes named there: that is the point of the subclass,
  so it cannot hide behind functions; the names are listed and pinned instead.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.stores.base import SerializedStore
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer

__all__ = [
    "CONSUMER_INTERNALS",
    "FaustConsumer",
    "SerializedStore",
    "bind_current_event",
    "drop_faust_index",
    "enable_passive",
    "remove_processor",
    "store_del",
    "store_get",
    "store_set",
    "topic_partitions",
]

# Faust consumer members stream.consumer overrides (methods) or reads and writes (state).
CONSUMER_INTERNALS = (
    "_add_gap",  # called by Faust's fetch loop with (tp, last delivered + 1, offset now)
    "_new_offset",  # the offset to commit for tp, from the acked offsets
    "_acked",  # tp -> list of acked offsets
    "_acked_index",  # tp -> set of acked offsets
    "_gap",  # tp -> IntervalTree of offsets known missing
    "_committed_offset",  # tp -> last committed offset (None for none or 0)
    "_read_offset",  # tp -> last offset the fetch loop delivered
    "_thread",  # the consumer thread: seek_to_beginning, earliest_offsets
)


def bind_current_event(event: Any | None) -> None:
    """Make ``event`` Faust's current event in this task (None unbinds)."""
    from faust.streams import _current_event

    _current_event.set(None if event is None else weakref.ref(event))


def store_get(store: SerializedStore, key: bytes) -> bytes | None:
    """The stored bytes of ``key`` (None if absent), bypassing Faust's serializers."""
    return store._get(key)


def store_set(store: SerializedStore, key: bytes, value: bytes) -> None:
    """Store ``value`` under ``key`` in the current event's partition (see above)."""
    store._set(key, value)


def store_del(store: SerializedStore, key: bytes) -> None:
    """Remove ``key`` (absent: nothing happens), bypassing Faust's serializers."""
    store._del(key)


def enable_passive(stream: Any, channel_iterator: Any) -> None:
    """Let ``stream``'s processors run on ``channel_iterator`` without iterating it."""
    stream._enable_passive(channel_iterator)


def remove_processor(stream: Any, processor: Any) -> None:
    """Undo ``stream.add_processor(processor)`` (Faust has no public remover)."""
    stream._processors.remove(processor)


FAUST_INDEX = "faust.web.apps.production_index:blueprint"  # Faust's "/" status stub


def drop_faust_index(app: Any) -> None:
    """Do not mount Faust's index page (call before the web server starts)."""
    bps = app.web.blueprints
    bps._enabled = [(prefix, bp) for prefix, bp in bps._enabled if bp != FAUST_INDEX]


async def topic_partitions(consumer: Any, topic: str) -> set[int] | None:
    """The partitions of ``topic`` according to fresh cluster metadata (None: no such topic)."""
    cluster = await consumer._client.fetch_all_metadata()
    parts: set[int] | None = cluster.partitions_for_topic(topic)
    return parts
