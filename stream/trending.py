"""Trending: clicks per item in the current tumbling window, in a changelog-backed table.

Counted per input partition (key ``"<partition>:<item_id>"``, so each count lives
in its partition's changelog and store, and moves with the partition) and summed
over this worker's partitions when read; a value is ``{"w": window start, "n": count}``.
Served on ``/trending``; a count from an earlier window reads as zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stream.state import TableView


class Trending:
    def __init__(
        self, table: TableView, window_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.table = table
        self.window_s = window_s
        self.clock = clock

    def _window(self) -> float:
        return self.clock() // self.window_s * self.window_s

    def count(self, item_id: str) -> None:
        """One click on ``item_id``, in the partition of the message being processed."""
        start = self._window()
        key = f"{self.table.batch.partition}:{item_id}"
        entry = self.table.get(key)
        same = isinstance(entry, dict) and entry.get("w") == start
        n = int(entry["n"]) + 1 if same else 1
        self.table[key] = {"w": start, "n": n}

    def recount(self, item_id: str) -> None:
        """A replayed click: not counted again, but its count is written again, since
        the store may hold it while the changelog does not (``stream.processing``)."""
        key = f"{self.table.batch.partition}:{item_id}"
        entry = self.table.get(key)
        if entry is not None:
            self.table[key] = entry

    def top(self, k: int = 10) -> list[tuple[str, int]]:
        """Most clicked items of the current window on this worker's partitions."""
        start = self._window()
        counts: dict[str, int] = {}
        for key, e in self.table.items():
            if isinstance(e, dict) and e.get("w") == start:
                item = str(key).partition(":")[2]
                counts[item] = counts.get(item, 0) + int(e["n"])
        return sorted(counts.items(), key=lambda c: (-c[1], c[0]))[:k]
