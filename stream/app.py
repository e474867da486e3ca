"""The Faust application: ``faust -A stream.app worker`` or ``recstream worker``.

One agent (concurrency 1, see faust #606 in NOTES.md) consumes ``user-events``
and ``search-text`` together: both are keyed by ``user_id`` and co-partitioned,
so one user's clicks and queries reach one worker, in order per partition.
Events are micro-batched by :func:`stream.batching.take_ready` (Faust's
``take_events`` contract, but the wait starts at a batch's first event:
``batch_max_size`` / ``batch_max_wait_s``); each batch is decoded, applied to
the user tables, answered with one ``recommend_batch`` call and produced
(acks=all) together with the tables' changelog records (``stream.state``).

Delivery (at-least-once): the input events of a batch are acked to Faust only
after the broker acknowledged every output of that batch (recommendations, DLQ
records, changelog records), in batch order (:class:`AckPipeline`; the next
batch is processed meanwhile). Faust commits only acked offsets, every
``broker_commit_interval``; a crash replays the uncommitted events, so a
recommendation may repeat (same ``trigger_event_id``) but none is lost.
Faust's "publish on commit" attachments are off (its default), so outputs go
out at once rather than at commit time. Exactly-once (Kafka transactions) is
not used: faust-streaming has open duplicate/crash reports for it.

``item-updates`` are followed by every worker outside the consumer group
(``stream.catalog``); hot reload is in ``stream.model``; HTTP endpoints in
``stream.web``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import faust
import mode

from recstream.kafka_admin import client_kwargs
from recstream.schemas import encode
from recstream.settings import Settings
from stream.batching import take_ready
from stream.catalog import CatalogFollower, ItemOverlay
from stream.consumer import AtLeastOnceConsumer
from stream.consumer import install as install_consumer
from stream.metrics import WorkerMetrics
from stream.model import Loader, ModelHolder, import_loader
from stream.processing import BatchProcessor, InMessage, OutMessage, dlq_record
from stream.settings import WorkerSettings
from stream.state import ChangelogBatch, TableView

log = logging.getLogger(__name__)

__all__ = ["Worker", "create_app"]  # plus the lazy module attribute ``app``

LATEST_RECS_MAX = 100_000


class Worker:
    """Everything one worker process holds besides the Faust app itself."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        worker_settings: WorkerSettings,
        loader: Loader,
    ) -> None:
        self.app = app
        self.settings = settings
        self.ws = worker_settings
        self.metrics = WorkerMetrics()
        self.overlay = ItemOverlay()
        source = worker_settings.bundle or settings.bundles
        self.holder = ModelHolder(
            Path(source), loader=loader, metrics=self.metrics, overlay=self.overlay
        )
        self.latest: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.failed = False  # the recommend agent died: not ready, the worker is stopping
        self._e2e_children: dict[str, Any] = {}
        topics = settings.topics
        schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
        tables: dict[str, Any] = {
            "schema": schema,
            "partitions": self.ws.partitions,
            "options": self.ws.table_options(),
        }
        self.changelog = ChangelogBatch()
        self.sequences = TableView(app.Table("user_sequence", **tables), self.changelog)
        self.interests = TableView(app.Table("user_interest", **tables), self.changelog)
        # Trending: clicks per item in the current tumbling window, counted per
        # input partition (key "<partition>:<item_id>", so each count lives in its
        # partition's changelog and store) and summed over this worker's
        # partitions when read; value {"w": window start, "n": count}.
        self.trending = TableView(app.Table("trending", **tables), self.changelog)
        self.processor = BatchProcessor(
            settings=worker_settings,
            topics=topics,
            model=lambda: self.holder.current,
            sequences=self.sequences,
            interests=self.interests,
            metrics=self.metrics,
            on_click=self._count_click,
            on_message=self._enter_message,
            limits=settings.limits.schema_limits(),
        )
        self.catalog = CatalogFollower(
            bootstrap=settings.bootstrap,
            topic=topics.item_updates,
            holder=self.holder,
            overlay=self.overlay,
            dead_letter=self._dead_letter_one,
            on_applied=self._update_index_gauge,
            consumer_options=client_kwargs(settings.bootstrap, settings.security),
        )

    # -- the agent's work ---------------------------------------------------
    async def handle_batch(self, events: Sequence[Any]) -> asyncio.Future[None]:
        """Process one batch and start producing its outputs.

        Returns a future that completes once the broker acknowledged every output
        of the batch (acks=all); the caller acks the input events only then.
        """
        msgs = [
            InMessage(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.key,
                e.message.value,
                context=e,
            )
            for e in events
        ]
        self.metrics.child(self.metrics.batch_size, "recommend").observe(len(msgs))
        try:
            out = self.processor.process(msgs)
        finally:
            _bind_current_event(None)
        for rec in out.recommendations:
            self._e2e(rec["trigger"]).observe(max(0.0, rec["emitted_ts"] - rec["event_ts"]))
            self._remember(rec)
        # Recommendations first: the producer sends in this order, and the batch's
        # dead letters can be large (up to max_message_bytes of raw each).
        recs_topic = self.settings.topics.recommendations
        answers = [m for m in out.messages if m.topic == recs_topic]
        others = [m for m in out.messages if m.topic != recs_topic]
        return await self.produce([*answers, *self.changelog.drain(), *others])

    async def produce(self, messages: Sequence[OutMessage]) -> asyncio.Future[None]:
        """Hand every message to the producer; the future completes when all are acked."""
        t0 = time.perf_counter()
        producer = self.app.producer
        pending = [
            await producer.send(m.topic, m.key, m.value, m.partition, None, None) for m in messages
        ]

        async def delivered() -> None:
            await asyncio.gather(*pending)
            metrics = self.metrics
            metrics.child(metrics.stage_latency, "produce").observe(time.perf_counter() - t0)
            for topic, n in Counter(m.topic for m in messages).items():
                metrics.child(metrics.events_out, topic).inc(n)

        return asyncio.ensure_future(delivered())

    async def _dead_letter_one(self, msg: InMessage, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        record = dlq_record(msg, reason, error, self.processor.limits)
        self.metrics.events_in.labels(topic=msg.topic).inc()
        self.metrics.dlq.labels(topic=msg.topic, reason=reason).inc()
        await await_delivery(
            await self.produce([OutMessage(self.settings.topics.dlq, msg.key, encode(record))])
        )

    def _enter_message(self, msg: InMessage) -> None:
        _bind_current_event(msg)
        self.changelog.partition = msg.partition

    def _count_click(self, item_id: str) -> None:
        window = self.ws.trending_window_s
        start = time.time() // window * window
        key = f"{self.changelog.partition}:{item_id}"
        entry = self.trending.get(key)
        same = isinstance(entry, dict) and entry.get("w") == start
        n = int(entry["n"]) + 1 if same else 1
        self.trending[key] = {"w": start, "n": n}

    def top_trending(self, k: int = 10) -> list[tuple[str, int]]:
        """Most clicked items of the current window on this worker's partitions."""
        window = self.ws.trending_window_s
        start = time.time() // window * window
        counts: dict[str, int] = {}
        for key, e in self.trending.items():
            if isinstance(e, dict) and e.get("w") == start:
                item = str(key).partition(":")[2]
                counts[item] = counts.get(item, 0) + int(e["n"])
        return sorted(counts.items(), key=lambda c: (-c[1], c[0]))[:k]

    def _e2e(self, trigger: str) -> Any:
        child = self._e2e_children.get(trigger)
        if child is None:
            child = self._e2e_children[trigger] = self.metrics.e2e_latency.labels(trigger=trigger)
        return child

    def _remember(self, rec: dict[str, Any]) -> None:
        user = rec["user_id"]
        self.latest[user] = rec
        self.latest.move_to_end(user)
        while len(self.latest) > LATEST_RECS_MAX:
            self.latest.popitem(last=False)

    def _update_index_gauge(self) -> None:
        if self.holder.current is not None:
            self.metrics.index_items.set(self.overlay.index_size(self.holder.current))

    # -- readiness ------------------------------------------------------------
    def assigned(self) -> list[Any]:
        try:
            return sorted(self.app.consumer.assignment())
        except Exception:  # consumer not started yet
            return []

    def readiness(self) -> dict[str, Any]:
        inputs = {self.settings.topics.user_events, self.settings.topics.search_text}
        mine = sorted({tp.partition for tp in self.assigned() if tp.topic in inputs})
        state = {
            "model_version": self.holder.version,
            "model_loaded": self.holder.current is not None,
            "partitions_assigned": len(mine),
            "input_partitions": mine,
            "catalog_caught_up": self.catalog.caught_up.is_set(),
        }
        state["agent_failed"] = self.failed
        state["ready"] = bool(
            state["model_loaded"]
            and state["partitions_assigned"]
            and state["catalog_caught_up"]
            and not self.failed
        )
        return state

    async def update_lag(self) -> None:
        """Set ``recstream_consumer_lag`` (high watermark − committed offset) per partition."""
        consumer = cast(AtLeastOnceConsumer, self.app.consumer)  # see create_app
        inputs = {self.settings.topics.user_events, self.settings.topics.search_text}
        for tp in self.assigned():
            if tp.topic not in inputs:
                continue
            high = consumer.highwater(tp)
            if high is None:  # nothing fetched from it yet
                continue
            lag = high - consumer.committed_position(tp)
            self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)


