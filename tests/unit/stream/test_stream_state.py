"""TableView on a real RocksDB table store: one encoding for store and changelog."""

from __future__ import annotations

import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.codec import dumps, loads
from stream.state import ChangelogBatch, TableView

KEYS = st.text(min_size=1, max_size=20)  # any unicode, as user ids may be
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition, tp=TP("t", partition), offset=0)


def _table(tmp_path: Path, store: str) -> Any:
    app = faust.App(
        f"state-{tmp_path.name}", store=store, datadir=str(tmp_path), autodiscover=False
    )
    schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    return app.Table("user_sequence", schema=schema, partitions=4)


@pytest.fixture
def rocks(tmp_path: Path) -> Any:
    table = _table(tmp_path, "rocksdb://")
    yield table
    for db in table.data._dbs.values():
        db.close()


def _on_partition(partition: int) -> _Event:
    event = _Event(partition)
    _current_event.set(weakref.ref(event))  # what the worker binds per message
    return event  # keep it alive while the store uses it


def test_rocksdb_view_writes_one_encoding_to_store_and_changelog(rocks: Any) -> None:
    batch = ChangelogBatch()
    view = TableView(rocks, batch)
    assert view._bytes_store is rocks.data
    event = _on_partition(2)
    batch.partition = 2
    view["ü1"] = {"items": ["m1"], "ts_ms": [1]}
    view["ü1"] = {"items": ["m1", "m2"], "ts_ms": [1, 2]}  # coalesced: last value wins
    view["u2"] = {"text": "x", "ts": 1.5}
    assert view.get("ü1") == {"items": ["m1", "m2"], "ts_ms": [1, 2]}
    assert view.get("nope") is None and view.get("nope", 7) == 7
    with pytest.raises(KeyError):
        view["nope"]
    # Faust's own store API reads what the view wrote, under Faust's own key bytes.
    assert rocks.data["u2"] == {"text": "x", "ts": 1.5}
    out = batch.drain()
    assert [(m.partition, m.key) for m in out] == [(2, rocks.data._encode_key("ü1")), (2, b'"u2"')]
    for m in out:
        assert m.value == rocks.data._get(m.key)  # the same bytes in both places
    assert batch.drain() == []
    del event


def test_changelog_records_restore_an_equal_table(tmp_path: Path, rocks: Any) -> None:
    """Faust's recovery (apply_changelog_batch) of the drained records gives the same reads."""
    batch = ChangelogBatch()
    view = TableView(rocks, batch)
    written = {}
    for partition, key, value in [
        (0, "a", [1, 2]),
        (3, "b", {"n": 1}),
        (3, "c", None),
        (3, "b", {"n": 2}),
    ]:
        event = _on_partition(partition)
        batch.partition = partition
        view[key] = written[key] = value
    records = batch.drain()
    assert len(records) == 3  # b coalesced
    fresh = _table(tmp_path / "fresh", "rocksdb://")
    events = [
        SimpleNamespace(message=SimpleNamespace(tp=TP("c", m.partition), offset=i, **vars(m)))
        for i, m in enumerate(records)
    ]
    fresh.data.apply_changelog_batch(events, to_key=None, to_value=None)
    restored = TableView(fresh, ChangelogBatch())
    for m in records:
        _on_partition(m.partition)
        assert restored.get(loads(m.key)) == written[loads(m.key)]
    del event
    for db in fresh.data._dbs.values():
        db.close()


def test_memory_store_keeps_objects_and_encodes_at_drain(tmp_path: Path) -> None:
    table = _table(tmp_path, "memory://")
    batch = ChangelogBatch()
    view = TableView(table, batch)
    assert view._bytes_store is None
    view["k"] = {"a": 1}
    assert table.data["k"] == {"a": 1} and view["k"] == {"a": 1}
    [m] = batch.drain()
    assert (m.key, loads(m.value)) == (b'"k"', {"a": 1})


@settings(max_examples=200, deadline=None)
@given(key=KEYS, value=VALUES)
def test_codec_round_trips_and_keys_match_faust(key: str, value: Any) -> None:
    assert loads(dumps(value)) == value
    assert faust.serializers.codecs.dumps("json", key) == dumps(key)
