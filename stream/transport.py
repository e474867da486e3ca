"""Faust's aiokafka transport with a configurable consumer fetch wait.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for the worker's
consumer. On Apache Kafka that is *not* harmless: aiokafka keeps at most one
fetch request in flight per broker, and that request only names the
partitions whose buffered records were already consumed when it was sent. A
partition drained a moment later cannot be fetched again until the in-flight
request returns, which the broker delays until data arrives for one of *its*
partitions or ``fetch_max_wait_ms`` passes. With several input partitions
this head-of-line wait (up to 1.5 s) throttled the passthrough floor: p99
~125 ms at 200 ev/s and a 1.5 s backlog at 1,000 ev/s with the worker's CPU
mostly idle (bench/RESULTS.md, "floor investigation"). A short wait bounds it;
the price is an empty fetch every ``fetch_max_wait_ms`` when idle.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "consumer_fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class App(faust.App):
    """``faust.App`` whose worker consumer waits at most ``consumer_fetch_max_wait_ms``."""

    consumer_fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        if isinstance(transport, faust_aiokafka.Transport):
            transport.Consumer = _Consumer  # type: ignore[misc]
        return transport
