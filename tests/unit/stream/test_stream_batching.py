"""take_ready: batches open at their first event, close when full or after the linger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stream.batching import first_older_than, take_ready


class _Channel:
    def __aiter__(self) -> _Channel:
        return self


class _Stream:
    """The Stream internals take_ready uses; ``feed`` plays Faust's passive drainer."""

    def __init__(self) -> None:
        self.enable_acks = True
        self.should_stop = False
        self.current_event: Any = None
        self.channel = _Channel()  # take_ready only calls __aiter__ on it
        self._processors: list[Any] = []
        self.acked: list[str] = []

    def add_processor(self, p: Any) -> None:
        self._processors.append(p)

    def _enable_passive(self, it: Any) -> None:
        pass

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def ack(self, event: str) -> None:
        self.acked.append(event)

    async def feed(self, *events: str) -> None:
        for e in events:
            self.current_event = e
            for p in self._processors:
                await p(e)


async def _collect(stream: _Stream, n: int, **kw: Any) -> list[tuple[list[str], float]]:
    out = []
    t0 = time.monotonic()
    async for batch in take_ready(stream, **kw):
        out.append((batch, time.monotonic() - t0))
        if sum(len(b) for b, _ in out) >= n:
            break
    return out


async def test_full_batches_close_at_once_and_the_rest_after_the_linger() -> None:
    stream = _Stream()
    got = asyncio.ensure_future(_collect(stream, 3, max_=2, linger=0.2))
    await asyncio.sleep(0)
    feeder = asyncio.ensure_future(stream.feed("a", "b", "c"))
    batches = await asyncio.wait_for(got, 5)
    await asyncio.wait_for(feeder, 5)
    assert [b for b, _ in batches] == [["a", "b"], ["c"]]
    assert batches[0][1] < 0.15, "a full batch does not wait for the linger"
    assert batches[1][1] >= 0.19, "a partial batch waits the linger for company"
    assert stream.acked == ["a", "b", "c"]  # auto_ack after each batch


async def test_an_event_arriving_within_the_linger_joins_the_batch() -> None:
    stream = _Stream()
    got = asyncio.ensure_future(_collect(stream, 2, max_=10, linger=0.3))
    await asyncio.sleep(0)
    await stream.feed("a")
    await asyncio.sleep(0.05)
    await stream.feed("b")
    batches = await asyncio.wait_for(got, 5)
    assert [b for b, _ in batches] == [["a", "b"]]


async def test_no_ack_without_auto_ack_and_the_loop_ends_on_stop() -> None:
    stream = _Stream()
    seen: list[list[str]] = []

    async def consume() -> None:
        async for batch in take_ready(stream, 5, 0.01, auto_ack=False, idle_check=0.05):
            seen.append(batch)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    await stream.feed("a")
    await asyncio.sleep(0.1)
    stream.should_stop = True
    await asyncio.wait_for(task, 1.0)  # an idle loop notices the stop within idle_check
    assert seen == [["a"]] and stream.acked == []
    assert stream._processors == [] and stream.enable_acks is True  # restored


async def _backlog(behind: bool) -> list[list[str]]:
    """Two events at once, then four more 10 ms apart (each after the 2 ms linger)."""
    stream = _Stream()
    got = asyncio.ensure_future(
        _collect(stream, 6, max_=6, linger=0.002, behind=lambda ev: behind, catch_up=1.0)
    )
    await asyncio.sleep(0)
    await stream.feed("a", "b")
    for i in range(4):
        await asyncio.sleep(0.01)
        await stream.feed(f"late{i}")
    return [b for b, _ in await asyncio.wait_for(got, 5)]


async def test_a_batch_behind_the_input_waits_to_fill_and_one_on_time_does_not() -> None:
    # behind: the backlog keeps arriving after the linger; the batch takes it (up to full)
    assert await _backlog(behind=True) == [["a", "b", "late0", "late1", "late2", "late3"]]
    # on time: the same arrivals close at the linger
    assert (await _backlog(behind=False))[0] == ["a", "b"]
    # a lone event never waits for company it would not get: one event is not a backlog
    stream = _Stream()
    got = asyncio.ensure_future(
        _collect(stream, 1, max_=6, linger=0.002, behind=lambda ev: True, catch_up=1.0)
    )
    await asyncio.sleep(0)
    await stream.feed("solo")
    batches = await asyncio.wait_for(got, 5)
    assert batches[0][0] == ["solo"] and batches[0][1] < 0.5


def test_first_older_than_reads_the_first_events_kafka_timestamp() -> None:
    class _Ev:
        def __init__(self, ts: float | None) -> None:
            self.message = type("M", (), {"timestamp": ts})()

    behind = first_older_than(0.05)
    assert behind([_Ev(time.time() - 1.0), _Ev(time.time())])
    assert not behind([_Ev(time.time()), _Ev(time.time() - 1.0)])
    assert not behind([_Ev(None)])  # no timestamp: not known to be behind
