"""``recstream worker`` stops within its bound on SIGTERM even when the broker is gone,
and what it logs meanwhile is one record per event (a traceback included).

Before: with the broker killed, a worker given SIGTERM was still running 30 s later
(aiokafka's fetcher retrying inside Faust's consumer-thread shutdown), and Faust's
stderr redirect logged the thread's traceback one token per line ("^", ":").
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from recstream.settings import Settings
from stream.settings import WorkerSettings
from tests.conftest import unique_topics
from tests.integration.reliability.conftest import own_broker
from tests.integration.reliability.faults import WorkerPool

pytestmark = pytest.mark.integration
BOUND_S = WorkerSettings().stop_timeout_s
RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[\d+\] \[[A-Z]+\] (.*)$")


async def test_worker_stops_within_its_bound_with_the_broker_gone(
    rel_bundle: Path, rel_tmp: Path
) -> None:
    broker = own_broker(rel_tmp / "broker")
    await asyncio.to_thread(broker.start)
    names = unique_topics()
    settings = Settings(bootstrap=broker.bootstrap, topics=names, state_dir=rel_tmp / "state")
    pool = WorkerPool(settings, rel_bundle, rel_tmp, f"rel-stop-{uuid.uuid4().hex[:8]}")
    try:
        worker = pool.start()
        await asyncio.to_thread(worker.wait_ready, 180)
        await asyncio.to_thread(broker.kill)
        await asyncio.sleep(5.0)  # the worker notices: fetches, heartbeats, commits fail
        t0 = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(worker.proc.wait, BOUND_S + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {BOUND_S + 10:.0f} s after SIGTERM:\n{worker.tail_log()}")
        took = time.monotonic() - t0
        print(f"\nstopped {took:.1f} s after SIGTERM with the broker gone (exit {code})")
        assert took < BOUND_S + 5
        assert code in (0, 128 + signal.SIGTERM)
        log = worker.log_file.read_text(errors="replace").splitlines()
        tiny = [line for line in log if (m := RECORD.match(line)) and len(m.group(1).strip()) <= 3]
        assert not tiny, f"{len(tiny)} records of at most 3 characters, e.g. {tiny[:5]}"
        # Every traceback belongs to a record: the line before it is a record or part of one.
        for i, line in enumerate(log):
            if line.startswith("Traceback (most recent call last)"):
                header = next(x for x in reversed(log[:i]) if RECORD.match(x))
                assert "uncaught exception" in header or "Error" in header, header
    finally:
        pool.stop_all()
        await asyncio.to_thread(broker.stop)
