"""A 3-node KRaft cluster loses a partition leader (kill -9) mid-stream: nothing acked is lost."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from recstream.kafka_admin import client_kwargs, ensure_topics
from tests.integration.reliability.kafkaio import producer, read_topic
from tests.integration.reliability.localcluster import LocalKafkaCluster

pytestmark = pytest.mark.integration


async def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in desc["partitions"]}
    finally:
        await admin.close()


async def produce_while(cluster: LocalKafkaCluster, topic: str, n: int, rate: float) -> list[bytes]:
    """Send ``n`` records at ``rate``/s; kill -9 partition 0's leader a third of the way in."""
    p = producer(cluster.bootstrap)
    await p.start()
    acked: list[bytes] = []
    victim = (await leaders(cluster.bootstrap, topic))[0] - 1  # node ids are 1-based
    try:
        pending = []
        t0 = time.monotonic()
        for i in range(n):
            if i == n // 3:
                await asyncio.to_thread(cluster.kill, victim)
            value = f"{i}".encode()
            pending.append((value, await p.send(topic, key=f"k{i % 50}".encode(), value=value)))
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        for value, fut in pending:
            await fut  # raises if the record was not acknowledged
            acked.append(value)
    finally:
        await p.stop()
    return acked


def test_cluster_survives_leader_kill_without_losing_acked_records(
    kafka_cluster: LocalKafkaCluster,
) -> None:
    topic = f"rel-cluster-{uuid.uuid4().hex[:8]}"
    asyncio.run(
        ensure_topics(
            kafka_cluster.bootstrap, [topic], partitions=4, replication=3,
            config={"min.insync.replicas": "2"},
        )
    )  # fmt: skip
    victim_pid_before = kafka_cluster.pids()
    try:
        acked = asyncio.run(produce_while(kafka_cluster, topic, n=6000, rate=1000.0))
        assert None in kafka_cluster.pids(), "a node should have been killed"
        assert len(acked) == 6000
        got = asyncio.run(read_topic(kafka_cluster.bootstrap, topic, timeout_s=60))
        values = [r.value for r in got]
        assert sorted(values) == sorted(acked), "every acked record, each exactly once"
        after = asyncio.run(leaders(kafka_cluster.bootstrap, topic))
        dead = kafka_cluster.pids().index(None) + 1
        assert dead not in after.values(), "leadership moved off the dead node"
    finally:
        killed = [i for i, pid in enumerate(kafka_cluster.pids()) if pid is None]
        for i in killed:
            kafka_cluster.restart(i)
    assert all(kafka_cluster.pids()), f"every node back (was {victim_pid_before})"
