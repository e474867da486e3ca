"""Session-wide fixtures: one real Apache Kafka broker for the whole test run.

The broker is the project's own (``recstream.localkafka``: Maven jars, KRaft,
loopback, a fresh data directory per session) unless ``RECSTREAM_BOOTSTRAP``
points at one already running. Each test that asks for ``fresh_topics`` gets
topic names no other test uses, created on the broker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recstream.kafka_admin import ensure_topics
from recstream.localkafka import LocalKafka
from recstream.settings import LocalKafkaSettings, TopicNames, default_cache_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_topics(suffix_len: int = 8) -> TopicNames:
    """Every topic name with one random suffix: names no other test uses."""
    suffix = uuid.uuid4().hex[:suffix_len]
    return TopicNames(**{k: f"{v}-{suffix}" for k, v in TopicNames().model_dump().items()})


@dataclass(frozen=True)
class KafkaUnderTest:
    bootstrap: str
    broker: LocalKafka | None  # None when RECSTREAM_BOOTSTRAP names an outside broker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    external = os.environ.get("RECSTREAM_BOOTSTRAP")
    if external:
        yield KafkaUnderTest(external, None)
        return
    port, cport = free_port(), free_port()
    broker = LocalKafka(
        LocalKafkaSettings(port=port, controller_port=cport),
        home=tmp_path_factory.mktemp("kafka"),
        cache_dir=Path(os.environ.get("RECSTREAM_CACHE_DIR") or default_cache_dir()),
    )
    broker.start()
    try:
        yield KafkaUnderTest(broker.bootstrap, broker)
    finally:
        broker.stop()


@pytest.fixture
def fresh_topics(kafka: KafkaUnderTest) -> TopicNames:
    """Topic names unique to this test, already created (4 partitions each)."""
    names = unique_topics(10)
    asyncio.run(ensure_topics(kafka.bootstrap, names.model_dump().values(), partitions=4))
    return names