async def await_delivery(fut: asyncio.Future[None]) -> None:
    await fut


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


def _bind_current_event(msg: InMessage | None) -> None:
    """Make ``msg``'s Faust event the current one, as inside ``async for event in stream``.

    ``take_events`` hands us a list, so Faust's task-local "current event" is
    unset in the agent body; table writes need it to pick the changelog
    partition (= the input message's partition).
    """
    from faust.streams import _current_event

    _current_event.set(None if msg is None or msg.context is None else weakref.ref(msg.context))


def faust_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` from ``RECSTREAM_SECURITY__*`` (None for PLAINTEXT)."""
    kw = client_kwargs(settings.bootstrap, settings.security)  # validates, builds the SSL context
    protocol = kw["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kw["ssl_context"])
    return faust.SASLCredentials(
        username=kw["sasl_plain_username"],
        password=kw["sasl_plain_password"],
        mechanism=kw["sasl_mechanism"],
        ssl_context=kw.get("ssl_context"),
    )


def create_app(
    settings: Settings | None = None,
    worker_settings: WorkerSettings | None = None,
    loader: Loader | None = None,
) -> faust.App:
    """Build the worker's Faust app (nothing connects until the worker starts)."""
    settings = settings or Settings()
    ws = worker_settings or WorkerSettings()
    datadir = ws.data_dir or settings.state_dir / "worker" / ws.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the leaf
    app = faust.App(
        ws.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.bootstrap.split(",") if h.strip()],
        store=ws.store,
        datadir=str(datadir),
        web_bind=ws.web_host,
        web_host=ws.web_host,
        web_port=ws.web_port,
        topic_partitions=ws.partitions,
        producer_acks=-1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        # Per-partition state moves with its partition; no hot standby by default.
        table_standby_replicas=0,
        # An agent that raises stops the worker instead of being restarted in place
        # (see the recommend agent).
        agent_supervisor=mode.CrashingSupervisor,
        broker_credentials=faust_credentials(settings),
    )
    install_consumer(app)  # never commits past an unanswered input (stream.consumer)
    worker = Worker(app, settings, ws, loader or import_loader(ws.loader))
    app.recstream = worker  # type: ignore[attr-defined]
    topics = settings.topics
    inputs = app.topic(
        topics.user_events,
        topics.search_text,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(inputs, name="recommend", concurrency=1)
    async def recommend(stream: faust.StreamT[bytes]) -> None:
        await worker.holder.loaded.wait()
        acks = AckPipeline(stream, depth=ws.max_inflight_batches)
        batches = take_ready(stream, ws.batch_max_size, ws.batch_max_wait_s, auto_ack=False)
        try:
            async for events in batches:
                delivered = await worker.handle_batch(events)
                await acks.add(events, delivered)
        except Exception as exc:
            # Bad input never gets here (it is dead-lettered): this is a bug or a
            # delivery failure. A restarted agent would leave this batch unacked
            # forever, blocking commits, while /readyz kept saying ready; so the
            # whole worker stops (non-zero exit, supervisor restarts it) and its
            # uncommitted events are consumed again.
            log.critical("recommend agent failed; stopping the worker", exc_info=exc)
            worker.failed = True
            raise

    @app.task
    async def load_model() -> None:
        await worker.holder.maybe_reload()

    @app.timer(ws.reload_interval_s)
    async def reload_model() -> None:
        await worker.holder.maybe_reload()

    @app.task
    async def follow_catalog() -> None:
        # The follower owns a plain consumer: if it fails (broker gone, auth), start
        # over from the beginning of the topic (idempotent) rather than go stale.
        while True:
            try:
                await worker.catalog.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("catalog follower failed; restarting in 2 s")
                await asyncio.sleep(2.0)

    @app.timer(5.0)
    async def consumer_lag() -> None:
        await worker.update_lag()

    @app.timer(30.0)
    async def maintain_index() -> None:
        # Compacts a tombstoned HNSW index when the serving core asks for it; runs
        # on the loop thread between batches (the index is not shared across threads).
        maintain = getattr(worker.holder.current, "maintain", None)
        if callable(maintain):
            t0 = time.perf_counter()
            if maintain():
                log.info("index compacted in %.2f s", time.perf_counter() - t0)

    from stream.web import register_views

    register_views(app, worker)
    return app


def __getattr__(name: str) -> Any:
    # ``faust -A stream.app worker`` looks up ``stream.app.app``: build it on first
    # use (from the environment), not at import, so importing this module is cheap
    # and ``recstream worker`` can build its own with command-line overrides.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
