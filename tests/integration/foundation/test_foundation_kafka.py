"""The real broker: round trips, an independent client, a real Faust worker."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from recstream.settings import TopicNames

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
REPO = HERE.parents[2]


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    got: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in pairs:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def test_produce_consume_round_trip_keeps_per_key_order(kafka, fresh_topics: TopicNames) -> None:
    topic = fresh_topics.user_events
    pairs = [(f"user-{i % 7}".encode(), f"{i}".encode()) for i in range(500)]
    asyncio.run(produce(kafka.bootstrap, topic, pairs))
    got = asyncio.run(consume(kafka.bootstrap, topic, len(pairs)))

    assert sorted((r.key, r.value) for r in got) == sorted(pairs)
    for key in {k for k, _ in pairs}:  # one key = one partition = order kept
        sent = [v for k, v in pairs if k == key]
        assert [r.value for r in got if r.key == key] == sent
    assert len({r.partition for r in got}) > 1, "keys should spread over partitions"


def test_faust_agent_forwards_through_real_broker(
    kafka, fresh_topics: TopicNames, tmp_path: Path
) -> None:
    from tests.conftest import free_port

    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{REPO}",
        "FWD_APP_ID": f"fwd-{uuid.uuid4().hex[:8]}",
        "FWD_BOOTSTRAP": kafka.bootstrap,
        "FWD_WEB_PORT": str(free_port()),
        "FWD_DATADIR": str(tmp_path / "faust"),
        "FWD_IN": fresh_topics.user_events,
        "FWD_OUT": fresh_topics.recommendations,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "forward_app", "worker", "-l", "warn"],
        env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        pairs = [(f"u{i % 5}".encode(), f"event-{i}".encode()) for i in range(200)]
        asyncio.run(produce(kafka.bootstrap, fresh_topics.user_events, pairs))
        got = asyncio.run(consume(kafka.bootstrap, fresh_topics.recommendations, 200, 90))
        assert worker.poll() is None, "the faust worker died"
        assert sorted((r.key, r.value) for r in got) == sorted((k, b"fwd:" + v) for k, v in pairs)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            out, _ = worker.communicate()
        if worker.returncode not in (0, -signal.SIGTERM):
            print(out.decode(errors="replace")[-3000:])


def test_cli_start_is_visible_to_kcat_and_stop_leaves_no_process(tmp_path: Path) -> None:
    from tests.conftest import free_port

    kcat = shutil.which("kcat")
    assert kcat, "kcat is needed for this test: apt-get install kcat (.ci/run installs it)"
    port = free_port()
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path),
        "RECSTREAM_LOCAL_KAFKA__PORT": str(port),
        "RECSTREAM_LOCAL_KAFKA__CONTROLLER_PORT": str(free_port()),
        "PYTHONPATH": str(REPO),
    }
    cli = [sys.executable, "-m", "recstream", "kafka"]
    start = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr
    props = tmp_path / "recstream" / "kafka" / str(port) / "server.properties"
    try:
        listing = subprocess.run(
            [kcat, "-L", "-b", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30
        )
        assert f"127.0.0.1:{port}" in listing.stdout and "1 brokers" in listing.stdout
        again = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True)
        assert again.returncode == 0 and "already running" in again.stderr
        status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0 and "1 broker" in status.stderr
    finally:
        stop = subprocess.run([*cli, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stderr
    left = subprocess.run(["pgrep", "-f", str(props)], capture_output=True, text=True)
    assert left.stdout == "", f"broker process left behind: {left.stdout}"
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 1
