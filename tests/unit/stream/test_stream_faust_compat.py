"""Pins the faust-streaming (and aiokafka) behaviour each private use in stream.faust_compat
relies on: an upgrade that changes one fails here, not in a running worker."""

from __future__ import annotations

import inspect
import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP
from intervaltree import IntervalTree

from stream.faust_compat import (
    CONSUMER_INTERNALS,
    FaustConsumer,
    bind_current_event,
    enable_passive,
    remove_processor,
    store_del,
    store_get,
    store_set,
    topic_partitions,
)


def _app(tmp_path: Path, store: str = "memory://") -> faust.App:
    return faust.App(
        f"pin-{tmp_path.name}",
        broker="kafka://127.0.0.1:1",
        store=store,
        datadir=str(tmp_path),
        autodiscover=False,
    )


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition, tp=TP("t", partition), offset=0)


def test_bind_current_event_is_what_faust_reads_as_the_current_event() -> None:
    from faust.streams import current_event

    event = _Event(3)
    bind_current_event(event)
    assert current_event() is event
    bind_current_event(None)
    assert current_event() is None


def test_the_rocksdb_store_writes_to_the_current_events_partition(tmp_path: Path) -> None:
    schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    table = _app(tmp_path, "rocksdb://").Table("pin", schema=schema, partitions=4)
    store = table.data
    try:
        event = _Event(2)
        bind_current_event(event)
        store_set(store, b'"k"', b"[1]")
        assert store_get(store, b'"k"') == b"[1]"
        assert set(store._dbs) == {2}  # the partition database the current event named
        bind_current_event(None)
        assert store_get(store, b'"k"') == b"[1]"  # found by key without an event
        assert store_get(store, b'"nope"') is None
        bind_current_event(event)
        store_del(store, b'"k"')
        store_del(store, b'"nope"')  # absent: no error
        assert store_get(store, b'"k"') is None
        bind_current_event(None)
        del event
    finally:
        bind_current_event(None)
        for db in store._dbs.values():
            db.close()


async def test_stream_processors_and_passive_mode_are_where_take_ready_expects(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    stream = app.stream(app.channel())

    async def processor(value: Any) -> Any:
        return value

    stream.add_processor(processor)
    assert processor in stream._processors
    remove_processor(stream, processor)
    assert processor not in stream._processors
    assert list(inspect.signature(stream._enable_passive).parameters)[:1] == ["channel"]
    assert callable(enable_passive)


async def test_aiokafka_consumer_metadata_is_where_topic_partitions_reads_it() -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.cluster import ClusterMetadata

    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    try:
        assert inspect.iscoroutinefunction(consumer._client.fetch_all_metadata)
    finally:
        await consumer.stop()
    cluster = ClusterMetadata()
    assert cluster.partitions_for_topic("absent") is None

    class _Client:
        async def fetch_all_metadata(self) -> ClusterMetadata:
            return cluster

    assert await topic_partitions(SimpleNamespace(_client=_Client()), "absent") is None


def test_the_consumer_internals_stream_consumer_overrides_are_faust_s() -> None:
    from faust.transport.consumer import Consumer as TransportConsumer

    # the bookkeeping the override reads and writes: same containers, same defaults
    init = inspect.getsource(TransportConsumer.__init__)
    for line in (
        "self._gap = defaultdict(IntervalTree)",
        "self._acked = defaultdict(list)",
        "self._acked_index = defaultdict(set)",
        "self._read_offset = defaultdict(lambda: None)",
        "self._committed_offset = defaultdict(lambda: None)",
    ):
        assert line in init, line
    assert issubclass(FaustConsumer, TransportConsumer)
    for name in CONSUMER_INTERNALS:
        if not name.startswith("_thread"):
            assert name in init or hasattr(FaustConsumer, name), name
    assert "self._thread" in inspect.getsource(FaustConsumer)
    # the hooks: their signatures, and Faust's own semantics the override keeps
    assert list(inspect.signature(FaustConsumer._add_gap).parameters) == [
        "self",
        "tp",
        "offset_from",
        "offset_to",
    ]
    assert inspect.iscoroutinefunction(FaustConsumer._add_gap)
    consumer: Any = object.__new__(FaustConsumer)
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    consumer._gap, consumer._committed_offset = defaultdict(IntervalTree), defaultdict(lambda: None)
    tp = TP("t", 0)
    consumer._acked[tp].extend([0, 1, 2, 4])
    assert FaustConsumer._new_offset(consumer, tp) == 3  # up to the first hole
    assert consumer._acked[tp] == [4]
    # Faust's fetch loop reports a hole as (tp, last delivered + 1, offset delivered now)
    drain = inspect.getsource(TransportConsumer._drain_messages)
    assert "await self._add_gap(tp, r_offset + 1, offset)" in drain


def test_faust_index_page_is_a_blueprint_still_to_be_mounted(tmp_path: Path) -> None:
    import faust

    from stream.faust_compat import FAUST_INDEX, drop_faust_index

    app = faust.App("pin", web_stats_enabled=False, datadir=str(tmp_path))
    assert (("", FAUST_INDEX)) in app.web.blueprints._enabled  # mounted unless dropped
    drop_faust_index(app)
    assert FAUST_INDEX not in [bp for _, bp in app.web.blueprints._enabled]


def test_nothing_else_in_stream_touches_faust_privates() -> None:
    """Private faust/aiokafka names appear only in faust_compat (and the consumer subclass,
    whose overrides are listed in CONSUMER_INTERNALS)."""
    root = Path(__file__).resolve().parents[3] / "stream"
    risky = (r"\b_current_event", r"\._get\(", r"\._set\(", r"\._enable_passive", r"\._processors")
    risky += (r"\._client\b",)
    for path in root.glob("*.py"):
        if path.name == "faust_compat.py":
            continue
        text = path.read_text()
        found = [r for r in risky if re.search(r, text)]
        assert not found, f"{path.name} uses {found}: go through stream.faust_compat"
    # and the consumer subclass uses no Faust private beyond the ones listed (and pinned)
    consumer = (root / "consumer.py").read_text()
    own = {"_floor", "_expected", "_rewound", "_rewind", "_skipped", "_recheck", "_earliest"}
    own |= {"_skip"}
    privates = set(re.findall(r"self\.(_[a-z]\w*)", consumer)) | set(
        re.findall(r"def (_[a-z]\w*)\(", consumer)
    )
    assert privates - own <= set(CONSUMER_INTERNALS), privates - own
