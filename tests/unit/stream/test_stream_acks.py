"""AckPipeline: inputs are acked only after their outputs are delivered, in batch order."""

from __future__ import annotations

import asyncio

import pytest

from stream.acks import AckPipeline


class _Stream:
    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: str) -> bool:
        self.acked.append(event)
        return True


async def test_acks_wait_for_delivery_and_keep_batch_order() -> None:
    stream = _Stream()
    pipe = AckPipeline(stream, depth=8)
    loop = asyncio.get_running_loop()
    d1, d2, d3 = loop.create_future(), loop.create_future(), loop.create_future()
    await pipe.add(["a1", "a2"], d1)
    await pipe.add(["b1"], d2)
    await pipe.add(["c1"], d3)
    d3.set_result(None)
    d2.set_result(None)
    await asyncio.sleep(0.01)
    assert stream.acked == [], "nothing acked while the first batch is undelivered"
    d1.set_result(None)
    await asyncio.sleep(0.01)
    assert stream.acked == ["a1", "a2", "b1", "c1"]


async def test_depth_bounds_batches_in_flight() -> None:
    stream = _Stream()
    pipe = AckPipeline(stream, depth=1)
    loop = asyncio.get_running_loop()
    d1 = loop.create_future()
    await pipe.add(["a"], d1)
    second = asyncio.ensure_future(pipe.add(["b"], loop.create_future()))
    await asyncio.sleep(0.01)
    assert not second.done(), "second batch waits for the first delivery"
    d1.set_result(None)
    await asyncio.wait_for(second, 1.0)
    assert stream.acked == ["a"]


async def test_delivery_failure_surfaces_and_nothing_after_it_is_acked() -> None:
    stream = _Stream()
    pipe = AckPipeline(stream, depth=8)
    loop = asyncio.get_running_loop()
    bad = loop.create_future()
    await pipe.add(["x"], bad)
    bad.set_exception(RuntimeError("broker said no"))
    ok = loop.create_future()
    ok.set_result(None)
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="broker said no"):
        await pipe.add(["y"], ok)
        await asyncio.sleep(0.01)
        await pipe.add(["z"], ok)
    await asyncio.sleep(0.01)
    assert "x" not in stream.acked
