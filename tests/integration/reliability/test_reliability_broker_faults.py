"""Broker failures under a running worker: nothing accepted is lost.

- the single broker (data on disk) is killed with SIGKILL and restarted mid-stream;
- one node of the 3-node cluster (RF 3, min.insync.replicas 2) is killed mid-stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from recstream.kafka_admin import ensure_topics
from recstream.localkafka import LocalKafka
from recstream.settings import LocalKafkaSettings, Settings, TopicNames
from tests.conftest import free_port
from tests.integration.reliability.accounting import account
from tests.integration.reliability.conftest import cache_dir
from tests.integration.reliability.localcluster import LocalKafkaCluster

pytest.importorskip("tools.process", reason="needs the stream worker (branch stream)")
from tests.integration.reliability.faults import (
    WorkerPool,
    assert_nothing_lost,
    drain,
    traffic_with_fault,
)

pytestmark = pytest.mark.integration
TABLES = ("user_sequence", "user_interest", "trending")


def topics() -> TopicNames:
    suffix = uuid.uuid4().hex[:8]
    return TopicNames(**{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()})


async def test_single_broker_kill9_and_restart_loses_nothing(
    rel_bundle: Path, rel_tmp: Path
) -> None:
    broker = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), heap="384m"),
        rel_tmp / "broker", cache_dir(),
    )  # fmt: skip
    await asyncio.to_thread(broker.start)  # it runs its own event loop to wait
    settings = Settings(bootstrap=broker.bootstrap, topics=topics(), state_dir=rel_tmp / "state")
    await ensure_topics(broker.bootstrap, settings.topics.model_dump().values(), partitions=4)
    pool = WorkerPool(settings, rel_bundle, rel_tmp, f"rel-bk-{uuid.uuid4().hex[:6]}")
    outage: list[float] = []

    def crash_and_restart() -> None:
        t0 = time.monotonic()
        broker.kill()
        time.sleep(2.0)  # producers and the worker see a dead broker for a while
        broker.start()  # same data directory: the log and committed offsets survive
        outage.append(time.monotonic() - t0)

    try:
        worker = pool.start()
        await asyncio.to_thread(worker.wait_ready, 180)
        traffic = await traffic_with_fault(
            settings, rate=500, seconds=12, faults=[(4.0, crash_and_restart)]
        )
        recs, dlq = await drain(settings, traffic)
        assert not pool.crashed(), pool.crashed()
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        assert_nothing_lost(report, traffic, f"broker kill -9 ({outage[0]:.1f} s outage)")
        assert traffic.refused == 0, "the producer rode out the outage (retries, idempotence)"
    finally:
        pool.stop_all()
        await asyncio.to_thread(broker.stop)


async def test_cluster_node_kill9_under_worker_loses_nothing(
    kafka_cluster: LocalKafkaCluster, rel_bundle: Path, rel_tmp: Path
) -> None:
    settings = Settings(
        bootstrap=kafka_cluster.bootstrap, topics=topics(), state_dir=rel_tmp / "state"
    )
    app_id = f"rel-cl-{uuid.uuid4().hex[:6]}"
    rf3 = {"min.insync.replicas": "2"}
    await ensure_topics(settings.bootstrap, settings.topics.model_dump().values(),
                        partitions=4, replication=3, config=rf3)  # fmt: skip
    # Changelogs replicated like the inputs (the worker would create them with RF 1).
    changelogs = [f"{app_id}-{t}-changelog" for t in TABLES]
    await ensure_topics(settings.bootstrap, changelogs, partitions=4, replication=3,
                        config={**rf3, "cleanup.policy": "compact"})  # fmt: skip
    pool = WorkerPool(settings, rel_bundle, rel_tmp, app_id)
    killed: list[int] = []

    def kill_a_node() -> None:
        victim = 1  # not the first bootstrap address, so clients must fail over
        kafka_cluster.kill(victim)
        killed.append(victim)

    try:
        worker = pool.start({"TOPIC_REPLICATION_FACTOR": "3"})
        await asyncio.to_thread(worker.wait_ready, 180)
        traffic = await traffic_with_fault(
            settings, rate=500, seconds=12, faults=[(4.0, kill_a_node)]
        )
        assert killed and kafka_cluster.pids()[killed[0]] is None
        recs, dlq = await drain(settings, traffic)
        assert not pool.crashed(), pool.crashed()
        assert worker.proc.poll() is None, "the worker kept running through the node loss"
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        assert_nothing_lost(report, traffic, "cluster node kill -9")
        assert traffic.refused == 0
    finally:
        pool.stop_all()
        for i in killed:
            await asyncio.to_thread(kafka_cluster.restart, i)
