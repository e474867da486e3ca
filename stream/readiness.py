"""``/readyz``: a worker is ready when it serves a model, owns input partitions, has
caught up with the catalog and with what clicks taught items, and its agents have not
failed (then it is stopping).

The control bucket's model is the one that counts; the canary's state (serving or
not, and why not) is reported under ``buckets`` but never makes a worker unready:
without a canary everyone is served by the control."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

from stream.rollout import Rollout


class Readiness:
    def __init__(
        self,
        *,
        rollout: Rollout,
        catalog_caught_up: asyncio.Event,
        learned_caught_up: asyncio.Event | None = None,
        assigned: Callable[[], list[Any]],
        inputs: Collection[str],
    ) -> None:
        self.rollout = rollout
        self.catalog_caught_up = catalog_caught_up
        self.learned_caught_up = learned_caught_up  # None: no online learning to wait for
        self.assigned = assigned  # the consumer's assigned topic-partitions ([] before start)
        self.inputs = set(inputs)
        self.failed = False  # an agent died: not ready, the worker is stopping

    def state(self) -> dict[str, Any]:
        mine = sorted({tp.partition for tp in self.assigned() if tp.topic in self.inputs})
        control = self.rollout.control
        state: dict[str, Any] = {
            "model_version": control.version,
            "model_loaded": control.current is not None,
            "partitions_assigned": len(mine),
            "input_partitions": mine,
            "catalog_caught_up": self.catalog_caught_up.is_set(),
            "learned_caught_up": self.learned_caught_up is None or self.learned_caught_up.is_set(),
        }
        state["buckets"] = self.rollout.state()
        state["agent_failed"] = self.failed
        state["ready"] = bool(
            state["model_loaded"]
            and state["partitions_assigned"]
            and state["catalog_caught_up"]
            and state["learned_caught_up"]
            and not self.failed
        )
        return state
