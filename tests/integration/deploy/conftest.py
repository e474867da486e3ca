"""Fixtures for deploy/ integration tests: a real Prometheus per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.integration.deploy.promserver import PromServer, PromServerConfig

StartProm = Callable[..., PromServer]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartProm]:
    """Start Prometheus scraping ``targets``; every server started is stopped afterwards."""
    started: list[PromServer] = []

    def start(targets: Sequence[str], config: PromServerConfig | None = None) -> PromServer:
        server = PromServer.start(targets, tmp_path / f"prometheus-{len(started)}", config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
