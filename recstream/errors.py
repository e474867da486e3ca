"""One exception root for recstream.

    RecstreamError
    ├── ConfigError          a setting or the environment is wrong (Java missing, bad path)
    ├── SchemaError          a message does not match its topic's schema (names the field)
    ├── KafkaError           the broker could not be started, reached or stopped
    ├── BundleError          a model bundle is missing, incomplete or fails its hash check
    └── DataError            a dataset could not be fetched or parsed

Each package may subclass these in its own ``exceptions``/``errors`` module;
messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class RecstreamError(Exception):
    """Root of every error recstream raises on purpose."""


class ConfigError(RecstreamError):
    """A setting or the machine's environment is not usable."""


class SchemaError(RecstreamError):
    """A message does not match its topic's schema.

    ``reason`` is a short, stable code used as a metric label and in DLQ records
    (``too_large``, ``invalid_utf8``, ``invalid_json``, ``schema``, ``empty``,
    ``key_mismatch``); ``field`` names
    the offending field (dotted path) when there is one.
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class KafkaError(RecstreamError):
    """The Kafka broker could not be started, reached or stopped."""


class BundleError(RecstreamError):
    """A model bundle is missing, incomplete, or failed verification."""


class DataError(RecstreamError):
    """A dataset could not be fetched or parsed."""
