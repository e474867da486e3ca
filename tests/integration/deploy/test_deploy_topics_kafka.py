"""deploy/k8s/create-topics.sh against the real broker and the real kafka-topics tool.

The compose service and the Kubernetes Job run this script in the apache/kafka
image; here the same tool (org.apache.kafka.tools.TopicCommand) runs from the
broker's Maven jars, against the session's Apache Kafka.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from recstream.localkafka import java_executable, resolve_jars
from recstream.settings import LocalKafkaSettings, default_cache_dir
from tests.unit.deploy.promql_names import DEPLOY

pytestmark = pytest.mark.integration
SCRIPT = DEPLOY / "k8s" / "create-topics.sh"


@pytest.fixture(scope="module")
def kafka_topics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("RECSTREAM_CACHE_DIR") or default_cache_dir())
    lib = resolve_jars(LocalKafkaSettings().version, cache)
    wrapper = tmp_path_factory.mktemp("bin") / "kafka-topics.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec "{java_executable()}" -Xmx256m -cp "{lib}/*" '
        'org.apache.kafka.tools.TopicCommand "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def run(kafka_topics: Path, bootstrap: str, suffix: str, partitions: int):
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_TOPICS": str(kafka_topics),
        "KAFKA_BOOTSTRAP": bootstrap,
        "PARTITIONS": str(partitions),
        "DLQ_PARTITIONS": "2",
        **{
            f"RECSTREAM_TOPICS__{key}": f"{name}-{suffix}"
            for key, name in (
                ("USER_EVENTS", "user-events"),
                ("SEARCH_TEXT", "search-text"),
                ("ITEM_UPDATES", "item-updates"),
                ("ITEM_FEEDBACK", "item-feedback"),
                ("RECOMMENDATIONS", "recommendations"),
                ("DLQ", "recstream-dlq"),
            )
        },
    }
    return subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_creates_topics_on_a_real_broker_and_guards_partitions(
    kafka, kafka_topics: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    first = run(kafka_topics, kafka.bootstrap, suffix, partitions=3)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"user-events-{suffix} ok (3 partitions" in first.stdout
    assert f"recstream-dlq-{suffix} ok (2 partitions" in first.stdout
    assert f"item-updates-{suffix} ok (1 partitions" in first.stdout
    assert f"item-feedback-{suffix} ok (3 partitions" in first.stdout

    described = subprocess.run(
        [str(kafka_topics), "--bootstrap-server", kafka.bootstrap, "--describe", "--topic",
         f"search-text-{suffix}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "PartitionCount: 3" in described.stdout, described.stdout + described.stderr

    # --create --if-not-exists passes on the existing topic; the count check fails.
    changed = run(kafka_topics, kafka.bootstrap, suffix, partitions=6)
    assert changed.returncode == 1
    assert f"user-events-{suffix} has 3 partitions, 6 were asked" in changed.stderr
