"""The worker's Kafka records: what the agent consumed and what it will produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InMessage:
    """A consumed Kafka record, as the agent saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    context: Any = field(default=None, compare=False, repr=False)  # the framework's event


@dataclass(frozen=True)
class OutMessage:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a table key deleted)
    partition: int | None = None  # None: the producer's partitioner (by key)
