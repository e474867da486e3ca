"""The worker's consumer uses the configured fetch wait, not faust's hard-coded 1500 ms."""

from __future__ import annotations

from pathlib import Path

import pytest

from recstream.settings import Settings
from stream.settings import WorkerSettings


@pytest.mark.parametrize("wait_ms", [5, 250])
async def test_worker_consumer_fetch_wait_follows_settings(tmp_path: Path, wait_ms: int) -> None:
    from stream.app import create_app

    settings = Settings(bootstrap="127.0.0.1:1", state_dir=tmp_path)
    ws = WorkerSettings(store="memory://", app_id="unit", fetch_max_wait_ms=wait_ms)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    thread = app.consumer._thread  # type: ignore[attr-defined]
    # The real aiokafka consumer faust would start (constructing it connects nowhere).
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # created for the consumer thread, never started


def test_fetch_wait_default_is_short() -> None:
    assert WorkerSettings().fetch_max_wait_ms <= 10
