"""Input events are acked only after the outputs they caused are acknowledged by the broker."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any


class AckPipeline:
    """Acks each batch's input events after its outputs are delivered, in batch order.

    Processing of batch n+1 overlaps the broker round trip of batch n (up to
    ``depth`` batches in flight), but no input offset is acked, and so none is
    committed, before the outputs it caused are acknowledged by the broker. A
    delivery failure stops the agent (the worker crashes and the unacked events
    are consumed again: at-least-once).
    """

    def __init__(self, stream: Any, depth: int) -> None:
        self.stream = stream
        self.depth = depth
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._last: asyncio.Task[None] | None = None

    async def add(self, events: Sequence[Any], delivered: asyncio.Future[None]) -> None:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft().result()  # re-raise a delivery failure here
        if len(self._inflight) >= self.depth:
            await self._inflight.popleft()
        self._last = asyncio.ensure_future(self._ack_after(events, delivered, self._last))
        self._inflight.append(self._last)

    async def _ack_after(
        self,
        events: Sequence[Any],
        delivered: asyncio.Future[None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        await delivered
        if previous is not None:
            await previous  # keep acks in batch order
        for event in events:
            await self.stream.ack(event)
