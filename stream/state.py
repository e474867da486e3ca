"""Per-user state in Faust tables, written without Faust's per-write producer buffer.

A plain ``table[key] = value`` inside an agent makes Faust queue one changelog
message per write in a 100-message buffer that is drained one message at a
time and blocks consumption when full ("producer buffer full"); measured here
that turned a 200 ev/s stream into seconds of lag. :class:`TableView` instead
updates the table's store directly and collects the changelog records of a
batch, coalesced to the last value per key, which the agent produces together
with the batch's outputs. Their broker acknowledgement then gates the input
offsets like the outputs do: state is durable before its inputs are committed.

The records are what Faust itself would write (same topic, partition = the
input message's partition, JSON key and value), so Faust's standard changelog
recovery restores the tables after a restart or rebalance.

JSON is orjson's (:mod:`stream.codec`), which Faust also uses for its stores
once orjson is installed, so key bytes are identical in the store, the
changelog and recovery. With a bytes store (RocksDB) a value is encoded once
per write and the same bytes go to the store and to the changelog: through
Faust's store API each write was encoded twice and each read decoded through
four layers of Faust serializers (~8 % of the model worker's CPU).
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

from stream.codec import dumps, loads
from stream.faust_compat import (
    SerializedStore,
    bind_current_event,
    store_del,
    store_get,
    store_set,
)
from stream.messages import InMessage, OutMessage


class ChangelogBatch:
    """Changelog records of the current batch, last value per (topic, partition, key).

    Values written as objects are encoded when drained, so a key written several
    times in a batch is serialised once (values are never mutated after being
    written); values already encoded for a bytes store are kept as they are.
    """

    def __init__(self) -> None:
        self.partition = 0  # partition of the message being processed
        # (topic, partition, key bytes) -> (value, already encoded)
        self._pending: dict[tuple[str, int, bytes], tuple[Any, bool]] = {}

    def enter(self, msg: InMessage) -> None:
        """Route the state writes that follow to ``msg``'s partition (store and changelog).

        Faust's RocksDB store picks its partition database from Faust's current
        event, which batching leaves unset in the agent body: bind ``msg``'s.
        """
        bind_current_event(msg.context)
        self.partition = msg.partition

    def leave(self) -> None:
        """After a batch: no message's context is current any more."""
        bind_current_event(None)

    def add(self, topic: str, key: str, value: Any) -> None:
        self._put((topic, self.partition, dumps(key)), (value, False))

    def add_encoded(self, topic: str, key: bytes, value: bytes | None) -> None:
        """A record whose value is already bytes (None: a tombstone, the key deleted)."""
        self._put((topic, self.partition, key), (value, True))

    def _put(self, slot: tuple[str, int, bytes], entry: tuple[Any, bool]) -> None:
        self._pending.pop(slot, None)  # keep arrival order of the latest write
        self._pending[slot] = entry

    def drain(self) -> list[OutMessage]:
        out = [
            OutMessage(topic, key, value if encoded else dumps(value), partition=partition)
            for (topic, partition, key), (value, encoded) in self._pending.items()
        ]
        self._pending.clear()
        return out


class TableView:
    """``get``/``[]=`` over a Faust table's store, logging writes to ``batch``."""

    def __init__(self, table: Any, batch: ChangelogBatch) -> None:
        self.table = table
        self.batch = batch
        self.topic = table.changelog_topic.get_topic_name()

    @property
    def _bytes_store(self) -> SerializedStore | None:
        data = self.table.data  # created lazily by Faust: look it up on use
        return data if isinstance(data, SerializedStore) else None

    def get(self, key: str, default: Any = None) -> Any:
        store = self._bytes_store
        if store is not None:
            raw = store_get(store, dumps(key))
            return default if raw is None else loads(raw)
        try:
            return self.table.data[key]
        except KeyError:
            return default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        store = self._bytes_store
        if store is not None:
            k, v = dumps(key), dumps(value)
            store_set(store, k, v)
            self.batch.add_encoded(self.topic, k, v)
            return
        self.table.data[key] = value
        self.batch.add(self.topic, key, value)

    def __delitem__(self, key: str) -> None:
        """Remove ``key`` (absent: nothing to remove) and log a tombstone: Faust's
        recovery deletes a key whose latest changelog record has no value."""
        k = dumps(key)
        store = self._bytes_store
        if store is not None:
            store_del(store, k)
        else:
            self.table.data.pop(key, None)
        self.batch.add_encoded(self.topic, k, None)

    def persisted(self, partition: int, offset: int) -> None:
        """The changelog of ``partition`` is acknowledged up to ``offset`` (inclusive):
        a durable store records it, so a restart restores only what comes after."""
        self.table.data.set_persisted_offset(TP(self.topic, partition), offset)

    def __iter__(self) -> Any:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def items(self) -> Any:
        return self.table.data.items()


_MISSING = object()
