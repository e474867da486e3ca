"""The Faust app is assembled from settings without touching a broker."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from recstream.errors import KafkaError
from recstream.settings import KafkaSecurity, Settings, TopicNames
from stream.app import Worker
from stream.messages import OutMessage
from stream.metrics import WorkerMetrics
from stream.settings import WorkerSettings


def test_create_app_wires_agent_tables_pages_and_settings(tmp_path: Path) -> None:
    from stream.app import create_app

    topics = TopicNames(user_events="ue", search_text="st", item_feedback="fb", item_updates="iu")
    settings = Settings(bootstrap="h1:1,h2:2", topics=topics, state_dir=tmp_path)
    ws = WorkerSettings(store="memory://", web_port=16999, app_id="unit", partitions=6)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    assert [str(u) for u in app.conf.broker] == ["kafka://h1:1", "kafka://h2:2"]
    assert app.conf.producer_acks == -1 and app.conf.web_port == 16999
    assert app.conf.consumer_auto_offset_reset == "earliest"
    agent = app.agents["recommend"]
    assert set(agent.channel.topics) == {"ue", "st"} and agent.concurrency == 1
    users = {"user_sequence", "user_interest", "trending"}
    assert {t.name for t in app.tables.values()} == {*users, "item_learned"}
    assert all(t.partitions == 6 for t in app.tables.values())
    # online learning: clicks' feedback is folded per item, catalog deletes forwarded to it
    learn, forget = app.agents["learn"], app.agents["forget"]
    assert set(learn.channel.topics) == {"fb"} and learn.concurrency == 1
    assert set(forget.channel.topics) == {"iu"} and forget.concurrency == 1
    worker = app.recstream  # type: ignore[attr-defined]
    assert worker.rollout.control.current is None and worker.rollout.canary.current is None
    assert not worker.catalog.caught_up.is_set()
    assert worker.learned.topic == "unit-item_learned-changelog"
    assert worker.readiness.learned_caught_up is worker.learned.caught_up
    assert not worker.learned.caught_up.is_set()  # not ready before the follower caught up
    assert not worker.item_feedback.online.enabled  # clicks teach only when turned on
    assert (tmp_path / "worker").is_dir()
    on = ws.model_copy(update={"online_learning": True, "web_port": 16998})
    app_on = create_app(settings, on, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    assert app_on.recstream.item_feedback.online.enabled  # type: ignore[attr-defined]


def test_rocksdb_tables_get_bounded_memory_settings(tmp_path: Path) -> None:
    # Faust's own defaults are 64 MB memtables x 3 and a 2 GiB block cache per table
    # partition: the worker's RSS would climb for a long time before levelling off.
    from stream.app import create_app

    settings = Settings(state_dir=tmp_path)
    ws = WorkerSettings(store="rocksdb://", rocksdb_write_buffer_mb=3, rocksdb_block_cache_mb=7)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    for table in app.tables.values():
        opts = table.data.rocksdb_options
        assert opts.write_buffer_size == 3 * 1024 * 1024
        assert opts.max_write_buffer_number == 2
        assert opts.block_cache_size == 7 * 1024 * 1024


def test_security_settings_become_faust_credentials() -> None:
    import faust

    from stream.app import faust_credentials

    assert faust_credentials(Settings()) is None
    sasl = KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="u", password="p"
    )
    creds = faust_credentials(Settings(security=sasl))
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "u"
    assert creds.ssl_context is not None
    with pytest.raises(KafkaError, match="USERNAME"):
        faust_credentials(Settings(security=KafkaSecurity(protocol="SASL_PLAINTEXT")))


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, topic, key, value, partition, timestamp, headers):  # type: ignore[no-untyped-def]
        self.sent.append((topic, key, value, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(fut)
        return fut


async def test_produce_sends_changelog_records_to_their_partition_and_counts_outputs() -> None:
    """Changelog records go to the input's partition (Faust restores partition P from
    changelog partition P); other outputs are partitioned by key (partition None)."""
    producer = _Producer()
    persisted: list[tuple[int, int]] = []
    table = SimpleNamespace(persisted=lambda p, o: persisted.append((p, o)))
    worker = SimpleNamespace(
        app=SimpleNamespace(producer=producer),
        metrics=WorkerMetrics(),
        _tables={"app-user_sequence-changelog": table},
    )
    worker._persist_changelog_offsets = functools.partial(Worker._persist_changelog_offsets, worker)
    msgs = [
        OutMessage("app-user_sequence-changelog", b'"u1"', b"[]", partition=3),
        OutMessage("recommendations", b"u1", b"{}"),
        OutMessage("recommendations", b"u2", b"{}"),
    ]
    done = await Worker.produce(worker, msgs)  # type: ignore[arg-type]
    assert [(t, p) for t, _, _, p in producer.sent] == [
        ("app-user_sequence-changelog", 3),
        ("recommendations", None),
        ("recommendations", None),
    ]
    await asyncio.sleep(0)
    assert not done.done(), "not delivered before the broker acked every output"
    for i, ack in enumerate(producer.acks):
        ack.set_result(SimpleNamespace(partition=3 if i == 0 else 1, offset=40 + i))
    await asyncio.wait_for(done, 1.0)
    # the store learns how far its changelog is acknowledged (a restart reads from there)
    assert persisted == [(3, 40)]
    out = worker.metrics.registry.get_sample_value
    assert out("recstream_events_out_total", {"topic": "recommendations"}) == 2
    assert out("recstream_events_out_total", {"topic": "app-user_sequence-changelog"}) == 1


def test_every_tables_acknowledged_changelog_offset_is_persisted_in_its_store(
    tmp_path: Path,
) -> None:
    # item_learned too: without it a restarted learner re-read its whole changelog
    from faust.types import TP

    from stream.app import create_app
    from stream.topics import TABLES, changelog_topic

    settings = Settings(state_dir=tmp_path)
    ws = WorkerSettings(store="rocksdb://", app_id="unit", web_port=16997, partitions=4)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    worker = app.recstream  # type: ignore[attr-defined]
    topics = [changelog_topic("unit", t) for t in TABLES]
    assert set(worker._tables) == set(topics)
    msgs = [OutMessage(t, b'"k"', b"{}", partition=2) for t in topics]
    msgs.append(OutMessage("recommendations", b"u1", b"{}"))
    acked = [SimpleNamespace(partition=2, offset=10 + i) for i in range(len(msgs))]
    worker._persist_changelog_offsets(msgs, acked)
    for i, topic in enumerate(topics):
        view = worker._tables[topic]
        assert view.table.data.persisted_offset(TP(topic, 2)) == 10 + i, topic


def test_the_worker_loop_is_uvloop_unless_settings_say_asyncio() -> None:
    import asyncio

    import uvloop

    from stream.cli import use_event_loop

    old = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop_policy(None)  # the standard library's
        use_event_loop("asyncio")
        loop = asyncio.new_event_loop()
        assert not isinstance(loop, uvloop.Loop)
        loop.close()
        use_event_loop("uvloop")
        loop = asyncio.new_event_loop()
        assert isinstance(loop, uvloop.Loop)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


DOCUMENTED = {"/metrics", "/healthz", "/readyz", "/trending", "/users/{user_id}/recommendations"}


@pytest.mark.parametrize("serve_users", [True, False])
def test_only_the_documented_endpoints_are_served(tmp_path: Path, serve_users: bool) -> None:
    from stream.app import create_app

    ws = WorkerSettings(store="memory://", serve_user_recommendations=serve_users)
    app = create_app(Settings(state_dir=tmp_path), ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    expected = DOCUMENTED if serve_users else DOCUMENTED - {"/users/{user_id}/recommendations"}
    assert set(app.web.views) == expected
    # Faust's own views: tables (every user's state), router, stats, graph, index page
    assert app.web.blueprints._enabled == []
    conf = app.conf
    assert not (conf.web_tables_enabled or conf.web_router_enabled or conf.web_stats_enabled
                or conf.web_graph_enabled or conf.web_metrics_enabled)  # fmt: skip


async def test_index_maintenance_runs_off_the_event_loop() -> None:
    # A rebuild of a large HNSW index takes seconds: on the loop it would stop
    # heartbeats and every batch (issue 21).
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class Slow:
        def maintain(self) -> bool:
            seen.append(threading.get_ident())
            time.sleep(0.6)
            return True

    holders = [SimpleNamespace(current=Slow(), bucket="control"), SimpleNamespace(current=None)]
    me = SimpleNamespace(rollout=SimpleNamespace(holders=holders))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await Worker.maintain_indexes(me)  # type: ignore[arg-type]
    ticker.cancel()
    assert seen and seen[0] != loop_thread
    assert ticks >= 5, "the loop kept running while the index was rebuilt"


def test_lag_in_seconds_is_the_age_of_the_oldest_unprocessed_record() -> None:
    from stream.app import BehindClock

    clock = BehindClock()
    assert clock.age("t", 0, high=10, now=100.0) is None  # nothing known yet
    clock.processed("t", 0, 9, ts=95.0)
    assert clock.age("t", 0, high=10, now=100.0) == 0.0  # caught up
    # idle, then 5 records arrive: they are younger than the last look at 100 s
    assert clock.age("t", 0, high=15, now=103.0) == 3.0
    clock.processed("t", 0, 12, ts=101.0)
    assert clock.age("t", 0, high=15, now=104.0) == 3.0  # 13 is younger than 12 (101 s)
    # a stalled worker: the age keeps growing, whatever the offsets
    assert clock.age("t", 0, high=15, now=160.0) == 59.0
    clock.processed("t", 0, 11, ts=100.5)  # a replay of an older offset changes nothing
    assert clock.age("t", 0, high=15, now=160.0) == 59.0
    clock.processed("t", 0, 14, ts=102.0)
    assert clock.age("t", 0, high=15, now=161.0) == 0.0
    # a backlog found at start: bounded by the last processed record's broker time
    clock.processed("t", 1, 0, ts=50.0)
    assert clock.age("t", 1, high=1000, now=161.0) == 111.0
