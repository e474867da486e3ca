"""Adaptive micro-batching over a Faust stream.

Faust's ``Stream.take_events(max_, within)`` closes a batch only when it is
full or when ``within`` has passed *since the previous batch*: at low rates
every event waits for the timer (measured here: passthrough p50 15–22 ms with
``within=2 ms``, 3 ms with batches of one). :func:`take_ready` keeps
``take_events``' contract (a list of events, acked only after the caller's
body returns, never more than ``max_``) but closes the batch as soon as the
stream's input queue is empty: a lone event goes out at once, and under load
the batch grows to whatever arrived while the previous batch was processed.
``within`` stays as an upper bound on how long a batch may stay open.

It is a close copy of faust-streaming 0.15.3 ``take_events`` and uses the
same Stream internals (``add_processor``, ``_enable_passive``, ``ack``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def take_ready(
    stream: Any, max_: int, within: float, *, auto_ack: bool = True
) -> AsyncIterator[list[Any]]:
    """Yield lists of at most ``max_`` events: whatever is ready, without idling.

    With ``auto_ack=False`` the caller must ack every event (``stream.ack``)
    once it is done with it, e.g. after its outputs are delivered; events that
    are never acked are never committed.
    """
    events: list[Any] = []
    ready = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    enable_acks = stream.enable_acks
    queue = stream.channel.queue
    channel_it = stream.channel.__aiter__()

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:  # the caller is working on a batch
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready found current_event is None")
        events.append(event)
        if len(events) >= max_:
            ready.set()
            consumed.clear()
            await stream.wait(consumed)  # never hand out more than max_
        elif queue.empty():
            ready.set()  # nothing else is waiting: don't hold this one back
        return value

    stream.enable_acks = False  # we ack after the caller is done with a batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=within)
            if not events:
                ready.clear()
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                batch = list(events)
                events.clear()
                if auto_ack:
                    for event in batch:
                        await stream.ack(event)
                if not consuming.done():
                    consuming.set_result(None)
                ready.clear()
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
