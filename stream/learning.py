"""Online item learning in the worker: clicks teach items, every worker serves what they taught.

The rule is :mod:`inference.online`'s; this module runs it as stream processing on
Faust and Kafka, in three parts:

1. **Feedback** (every worker, in the recommend agent's batch): each answered user
   event becomes an ``item-feedback`` record keyed by item id
   (:class:`recstream.schemas.ItemFeedback`): the step the click moves the item in
   (from the vector the worker computed for the user, less the worker's running
   mean user vector), whether the bundle trained the item, the event time, and the
   event's input partition and offset. It is produced with the batch's other
   outputs, so it is acknowledged before the event's offset is committed.
2. **The learner** (agent ``learn``, in the consumer group): Kafka partitions the
   feedback by item, so one learner owns each item's state, in table
   ``item_learned`` (changelog-backed, written as the user tables are,
   :mod:`stream.state`): the norm-bounded delta, the decayed click count, and per
   input partition the last offset folded, so a replayed click is folded once. A
   restarted or rebalanced learner gets the table back from its changelog (Faust).
3. **The applier** (every worker, no consumer group, as :mod:`stream.catalog` follows
   ``item-updates``): follows the table's changelog from its start and applies each
   item's latest state to the live model, if it was learned for the version that
   model serves (a new bundle starts from its own vectors). The latest state per
   item is kept, so a model loaded later gets them too.

Deletes: agent ``forget`` (consumer group) forwards each ``item-updates`` delete to
``item-feedback`` as ``op="forget"`` keyed by the item, so its learner deletes the
state (a changelog tombstone) and every applier drops it.

Why a group-less changelog follower and not a Faust GlobalTable: a GlobalTable's
updates do not reach every worker at run time (faust-streaming issue #283, open).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inference.online import Feedback, LearnedItem, UserCentre, feedback_for, fold
from inference.settings import OnlineSettings
from inference.types import Recommender
from recstream.errors import SchemaError
from recstream.schemas import ItemFeedback, ItemUpdate, decode
from stream.codec import dumps, loads
from stream.follow import from_start
from stream.messages import InMessage, OutMessage
from stream.metrics import WorkerMetrics
from stream.processing import Click
from stream.state import ChangelogBatch

log = logging.getLogger(__name__)

__all__ = [
    "FeedbackMaker",
    "LearnedFollower",
    "Learner",
    "feedback_record",
    "forget_record",
]


class LearnedTable(Protocol):
    """The ``item_learned`` table: a :class:`stream.state.TableView` in the worker, a dict
    in tests; keys are item ids, values :meth:`LearnedItem.to_json` dicts. Deleting an
    absent key is no error (its tombstone is still logged)."""

    def get(self, key: str, default: Any = None, /) -> Any: ...

    def __setitem__(self, key: str, value: Any, /) -> None: ...

    def __delitem__(self, key: str, /) -> None: ...


def feedback_record(topic: str, fb: Feedback) -> OutMessage:
    """The ``item-feedback`` record of ``fb`` (keyed by item: its learner's partition)."""
    step = None
    if fb.step is not None:
        step = base64.b64encode(np.asarray(fb.step, "<f4").tobytes()).decode("ascii")
    value = {
        "item_id": fb.item_id,
        "op": "click",
        "ts": fb.ts,
        "version": fb.version,
        "created_ts": fb.created_ts,
        "step": step,
        "trained": fb.trained,
        "source_partition": fb.source_partition,
        "source_offset": fb.source_offset,
    }
    return OutMessage(topic, fb.item_id.encode(), dumps(value))


def forget_record(topic: str, update: ItemUpdate) -> OutMessage:
    """The ``item-feedback`` record that makes the learner forget a deleted item."""
    value = {"item_id": update.item_id, "op": "forget", "ts": update.ts}
    return OutMessage(topic, update.item_id.encode(), dumps(value))


def _feedback(msg: ItemFeedback) -> Feedback:
    step = None
    if msg.step is not None:
        try:
            step = np.frombuffer(base64.b64decode(msg.step, validate=True), dtype="<f4").copy()
        except ValueError as exc:
            raise SchemaError("schema", f"step is not base64 float32: {exc}", "step") from exc
    return Feedback(
        item_id=msg.item_id,
        version=msg.version,
        step=step,
        trained=msg.trained,
        source_partition=msg.source_partition,
        source_offset=msg.source_offset,
        created_ts=msg.created_ts,
        ts=msg.ts,
    )


class FeedbackMaker:
    """Turns the clicks a batch answered into ``item-feedback`` records (part 1).

    Each click is taught by the model that answered it (the control's or the
    canary's bundle), with the running mean of the user vectors that model
    produced (a bundle's users live in its own space).
    """

    def __init__(self, topic: str, online: OnlineSettings) -> None:
        self.topic = topic
        self.online = online
        self._centres: dict[str, UserCentre] = {}

    def centre(self, model: Recommender) -> UserCentre:
        centre = self._centres.get(model.model_version)
        if centre is None:
            s = self.online
            centre = UserCentre(
                model.dim, window=s.centre_window, warmup=min(s.centre_warmup, s.centre_window)
            )
            self._centres[model.model_version] = centre
        return centre

    def records(self, models: Sequence[Recommender], clicks: Sequence[Click]) -> list[OutMessage]:
        if not models or not self.online.enabled:
            return []
        by_version = {m.model_version: m for m in models}
        for version in [v for v in self._centres if v not in by_version]:
            del self._centres[version]  # a bundle no longer served
        out = []
        for c in clicks:
            model = by_version.get(c.model_version)
            if model is None:
                continue  # answered by a model that no longer serves (not within a batch)
            fb = feedback_for(
                model,
                c.item_id,
                c.user_vector if self.online.vectors else None,
                source_partition=c.partition,
                source_offset=c.offset,
                created_ts=model.created_ts,
                ts=c.ts,
                centre=self.centre(model),
            )
            if fb is not None:
                out.append(feedback_record(self.topic, fb))
        return out


@dataclass
class LearnerOutput:
    messages: list[OutMessage] = field(default_factory=list)  # dead letters
    folded: int = 0
    forgotten: int = 0


class Learner:
    """The learner agent's work on one batch of ``item-feedback`` (part 2).

    ``table`` is the ``item_learned`` table (a :class:`stream.state.TableView` in the
    worker, a dict in tests), keyed by item id, values :meth:`LearnedItem.to_json`.
    """

    def __init__(
        self,
        *,
        table: LearnedTable,
        changelog: ChangelogBatch | None,
        online: OnlineSettings,
        dead_letter: Callable[[InMessage, str, str], OutMessage],
    ) -> None:
        self.table = table
        self.changelog = changelog
        self.online = online
        self.dead_letter = dead_letter

    def process(self, batch: Sequence[InMessage]) -> LearnerOutput:
        out = LearnerOutput()
        for msg in batch:
            if self.changelog is not None:
                self.changelog.enter(msg)  # the state lives in this message's partition
            try:
                if msg.value is None:
                    raise SchemaError("empty", "message has no value (tombstone)")
                record = decode(ItemFeedback, msg.value)
                feedback = None if record.op == "forget" else _feedback(record)
            except SchemaError as exc:
                out.messages.append(self.dead_letter(msg, exc.reason, str(exc)))
                continue
            # What teaches nothing (a replay, a straggler) still writes the item's state
            # again, as the user tables do (stream/state.py): the store keeps what a killed
            # worker wrote and a restart restores only the changelog after its persisted
            # offset, so the replay is what brings an unacknowledged write to the changelog.
            if feedback is None:
                del self.table[record.item_id]  # absent too: its tombstone is written again
                out.forgotten += 1
                continue
            stored = self.table.get(record.item_id)
            state = fold(
                None if stored is None else LearnedItem.from_json(stored), feedback, self.online
            )
            if state is not None:
                self.table[record.item_id] = state.to_json()
                out.folded += 1
            elif stored is not None:
                self.table[record.item_id] = stored
        if self.changelog is not None:
            self.changelog.leave()
        return out


class LearnedOverlay:
    """The latest learned state per item this worker has seen, and how many per version."""

    def __init__(self) -> None:
        self.latest: dict[str, LearnedItem] = {}
        self.per_version: Counter[str] = Counter()

    def record(self, item_id: str, state: LearnedItem | None) -> None:
        old = self.latest.pop(item_id, None)
        if old is not None:
            self.per_version[old.version] -= 1
        if state is not None:
            self.latest[item_id] = state
            self.per_version[state.version] += 1

    def for_version(self, version: str) -> dict[str, LearnedItem]:
        return {i: s for i, s in self.latest.items() if s.version == version}


class LearnedFollower:
    """Follows the learned table's changelog on every partition, with no consumer group,
    and applies each item's latest state to the live model (part 3)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        models: Callable[[], Sequence[Recommender]],
        metrics: WorkerMetrics,
        consumer_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.models = models  # the models serving now (control, canary)
        self.metrics = metrics
        self.options = consumer_options or {}
        self.clock = clock
        self.overlay = LearnedOverlay()
        self.caught_up = asyncio.Event()
        self._synced: list[Recommender] = []  # the models the overlay was applied to

    async def run(self) -> None:
        async with from_start(self.bootstrap, self.topic, self.options, fetch_max_wait_ms=50) as (
            consumer,
            tps,
            ends,
        ):
            log.info("following %s (%d learned states to replay)", self.topic, sum(ends.values()))
            replayed = False
            while True:
                if not replayed:
                    positions = await asyncio.gather(*(consumer.position(tp) for tp in tps))
                    replayed = all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True))
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                records = [(r.key, r.value) for recs in batches.values() for r in recs]
                if records:
                    self.apply_records(records)
                self.sync_model()
                # caught up = replayed AND applied to a serving model, so a worker that
                # says it is ready serves what was learned (the model may load after the
                # replay: warm-up makes that the usual order)
                if replayed and self._synced and not self.caught_up.is_set():
                    self.caught_up.set()
                    log.info("learned items caught up: %d states", len(self.overlay.latest))

    def apply_records(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> int:
        """Record changelog records (key, value) and apply them to the live model."""
        changed: dict[str, LearnedItem | None] = {}
        for key, value in records:
            try:
                item_id = str(loads(key)) if key is not None else None
                state = None if value is None else LearnedItem.from_json(loads(value))
            except (ValueError, KeyError, TypeError) as exc:  # written by us: a bug, not input
                log.error("skipping an unreadable learned-state record %r: %s", key, exc)
                continue
            if item_id is None:
                continue
            self.overlay.record(item_id, state)
            changed[item_id] = state  # the last record per item wins
        return self._apply(changed)

    def reapply(self, item_id: str) -> int:
        """The catalog made ``item_id`` live: apply its learned state now. A state that
        arrived first (a restarted worker replays both topics at once) was skipped as
        not live, and nothing else would apply it again."""
        state = self.overlay.latest.get(item_id)
        return 0 if state is None else self._apply({item_id: state})

    def sync_model(self) -> None:
        """After a hot reload: apply what was learned for a new model's version."""
        models = list(self.models())
        for model in models:
            if all(model is not m for m in self._synced):
                learned = self.overlay.for_version(model.model_version)
                if learned:
                    self._apply_to(model, dict(learned))
        self._synced = models
        self._set_gauge(models)

    def _apply(self, changed: dict[str, LearnedItem | None]) -> int:
        models = list(self.models())
        done = sum(self._apply_to(model, changed) for model in models)
        self._set_gauge(models)
        return done

    def _apply_to(self, model: Recommender, changed: dict[str, LearnedItem | None]) -> int:
        now = self.clock()
        m = self.metrics
        apply: dict[str, LearnedItem | None] = {}
        for item_id, state in changed.items():
            if state is not None and state.version != model.model_version:
                m.child(m.learned_updates, "other_version").inc()
                continue
            apply[item_id] = state
        done = model.apply_learned(apply) if apply else 0
        m.child(m.learned_updates, "applied").inc(done)
        m.child(m.learned_updates, "not_live").inc(len(apply) - done)
        for state in apply.values():
            if state is not None and state.count_ts > 0:
                m.learned_lag.observe(max(0.0, now - state.count_ts))
        return done

    def _set_gauge(self, models: Sequence[Recommender]) -> None:
        """Learned items for the first serving model's (the control's) version."""
        if models:
            self.metrics.learned_items.set(self.overlay.per_version[models[0].model_version])
