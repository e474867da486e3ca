"""Fixtures for the stream integration tests: real broker, real worker processes, real bundles."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recstream.schemas import DLQRecord, Recommendation
from recstream.settings import Settings, TopicNames
from tools.process import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundles root holding one real tiny bundle (ONNX encoders, FAISS index)."""
    from inference.testing import build_tiny_bundle

    root = tmp_path_factory.mktemp("bundles")
    build_tiny_bundle(root, n_items=200, dim=32, version="tiny-1")
    return root


@dataclass
class Workers:
    settings: Settings
    tmp: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(
        self, bundle: Path, *, app_id: str | None = None, extra: dict[str, str] | None = None
    ) -> WorkerProcess:
        port = free_port()
        env = worker_env(
            self.settings,
            app_id=app_id or f"it-{uuid.uuid4().hex[:8]}",
            web_port=port,
            bundle=bundle,
            extra={"RECSTREAM_WORKER_RELOAD_INTERVAL_S": "0.5", **(extra or {})},
        )
        proc = WorkerProcess(env, port, self.tmp / f"worker-{port}.log")
        self.started.append(proc)
        return proc


@pytest.fixture
def workers(kafka: Any, fresh_topics: TopicNames, tmp_path: Path) -> Iterator[Workers]:
    settings = Settings(
        bootstrap=kafka.bootstrap, topics=fresh_topics, state_dir=tmp_path / "state"
    )
    w = Workers(settings, tmp_path)
    try:
        yield w
    finally:
        for proc in w.started:
            ready = proc.readiness() if proc.proc.poll() is None else None
            code = proc.stop()
            print(f"worker on :{proc.web_port} readiness before the stop: {ready}")
            print(f"worker on :{proc.web_port} exited {code}; log tail:\n{proc.tail_log(40)}")


class Client:
    """Produces inputs and reads outputs of one test's topics (no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.recs: list[tuple[int, int, Recommendation, float]] = []  # partition, offset, rec, t
        self.dlq: list[DLQRecord] = []
        self.sent_to: dict[str, int] = {}  # event_id -> input partition (for timeouts)

    async def __aenter__(self) -> Client:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all")
        self.consumer = AIOKafkaConsumer(
            self.topics.recommendations,
            self.topics.dlq,
            bootstrap_servers=self.settings.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await self.producer.start()
        await self.consumer.start()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        async for msg in self.consumer:
            if msg.topic == self.topics.dlq:
                self.dlq.append(DLQRecord.model_validate_json(msg.value))
            else:
                rec = Recommendation.model_validate_json(msg.value)
                self.recs.append((msg.partition, msg.offset, rec, time.time()))

    async def send(self, kind: str, key: str, value: dict | bytes) -> Any:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        meta = await self.producer.send_and_wait(getattr(self.topics, kind), raw, key=key.encode())
        if isinstance(value, dict) and "event_id" in value:
            self.sent_to[value["event_id"]] = meta.partition
        return meta

    async def click(self, eid: str, user: str, item: str) -> Any:
        body = {"event_id": eid, "user_id": user, "item_id": item, "type": "click"}
        return await self.send("user_events", user, {**body, "ts": time.time()})

    async def query(self, eid: str, user: str, text: str) -> Any:
        body = {"event_id": eid, "user_id": user, "text": text, "ts": time.time()}
        return await self.send("search_text", user, body)

    async def item(self, item_id: str, op: str, title: str = "", text: str | None = None) -> Any:
        body: dict[str, Any] = {"item_id": item_id, "op": op, "title": title, "ts": time.time()}
        if text:
            body["text"] = text
        return await self.send("item_updates", item_id, body)

    def rec_for(self, event_id: str) -> Recommendation | None:
        for _, _, rec, _ in self.recs:
            if rec.trigger_event_id == event_id:
                return rec
        return None

    async def wait_for(
        self, cond: Callable[[], bool], timeout: float = 30.0, what: Callable[[], str] = str
    ) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s: {len(self.recs)} recs, {len(self.dlq)} dlq"
                    f" {what()}"
                )
            await asyncio.sleep(0.05)

    async def wait_recs(self, event_ids: list[str], timeout: float = 30.0) -> None:
        want = set(event_ids)

        def missing() -> set[str]:
            return want - {r.trigger_event_id for _, _, r, _ in self.recs}

        def unanswered() -> str:  # which input partitions stalled, when it times out
            return "; unanswered: " + ", ".join(
                f"{e} (partition {self.sent_to.get(e)})" for e in sorted(missing())
            )

        await self.wait_for(lambda: not missing(), timeout, unanswered)


@pytest.fixture
def make_client(workers: Workers) -> Callable[[], Client]:
    return lambda: Client(workers.settings)
