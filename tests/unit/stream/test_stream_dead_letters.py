"""A dead letter always fits the producer's request limit, whatever the limits allow.

Measured at the largest settings (``max_message_bytes`` and
``dlq_oversize_head_bytes`` at their maxima) with the bytes that inflate most
once in JSON: NULs and control characters (6 bytes each as ``\\u0000``), quotes
and backslashes (2), invalid UTF-8, plus the longest key and error.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from recstream.schemas import (
    DLQ_MAX_KEY_BYTES,
    DLQRecord,
    dlq_value_bound,
    encode,
)
from recstream.settings import InputLimits, Settings
from stream.messages import InMessage
from stream.processing import dlq_key, dlq_record

LARGEST = InputLimits(
    max_message_bytes=InputLimits.model_fields["max_message_bytes"].metadata[1].le,
    dlq_oversize_head_bytes=InputLimits.model_fields["dlq_oversize_head_bytes"].metadata[1].le,
).schema_limits()


def nasty(size: int) -> dict[str, bytes]:
    return {
        "nul": b"\x00" * size,
        "controls": bytes(range(32)) * (size // 32),
        "quotes": b'"\\' * (size // 2),
        "invalid_utf8": b"\xff\xfe" * (size // 2),
        "mixed": ('é\x01"' * size).encode()[:size],
    }


@pytest.fixture(scope="module")
def producer_limit(tmp_path_factory: pytest.TempPathFactory) -> int:
    from stream.app import create_app

    app = create_app(Settings(state_dir=tmp_path_factory.mktemp("s")), loader=lambda p: None)  # type: ignore[arg-type,return-value]
    return int(app.conf.producer_max_request_size)


@pytest.mark.parametrize("over", [False, True], ids=["within_limit", "oversized"])
def test_dead_letters_fit_below_the_producer_limit_at_the_largest_settings(
    over: bool, producer_limit: int
) -> None:
    size = LARGEST.max_message_bytes * (2 if over else 1)
    bound = dlq_value_bound(LARGEST)
    # Record overhead (headers, batch framing) is well under a kilobyte.
    assert bound + DLQ_MAX_KEY_BYTES + 1024 < producer_limit
    for name, value in nasty(size).items():
        msg = InMessage("user-events", 3, 12345678, b"k" * 10_000, value)
        record = dlq_record(msg, "too_large" if over else "schema", "\x00" * 50_000, LARGEST)
        encoded = encode(record)
        assert len(encoded) <= bound, (name, len(encoded), bound)
        assert len(dlq_key(msg.key) or b"") == DLQ_MAX_KEY_BYTES
        back = DLQRecord.model_validate_json(encoded)
        kept = base64.b64decode(back.raw) if back.raw_encoding == "base64" else back.raw.encode()
        # What is kept is the original's head, whole when the value was within the limit.
        assert value.startswith(kept), name
        assert back.raw_truncated == over and back.raw_size == size
        if not over:
            assert kept == value, f"{name}: a value within the limit is kept whole"


def test_plain_text_stays_text() -> None:
    msg = InMessage("user-events", 0, 1, b"u1", b'{"user_id": "u1", "ts": "soon"}')
    record = dlq_record(msg, "schema", "ts: not a number", LARGEST)
    assert record.raw_encoding == "text" and record.raw == msg.value.decode()  # type: ignore[union-attr]


def test_small_limit_default_bound(tmp_path: Path) -> None:
    # The defaults' bound, for the record: 64 KiB values -> dead letters of at most ~93 KiB.
    assert dlq_value_bound(InputLimits().schema_limits()) < 100 * 1024
