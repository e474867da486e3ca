"""Fixtures for the reliability tests: a 3-node KRaft cluster and a SCRAM+TLS broker.

Both are real Apache Kafka from ``recstream.localkafka`` on loopback ports of
their own, separate from the session's single broker (``kafka`` in
tests/conftest.py), so a test that kills one of their nodes hurts no other test.
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from recstream.localkafka import LocalKafka, ScramTls
from recstream.settings import LocalKafkaSettings, Settings, TopicNames, default_cache_dir
from tests.conftest import free_port
from tests.integration.reliability.localcluster import LocalKafkaCluster
from tests.integration.reliability.localtls import make_tls_material

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent

# These tests kill brokers mid-request and offer wrong secrets on purpose. aiokafka closes
# the connections it abandons then (the bootstrap connection, a failed SASL handshake, a
# broker that died) without waiting for the close (aio-libs/aiokafka#715); a TLS close
# needs a round trip, so when the test's event loop (or asyncio.run) ends first, the
# socket is freed only by the garbage collector, in whichever test happens to run then,
# where "error" turns the ResourceWarning into a failure (seen twice, in two different
# tests). Here those two warnings are ignored, and the collector runs after each test so
# that such sockets are freed inside the test that abandoned them, not in a later one.
ABANDONED_SOCKET_WARNINGS = (
    "ignore:unclosed transport <_SelectorSocketTransport:ResourceWarning",
    "ignore:unclosed <socket.socket:ResourceWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            for spec in ABANDONED_SOCKET_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(autouse=True)
def collect_abandoned_sockets(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    caplog.clear()  # captured records can hold a connection (torn down after this fixture)
    gc.collect()


# The long variants (10 worker kills, the latency comparison at a sustainable rate)
# take minutes each: opt in with RECSTREAM_RELIABILITY_LONG=1.
long_variant = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("RECSTREAM_RELIABILITY_LONG"),
        reason="long variant: set RECSTREAM_RELIABILITY_LONG=1 to run it",
    ),
]


def cache_dir() -> Path:
    return Path(os.environ.get("RECSTREAM_CACHE_DIR") or default_cache_dir())


def own_broker(home: Path, **kw: Any) -> LocalKafka:
    """A single broker of the test's own (not started yet) on free ports under ``home``."""
    return LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), heap="384m"),
        home,
        cache_dir(),
        **kw,
    )


@pytest.fixture(scope="session")
def private_tmp() -> Iterator[Path]:
    """A directory outside pytest's numbered tmp dirs: on a machine where several
    pytest runs start at once, those are pruned by other runs (3 kept), which must
    not delete a broker's data while it runs."""
    path = Path(tempfile.mkdtemp(prefix="recstream-reliability-"))
    yield path
    if not os.environ.get("RECSTREAM_KEEP_TEST_TMP"):  # keep worker logs for a post-mortem
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")  # module: its JVMs stop before other areas' tests run
def kafka_cluster(private_tmp: Path) -> Iterator[LocalKafkaCluster]:
    """Three combined broker/controller nodes; RF 3 and min.insync.replicas 2 by default.

    A test that kills a node restarts it before it ends (``cluster.restart(i)``).
    """
    cluster = LocalKafkaCluster(
        LocalKafkaSettings(heap="384m", start_timeout_s=150.0),
        private_tmp / f"cluster-{uuid.uuid4().hex[:6]}",
        cache_dir(),
        ports=[(free_port(), free_port()) for _ in range(3)],
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class SecureKafka:
    broker: LocalKafka
    scram: ScramTls
    user: str  # an application user (not the brokers' own)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap


@pytest.fixture(scope="module")
def secure_kafka(private_tmp: Path) -> Iterator[SecureKafka]:
    """One broker whose only client listener is SASL_SSL with SCRAM-SHA-512."""
    home = private_tmp / f"secure-kafka-{uuid.uuid4().hex[:6]}"
    scram = ScramTls(
        tls=make_tls_material(home / "tls"),
        users={
            "broker": SecretStr(secrets.token_urlsafe(18)),
            "recstream-app": SecretStr(secrets.token_urlsafe(18)),
        },
    )
    broker = own_broker(home / "broker", scram_tls=scram)
    broker.start()
    try:
        yield SecureKafka(broker, scram, "recstream-app")
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def rel_bundle(private_tmp: Path) -> Path:
    """A real tiny bundle (ONNX encoders, FAISS index) for worker fault tests."""
    from inference.testing import build_tiny_bundle

    root = private_tmp / "bundles"
    build_tiny_bundle(root, n_items=200, dim=32, version="tiny-1")
    return root


@pytest.fixture
def rel_tmp(private_tmp: Path, request: pytest.FixtureRequest) -> Path:
    """A test's own directory under ``private_tmp`` (worker logs and state)."""
    path = private_tmp / f"{request.node.name[:60]}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def rel_settings(kafka: Any, fresh_topics: TopicNames, rel_tmp: Path) -> Settings:
    """Settings of one test: the session broker, topics of its own."""
    return Settings(bootstrap=kafka.bootstrap, topics=fresh_topics, state_dir=rel_tmp / "state")
