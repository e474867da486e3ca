"""``recstream topics`` (what the compose service and the Kubernetes Job run) on a real broker.

Checked with Kafka's own ``kafka-topics --describe`` (org.apache.kafka.tools.TopicCommand
from the broker's jars), not with the client that made the changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from recstream.localkafka import java_executable, resolve_jars
from recstream.settings import LocalKafkaSettings, default_cache_dir
from tools.process import python_cli

pytestmark = pytest.mark.integration


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


def topics_cli(bootstrap: str, suffix: str, *args: str, **env: str):
    names = {
        f"RECSTREAM_TOPICS__{key}": f"{name}-{suffix}"
        for key, name in (
            ("USER_EVENTS", "user-events"), ("SEARCH_TEXT", "search-text"),
            ("ITEM_UPDATES", "item-updates"), ("ITEM_FEEDBACK", "item-feedback"),
            ("RECOMMENDATIONS", "recommendations"), ("DLQ", "recstream-dlq"),
        )
    }  # fmt: skip
    full = {
        **os.environ, **names, "RECSTREAM_BOOTSTRAP": bootstrap,
        "RECSTREAM_WORKER_APP_ID": f"app-{suffix}", **env,
    }  # fmt: skip
    return subprocess.run(
        python_cli("topics", *args), env=full, capture_output=True, text=True, timeout=180
    )


def describe(kafka_topics: Path, bootstrap: str, pattern: str) -> dict[str, tuple[int, dict]]:
    """topic -> (partition count, topic-level configs), as kafka-topics prints them."""
    out = subprocess.run(
        [str(kafka_topics), "--bootstrap-server", bootstrap, "--describe", "--topic", pattern],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    found = {}
    for line in out.stdout.splitlines():
        head = re.match(r"Topic: (\S+)\s.*PartitionCount: (\d+).*Configs: ?(\S*)", line)
        if head:
            configs = dict(kv.split("=", 1) for kv in head.group(3).split(",") if kv)
            found[head.group(1)] = (int(head.group(2)), configs)
    return found


def test_recstream_topics_creates_aligns_and_guards_every_topic(kafka, kafka_topics: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    # An item-updates made by hand, as before this command existed: not compacted,
    # with an operator's retention override that must survive the alignment.
    item_updates = f"item-updates-{suffix}"
    subprocess.run(
        [str(kafka_topics), "--bootstrap-server", kafka.bootstrap, "--create", "--topic",
         item_updates, "--partitions", "2", "--config", "retention.ms=600000"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    check = topics_cli(kafka.bootstrap, suffix, "--check", RECSTREAM_WORKER_PARTITIONS="3")
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"{item_updates}: alter cleanup.policy delete -> compact" in check.stdout

    first = topics_cli(kafka.bootstrap, suffix, RECSTREAM_WORKER_PARTITIONS="3")
    assert first.returncode == 0, first.stdout + first.stderr
    expect = {
        f"user-events-{suffix}": (3, "delete"),
        f"search-text-{suffix}": (3, "delete"),
        f"recommendations-{suffix}": (3, "delete"),
        f"item-feedback-{suffix}": (3, "delete"),
        f"recstream-dlq-{suffix}": (1, "delete"),
        item_updates: (2, "compact"),  # any count serves the catalog: left as it was
        **{f"app-{suffix}-{t}-changelog": (3, "compact")
           for t in ("user_sequence", "user_interest", "trending", "item_learned")},
        f"app-{suffix}-__assignor-__leader": (1, "delete"),
    }  # fmt: skip
    described = describe(kafka_topics, kafka.bootstrap, f".*{suffix}.*")
    assert set(described) == set(expect)
    for topic, (count, cleanup) in expect.items():
        got_count, configs = described[topic]
        assert (got_count, configs.get("cleanup.policy")) == (count, cleanup), (topic, configs)
        assert configs.get("min.insync.replicas", "1") == "1"
    assert described[item_updates][1]["retention.ms"] == "600000", "an operator's override stays"

    again = topics_cli(kafka.bootstrap, suffix, "--check", RECSTREAM_WORKER_PARTITIONS="3")
    assert again.returncode == 0 and "alter" not in again.stdout, again.stdout

    # Users' state is keyed on the inputs' partitions: a new count is refused, not applied;
    # so is a replication factor this cluster (one broker) cannot give. Nothing changes.
    changed = topics_cli(kafka.bootstrap, suffix, RECSTREAM_WORKER_PARTITIONS="6",
                         RECSTREAM_TOPIC_POLICY__REPLICATION_FACTOR="3")  # fmt: skip
    assert changed.returncode == 1
    assert f"topic user-events-{suffix} has 3 partitions, 6 are asked" in changed.stderr
    assert "replication factor 1, 3 is asked" in changed.stderr
    assert describe(kafka_topics, kafka.bootstrap, f".*{suffix}.*") == described
