"""The catalog changes a worker has seen, kept so a hot-reloaded model gets them too.

An upsert whose ``ts`` is older than the bundle's ``created_at`` for an item the
bundle already has is skipped (the bundle's trained vector is better than a
text-only one); deletes always apply. ``stream.catalog`` records every change
here and applies it to the live model; ``stream.model`` replays them onto a new
model before it serves.
"""

from __future__ import annotations

import logging

from inference.types import Recommender
from recstream.schemas import ItemUpdate

log = logging.getLogger(__name__)


def apply_update(recommender: Recommender, update: ItemUpdate, created_ts: float) -> bool:
    """Apply one change to a live model; False if skipped as older than its bundle."""
    if update.op == "delete":
        recommender.delete_item(update.item_id)
        return True
    if update.ts < created_ts and recommender.title(update.item_id) is not None:
        return False
    recommender.upsert_item(update.item_id, update.title, update.text, update.attributes)
    return True


class ItemOverlay:
    """The latest change per item this worker has seen, in arrival order."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, ItemUpdate]] = {}
        self._seq = 0

    @property
    def seq(self) -> int:
        return self._seq

    def __len__(self) -> int:
        return len(self._latest)

    def record(self, update: ItemUpdate) -> int:
        self._seq += 1
        self._latest[update.item_id] = (self._seq, update)
        return self._seq

    def replay(self, recommender: Recommender, created_ts: float, after: int = 0) -> int:
        """Apply every change recorded after ``after`` to ``recommender``; the last seq seen."""
        snapshot = list(self._latest.values())  # the loop thread may append meanwhile
        entries = sorted((e for e in snapshot if e[0] > after), key=lambda e: e[0])
        upto = after
        for seq, update in entries:
            try:
                apply_update(recommender, update, created_ts)
            except Exception:
                log.exception("could not re-apply item update for %s", update.item_id)
            upto = seq
        return max(upto, after)
