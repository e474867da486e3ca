"""Broker failures under a running worker: nothing accepted is lost.

- the single broker (data on disk) is killed with SIGKILL and restarted mid-stream;
- one node of the 3-node cluster is killed mid-stream, with the shipped topic
  settings (deploy/k8s: replication 3, min.insync.replicas 2) applied by the worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from recstream.kafka_admin import client_kwargs
from recstream.settings import Settings
from tests.conftest import unique_topics
from tests.integration.reliability.accounting import account
from tests.integration.reliability.conftest import own_broker
from tests.integration.reliability.localcluster import LocalKafkaCluster

pytest.importorskip("tools.process", reason="needs the stream worker (branch stream)")
from stream.settings import WorkerSettings
from stream.topics import worker_topics
from tests.integration.reliability.faults import (
    WorkerPool,
    accepted_after,
    assert_nothing_lost,
    drain,
    run_traffic,
    shipped_env,
    shipped_settings,
    state_differences,
    traffic_with_fault,
)

pytestmark = pytest.mark.integration

RATE = 500.0
AFTER_S = 10.0  # seconds of load after the killed broker is back


async def test_single_broker_kill9_and_restart_loses_nothing(
    rel_bundle: Path, rel_tmp: Path
) -> None:
    broker = own_broker(rel_tmp / "broker")
    await asyncio.to_thread(broker.start)  # it runs its own event loop to wait
    settings = Settings(
        bootstrap=broker.bootstrap, topics=unique_topics(), state_dir=rel_tmp / "state"
    )
    app_id = f"rel-bk-{uuid.uuid4().hex[:6]}"
    pool = WorkerPool(settings, rel_bundle, rel_tmp, app_id)
    outage: list[float] = []
    back_at: list[float] = []  # wall time the restarted broker was up
    stop = asyncio.Event()

    def crash_and_restart() -> None:
        t0 = time.monotonic()
        broker.kill()
        time.sleep(2.0)  # producers and the worker see a dead broker for a while
        broker.start()  # same data directory: the log and committed offsets survive
        outage.append(time.monotonic() - t0)
        back_at.append(time.time())

    async def fault_then_load() -> None:
        await asyncio.sleep(4.0)
        await asyncio.to_thread(crash_and_restart)
        await asyncio.sleep(AFTER_S)  # load keeps flowing after the fault, then stops
        stop.set()

    try:
        worker = pool.start()
        await asyncio.to_thread(worker.wait_ready, 180)
        traffic, _ = await asyncio.gather(
            run_traffic(settings, rate=RATE, seconds=600, stop=stop), fault_then_load()
        )
        recs, dlq = await drain(settings, traffic)
        assert not pool.crashed(), pool.crashed()
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        after = accepted_after(traffic, back_at[0])
        assert_nothing_lost(
            report, traffic, f"broker kill -9 ({outage[0]:.1f} s outage, {after} accepted after)"
        )
        assert traffic.refused == 0, "the producer rode out the outage (retries, idempotence)"
        # The generator stalled once (2,473 of ~6,000 planned, all before the fault): the
        # load must keep flowing once the broker is back, at half the rate at least.
        assert after >= RATE * AFTER_S / 2, f"{after} events accepted after the restart"
        wrong = await state_differences(settings, app_id)
        assert not wrong, f"{len(wrong)} users' sequences differ (changelog, input): {wrong}"
    finally:
        pool.stop_all()
        await asyncio.to_thread(broker.stop)


async def test_cluster_node_kill9_under_worker_loses_nothing(
    kafka_cluster: LocalKafkaCluster, rel_bundle: Path, rel_tmp: Path
) -> None:
    """The shipped configuration (deploy/k8s/configmap.yaml: topic policy, partitions, store)
    on 3 brokers: the worker creates every topic itself, as deployed, and rides out a node loss."""
    settings = shipped_settings(kafka_cluster.bootstrap, unique_topics(), rel_tmp / "state")
    app_id = f"rel-cl-{uuid.uuid4().hex[:6]}"
    pool = WorkerPool(settings, rel_bundle, rel_tmp, app_id)
    killed: list[int] = []

    def kill_a_node() -> None:
        victim = 1  # not the first bootstrap address, so clients must fail over
        kafka_cluster.kill(victim)
        killed.append(victim)

    try:
        worker = pool.start(shipped_env())  # no topic exists yet: the worker makes them all
        await asyncio.to_thread(worker.wait_ready, 180)
        ws = WorkerSettings.model_validate(
            {k.removeprefix("RECSTREAM_WORKER_").lower(): v for k, v in shipped_env().items()
             if k.startswith("RECSTREAM_WORKER_")} | {"app_id": app_id}
        )  # fmt: skip
        specs = worker_topics(settings, ws)
        assert {s.replication_factor for s in specs} == {3}
        assert {s.configs["min.insync.replicas"] for s in specs} == {"2"}
        described = await describe_topics(settings.bootstrap, [s.name for s in specs])
        for spec in specs:
            assert described[spec.name] == (
                spec.partitions,
                3,
                spec.configs["cleanup.policy"],
                "2",
            ), spec.name
        traffic = await traffic_with_fault(
            settings, rate=500, seconds=12, faults=[(4.0, kill_a_node)]
        )
        assert killed and kafka_cluster.pids()[killed[0]] is None
        recs, dlq = await drain(settings, traffic)
        assert not pool.crashed(), pool.crashed()
        assert worker.proc.poll() is None, "the worker kept running through the node loss"
        report = account(traffic.events, recs, bad_sent=traffic.bad, dlq=dlq)
        assert_nothing_lost(report, traffic, "cluster node kill -9 (shipped topic settings)")
        assert traffic.refused == 0
        wrong = await state_differences(settings, app_id)
        assert not wrong, f"{len(wrong)} users' sequences differ (changelog, input): {wrong}"
    finally:
        pool.stop_all()
        for i in killed:
            await asyncio.to_thread(kafka_cluster.restart, i)


async def describe_topics(bootstrap: str, names: list[str]) -> dict[str, tuple[int, int, str, str]]:
    """topic -> (partitions, smallest replica count, cleanup.policy, min.insync.replicas)."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        out: dict[str, tuple[int, int, str, str]] = {}
        meta = {t["topic"]: t["partitions"] for t in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        for response in await admin.describe_configs(resources):
            for res in response.to_object()["resources"]:
                conf = {e["config_names"]: e["config_value"] for e in res["config_entries"]}
                parts = meta[res["resource_name"]]
                out[res["resource_name"]] = (
                    len(parts), min(len(p["replicas"]) for p in parts),
                    conf["cleanup.policy"], conf["min.insync.replicas"],
                )  # fmt: skip
        return out
    finally:
        await admin.close()
