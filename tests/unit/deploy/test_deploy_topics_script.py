"""deploy/k8s/create-topics.sh against a kafka-topics double that keeps state in files.

The double answers like the real tool (`--create --if-not-exists`, `--describe`
printing `PartitionCount:`); the compose `topics` service and the Kubernetes
Job run the same script with the real kafka-topics.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.deploy.promql_names import DEPLOY

SCRIPT = DEPLOY / "k8s" / "create-topics.sh"
FAKE = r"""#!/bin/sh
# kafka-topics double: topics are files under $FAKE_STATE holding their partition count.
echo "$*" >> "$FAKE_STATE/calls"
op=""; topic=""; parts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --create|--describe) op="$1" ;;
    --topic) topic="$2"; shift ;;
    --partitions) parts="$2"; shift ;;
    --command-config) cp "$2" "$FAKE_STATE/client.properties"; shift ;;
    --bootstrap-server) echo "$2" > "$FAKE_STATE/bootstrap"; shift ;;
  esac
  shift
done
case "$op" in
  --create) [ -f "$FAKE_STATE/$topic" ] || echo "$parts" > "$FAKE_STATE/$topic" ;;
  --describe)
    [ -f "$FAKE_STATE/$topic" ] || { echo "Topic '$topic' does not exist" >&2; exit 1; }
    printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 1\tConfigs: \n' \
      "$topic" "$(cat "$FAKE_STATE/$topic")"
    printf '\tTopic: %s\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n' "$topic" ;;
esac
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    (tmp_path / "state").mkdir()
    return tmp_path / "state"


def run(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("sh") or "/bin/sh"
    base = {
        "PATH": os.environ["PATH"],
        "FAKE_STATE": str(state),
        "KAFKA_TOPICS": str(state.parent / "kafka-topics.sh"),
    }
    return subprocess.run(
        [sh, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def partitions(state: Path) -> dict[str, int]:
    return {
        p.name: int(p.read_text())
        for p in state.iterdir()
        if p.name not in {"calls", "client.properties", "bootstrap"}
    }


def test_creates_every_topic_with_its_partition_count(state: Path) -> None:
    result = run(state, PARTITIONS="12", DLQ_PARTITIONS="2", KAFKA_BOOTSTRAP="k:9092")
    assert result.returncode == 0, result.stderr
    assert partitions(state) == {
        "user-events": 12,
        "search-text": 12,
        "recommendations": 12,
        "item-updates": 1,
        "item-feedback": 12,
        "recstream-dlq": 2,
    }
    assert (state / "bootstrap").read_text().strip() == "k:9092"
    assert "create-topics: done" in result.stdout
    assert not (state / "client.properties").exists()  # PLAINTEXT: no client config


def test_defaults_follow_the_worker_settings(state: Path) -> None:
    result = run(
        state,
        RECSTREAM_WORKER_PARTITIONS="6",
        RECSTREAM_BOOTSTRAP="b:9093",
        RECSTREAM_TOPICS__USER_EVENTS="clicks",
        RECSTREAM_TOPICS__DLQ="dead",
    )
    assert result.returncode == 0, result.stderr
    assert partitions(state) == {
        "clicks": 6,
        "search-text": 6,
        "recommendations": 6,
        "item-updates": 1,
        "item-feedback": 6,
        "dead": 1,
    }
    assert (state / "bootstrap").read_text().strip() == "b:9093"


def test_is_idempotent(state: Path) -> None:
    assert run(state, PARTITIONS="4").returncode == 0
    again = run(state, PARTITIONS="4")
    assert again.returncode == 0, again.stderr
    assert set(partitions(state).values()) == {4, 1}


def test_refuses_to_change_an_existing_partition_count(state: Path) -> None:
    assert run(state, PARTITIONS="4").returncode == 0
    result = run(state, PARTITIONS="8")
    assert result.returncode == 1
    assert "user-events has 4 partitions, 8 were asked" in result.stderr
    assert partitions(state)["user-events"] == 4


@pytest.mark.parametrize(
    ("mechanism", "module"),
    [
        ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
        ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
    ],
)
def test_sasl_settings_become_a_client_config(state: Path, mechanism: str, module: str) -> None:
    result = run(
        state,
        RECSTREAM_SECURITY__PROTOCOL="SASL_SSL",
        RECSTREAM_SECURITY__SASL_MECHANISM=mechanism,
        RECSTREAM_SECURITY__USERNAME="recstream",
        RECSTREAM_SECURITY__PASSWORD="s3cret",
        RECSTREAM_SECURITY__SSL_CAFILE="/etc/ca.crt",
    )
    assert result.returncode == 0, result.stderr
    props = (state / "client.properties").read_text().splitlines()
    assert "security.protocol=SASL_SSL" in props
    assert f"sasl.mechanism={mechanism}" in props
    jaas = f'sasl.jaas.config={module} required username="recstream" password="s3cret";'
    assert jaas in props
    assert "ssl.truststore.location=/etc/ca.crt" in props
    assert "s3cret" not in result.stdout + result.stderr  # never echoed


def test_sasl_without_password_fails_clearly(state: Path) -> None:
    result = run(
        state,
        RECSTREAM_SECURITY__PROTOCOL="SASL_PLAINTEXT",
        RECSTREAM_SECURITY__SASL_MECHANISM="PLAIN",
        RECSTREAM_SECURITY__USERNAME="recstream",
    )
    assert result.returncode != 0
    assert "RECSTREAM_SECURITY__PASSWORD" in result.stderr
    assert partitions(state) == {}
