"""The Faust application: ``faust -A stream.app worker`` or ``recstream worker``.

One agent (concurrency 1: faust-streaming #606 can commit past an in-flight message
at higher concurrency) consumes ``user-events``
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
(``stream.catalog``); hot reload is in ``stream.model``, the control and canary
bundles in ``stream.rollout`` (who gets which: ``stream.buckets``); every answered
click is judged against the user's earlier list (``stream.feedback``); HTTP
endpoints in ``stream.web`` (over ``stream.readiness``, ``stream.trending``,
``stream.latest``).

Online item learning (``stream.learning``): each batch's clicks also produce
``item-feedback`` records; agent ``learn`` (partitioned by item) folds them into
table ``item_learned``; agent ``forget`` forwards catalog deletes to it; every
worker applies the table's changelog to its live model (``LearnedFollower``).
The learner's outputs (changelog records, dead letters) gate its input offsets as
the recommend agent's do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
import mode

from inference.settings import InferenceSettings, OnlineSettings
from inference.types import Recommender
from recstream.errors import ConfigError, SchemaError
from recstream.kafka_admin import client_kwargs
from recstream.schemas import encode
from recstream.settings import Settings
from stream.acks import AckPipeline
from stream.batching import first_older_than, take_ready
from stream.buckets import Buckets
from stream.catalog import CatalogFollower
from stream.consumer import AtLeastOnceConsumer
from stream.consumer import install as install_consumer
from stream.feedback import LiveFeedback, Shown
from stream.latest import LatestRecommendations
from stream.learning import FeedbackMaker, LearnedFollower, Learner, forget_record
from stream.messages import InMessage, OutMessage
from stream.metrics import WorkerMetrics
from stream.model import Loader
from stream.overlay import ItemOverlay
from stream.processing import BatchProcessor, dlq_key, dlq_record
from stream.readiness import Readiness
from stream.rollout import Rollout
from stream.settings import WorkerSettings
from stream.state import ChangelogBatch, TableView
from stream.trending import Trending
from stream.web import register_views

log = logging.getLogger(__name__)

__all__ = ["Worker", "create_app"]  # plus the lazy module attribute ``app``

PRODUCER_MAX_REQUEST_BYTES = 1_000_000


class Worker:
    """Everything one worker process holds besides the Faust app itself: its parts,
    wired together (each is its own module), and the agent's per-batch work."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        worker_settings: WorkerSettings,
        loader: Loader,
        online: OnlineSettings | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.ws = worker_settings
        self.online = online if online is not None else OnlineSettings()
        self.metrics = WorkerMetrics()
        self.overlay = ItemOverlay()
        source = worker_settings.bundle or settings.bundles
        self.rollout = Rollout(
            Path(source),
            loader=loader,
            metrics=self.metrics,
            overlay=self.overlay,
            buckets=Buckets(worker_settings.bucket_salt, worker_settings.canary_share),
        )
        self.latest = LatestRecommendations()
        self.feedback = LiveFeedback(
            self.metrics,
            k=worker_settings.feedback_k,
            per_user=worker_settings.feedback_lists_per_user,
            max_users=worker_settings.feedback_max_users,
            enabled=worker_settings.feedback,
        )
        self._e2e_children: dict[str, Any] = {}
        self.behind = BehindClock()
        topics = settings.topics
        schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
        tables: dict[str, Any] = {
            "schema": schema,
            "partitions": self.ws.partitions,
            "options": self.ws.table_options(),
            # As stream.topics declares them, should Faust create one itself.
            "extra_topic_configs": {
                "min.insync.replicas": str(settings.topic_policy.min_insync_replicas)
            },
        }
        self.changelog = ChangelogBatch()
        self.sequences = TableView(app.Table("user_sequence", **tables), self.changelog)
        self.interests = TableView(app.Table("user_interest", **tables), self.changelog)
        self.trending = Trending(
            TableView(app.Table("trending", **tables), self.changelog),
            worker_settings.trending_window_s,
        )
        self._tables = {v.topic: v for v in (self.sequences, self.interests, self.trending.table)}
        self.processor = BatchProcessor(
            settings=worker_settings,
            topics=topics,
            model=lambda: self.rollout.control.current,
            canary=self.rollout.canary_for_batch,
            sequences=self.sequences,
            interests=self.interests,
            metrics=self.metrics,
            on_click=self.trending.count,
            on_click_replayed=self.trending.recount,
            on_message=self.changelog.enter,
            limits=settings.limits.schema_limits(),
        )
        self.catalog = CatalogFollower(
            bootstrap=settings.bootstrap,
            topic=topics.item_updates,
            holders=self.rollout.holders,
            overlay=self.overlay,
            dead_letter=self._dead_letter_one,
            on_applied=self._update_index_gauge,
            on_upsert=lambda item_id: self.learned.reapply(item_id),
            consumer_options=client_kwargs(settings.bootstrap, settings.security),
            limits=self.processor.limits,
        )
        # online item learning (stream.learning): its own table and changelog batch (the
        # learn agent runs beside the recommend agent on the same loop)
        teaching = self.online if worker_settings.online_learning else _off(self.online)
        self.item_feedback = FeedbackMaker(topics.item_feedback, teaching)
        self.learn_changelog = ChangelogBatch()
        learned_table = TableView(app.Table("item_learned", **tables), self.learn_changelog)
        self._tables[learned_table.topic] = learned_table  # its acked offset persisted too
        self.learner = Learner(
            table=learned_table,
            changelog=self.learn_changelog,
            online=self.online,
            dead_letter=self._dlq_message,
        )
        self.learned = LearnedFollower(
            bootstrap=settings.bootstrap,
            topic=learned_table.topic,
            models=self.serving_models,
            metrics=self.metrics,
            consumer_options=client_kwargs(settings.bootstrap, settings.security),
        )
        self.inputs = {topics.user_events, topics.search_text}
        self.readiness = Readiness(
            rollout=self.rollout,
            catalog_caught_up=self.catalog.caught_up,
            learned_caught_up=self.learned.caught_up,
            assigned=self.assigned,
            inputs=self.inputs,
        )

    # -- the agent's work ---------------------------------------------------
    async def handle_batch(self, events: Sequence[Any]) -> asyncio.Future[None]:
        """Process one batch and start producing its outputs.

        Returns a future that completes once the broker acknowledged every output
        of the batch (acks=all); the caller acks the input events only then.
        """
        msgs = [_in_message(e) for e in events]
        self.metrics.child(self.metrics.batch_size, "recommend").observe(len(msgs))
        for e in events:
            m = e.message
            self.behind.processed(m.topic, m.partition, m.offset, m.timestamp)
        try:
            out = self.processor.process(msgs)
        finally:
            self.changelog.leave()
        feedback = self.feedback
        remember = self.ws.serve_user_recommendations
        for answer in out.recommendations:  # in the order the events were answered
            self._e2e(answer.trigger).observe(max(0.0, answer.emitted_ts - answer.event_ts))
            if remember:
                self.latest.remember(answer.user_id, answer.value)
            if feedback.enabled:
                shown = Shown(answer.emitted_ts, answer.items, answer.model_version, answer.bucket)
                feedback.observe(answer.user_id, answer.clicked, answer.event_ts, shown)
        # what the batch's clicks teach their items, each by the model that answered it
        # (swaps happen between batches, so those models still serve)
        learning = self.item_feedback.records(self.serving_models(), out.clicks)
        # Recommendations first: the producer sends in this order, and the batch's
        # dead letters can be large (up to max_message_bytes of raw each).
        recs_topic = self.settings.topics.recommendations
        answers = [m for m in out.messages if m.topic == recs_topic]
        others = [m for m in out.messages if m.topic != recs_topic]
        return await self.produce([*answers, *self.changelog.drain(), *learning, *others])

    async def handle_feedback(self, events: Sequence[Any]) -> asyncio.Future[None]:
        """The learn agent's batch: fold it into the learned table, produce the table's
        changelog records (and dead letters); the future completes when all are acked."""
        msgs = [_in_message(e) for e in events]
        self.metrics.child(self.metrics.batch_size, "learn").observe(len(msgs))
        for topic, n in Counter(m.topic for m in msgs).items():
            self.metrics.child(self.metrics.events_in, topic).inc(n)
        out = self.learner.process(msgs)
        return await self.produce([*self.learn_changelog.drain(), *out.messages])

    async def handle_catalog(self, events: Sequence[Any]) -> asyncio.Future[None]:
        """The forget agent's batch: each delete goes to its item's learner. Invalid
        item updates are dead-lettered by every worker's catalog follower, not here."""
        topic = self.settings.topics.item_feedback
        forgets = []
        for e in events:
            m = e.message
            try:  # as the follower reads it: a tombstone deletes the key's item
                update = self.catalog.decode(
                    InMessage(m.topic, m.partition, m.offset, m.key, m.value)
                )
            except SchemaError:
                continue
            if update.op == "delete":
                forgets.append(forget_record(topic, update))
        return await self.produce(forgets)

    def _dlq_message(self, msg: InMessage, reason: str, error: str) -> OutMessage:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        self.metrics.dlq.labels(topic=msg.topic, reason=reason).inc()
        record = dlq_record(msg, reason, error, self.processor.limits)
        return OutMessage(self.settings.topics.dlq, dlq_key(msg.key), encode(record))

    async def produce(self, messages: Sequence[OutMessage]) -> asyncio.Future[None]:
        """Hand every message to the producer; the future completes when all are acked."""
        t0 = time.perf_counter()
        producer = self.app.producer
        pending = [
            await producer.send(m.topic, m.key, m.value, m.partition, None, None) for m in messages
        ]

        async def delivered() -> None:
            acked = await asyncio.gather(*pending)
            self._persist_changelog_offsets(messages, acked)
            metrics = self.metrics
            metrics.child(metrics.stage_latency, "produce").observe(time.perf_counter() - t0)
            for topic, n in Counter(m.topic for m in messages).items():
                metrics.child(metrics.events_out, topic).inc(n)

        return asyncio.ensure_future(delivered())

    def _persist_changelog_offsets(
        self, messages: Sequence[OutMessage], acked: Sequence[Any]
    ) -> None:
        """Tell each table's store how far its changelog is acknowledged.

        A RocksDB store remembers it per partition and a restarted worker reads its
        changelog only from there on; Faust records it for the writes it sends, not
        for ours (stream.state), so without this every restart re-read every
        changelog record written since the previous restart.
        """
        highest: dict[tuple[str, int], int] = {}
        for m, meta in zip(messages, acked, strict=True):
            if m.topic in self._tables:
                slot = (m.topic, meta.partition)
                highest[slot] = max(highest.get(slot, -1), meta.offset)
        for (topic, partition), offset in highest.items():
            self._tables[topic].persisted(partition, offset)

    async def _dead_letter_one(self, msg: InMessage, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        record = dlq_record(msg, reason, error, self.processor.limits)
        self.metrics.events_in.labels(topic=msg.topic).inc()
        self.metrics.dlq.labels(topic=msg.topic, reason=reason).inc()
        await await_delivery(
            await self.produce(
                [OutMessage(self.settings.topics.dlq, dlq_key(msg.key), encode(record))]
            )
        )

    def _e2e(self, trigger: str) -> Any:
        child = self._e2e_children.get(trigger)
        if child is None:
            child = self._e2e_children[trigger] = self.metrics.e2e_latency.labels(trigger=trigger)
        return child

    def serving_models(self) -> list[Recommender]:
        """The models serving now: the control's, and the canary's when it serves."""
        out: list[Recommender] = []
        for holder in self.rollout.holders:
            if holder.current is not None and all(m is not holder.current for m in out):
                out.append(holder.current)
        return out

    def count_skipped(self, tp: Any, first: int, resume: int) -> None:
        """Input offsets ``first..resume-1`` no longer existed (``stream.consumer``)."""
        self.metrics.consumer_skipped.labels(topic=tp.topic, partition=str(tp.partition)).inc(
            resume - first
        )

    def _update_index_gauge(self) -> None:
        current = self.rollout.control.current
        if current is not None:
            self.metrics.index_items.set(current.n_items)

    # -- partitions -----------------------------------------------------------
    def assigned(self) -> list[Any]:
        try:
            return sorted(self.app.consumer.assignment())
        except Exception:  # consumer not started yet
            return []

    async def maintain_indexes(self) -> None:
        """Compact each serving model's tombstoned HNSW index when it asks for it.

        In a thread: a rebuild of a large index takes seconds, and on the loop it
        would stop heartbeats (past the session timeout the group evicts this
        worker while it keeps writing) and every batch. The model keeps serving
        from its old index meanwhile and swaps between two batches.
        """
        for holder in self.rollout.holders:
            current = holder.current
            if current is None:
                continue
            t0 = time.perf_counter()
            if await asyncio.to_thread(current.maintain):
                log.info("%s index compacted in %.2f s", holder.bucket, time.perf_counter() - t0)

    async def update_lag(self) -> None:
        """Set ``recstream_consumer_lag`` (high watermark − committed offset) and
        ``recstream_consumer_lag_seconds`` (see :class:`BehindClock`) per partition."""
        consumer = cast(AtLeastOnceConsumer, self.app.consumer)  # see create_app
        now = time.time()
        for tp in self.assigned():
            if tp.topic not in self.inputs:
                continue
            # Exported at 0 from the start, so the first skip is an increase Prometheus sees.
            self.metrics.child(self.metrics.consumer_skipped, tp.topic, str(tp.partition))
            high = consumer.highwater(tp)
            if high is None:  # nothing fetched from it yet
                continue
            labels = {"topic": tp.topic, "partition": str(tp.partition)}
            self.metrics.consumer_lag.labels(**labels).set(high - consumer.committed_position(tp))
            age = self.behind.age(tp.topic, tp.partition, high, now)
            if age is not None:
                self.metrics.consumer_lag_seconds.labels(**labels).set(age)


class BehindClock:
    """How far behind a partition's processing is, in seconds: the age of its oldest
    record not processed yet (0 when every record up to the high watermark was).

    The worker has not fetched that record's timestamp, so the age is bounded from
    above by two things it knows: the broker timestamp of the last record it processed
    (every later record is younger) and the last time it saw the partition caught up
    (every record it has not processed arrived after that). Offsets alone cannot say
    this: a lag of 2,000 records is 2 s at 1,000 ev/s or an hour on a quiet partition,
    and committed offsets trail processing by the commit interval anyway.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[int, float]] = {}  # offset, record ts (s)
        self._caught_up_at: dict[tuple[str, int], float] = {}

    def processed(self, topic: str, partition: int, offset: int, ts: float | None) -> None:
        key = (topic, partition)
        last = self._last.get(key)
        if last is None or offset > last[0]:
            self._last[key] = (offset, ts if ts is not None else 0.0)

    def age(self, topic: str, partition: int, high: int, now: float) -> float | None:
        """Seconds behind at ``now`` given the high watermark; None: not known yet."""
        key = (topic, partition)
        last = self._last.get(key)
        if last is not None and last[0] + 1 >= high:
            self._caught_up_at[key] = now
            return 0.0
        since = max(last[1] if last else 0.0, self._caught_up_at.get(key, 0.0))
        return max(0.0, now - since) if since > 0 else None


async def await_delivery(fut: asyncio.Future[None]) -> None:
    await fut


def _off(online: OnlineSettings) -> OnlineSettings:
    return online.model_copy(update={"enabled": False})


def _in_message(e: Any) -> InMessage:
    m = e.message
    return InMessage(m.topic, m.partition, m.offset, m.key, m.value, context=e)


def import_loader(spec: str) -> Loader:
    """Resolve a ``"module:function"`` loader setting (``RECSTREAM_WORKER_LOADER``)."""
    import importlib

    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"loader {spec!r} not importable ({exc}); use 'module:function'") from exc
    if not callable(fn):
        raise ConfigError(f"loader {spec!r} is not callable")
    return cast(Loader, fn)


def default_loader(settings: InferenceSettings) -> Loader:
    """The serving core over a bundle directory, with ``settings``."""
    from inference.recommender import recommender_loader

    return recommender_loader(settings)


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
    inference_settings: InferenceSettings | None = None,
) -> faust.App:
    """Build the worker's Faust app (nothing connects until the worker starts).

    The edge of the worker: every settings object not passed in is built here, once,
    from the environment, and handed down. ``loader`` turns a bundle directory into
    a :class:`~inference.types.Recommender`; by default the serving core with
    ``inference_settings``, or the ``RECSTREAM_WORKER_LOADER`` function if set.
    """
    settings = settings or Settings()
    ws = worker_settings or WorkerSettings()
    if loader is None:
        loader = (
            import_loader(ws.loader)
            if ws.loader
            else default_loader(inference_settings or InferenceSettings())
        )
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
        # Faust's own views serve table contents (every user's history and queries), the
        # cluster layout, sensor stats: off. Only stream.web's documented endpoints remain.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        topic_partitions=ws.partitions,
        topic_replication_factor=settings.topic_policy.replication_factor,
        producer_acks=-1,
        # Faust's default, pinned: dead letters are bounded below it (dlq_value_bound).
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
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
        # Faust would log whatever reaches stderr one write() per record (a traceback
        # one token per line); uncaught exceptions are logged whole instead
        # (recstream.logs.log_uncaught_exceptions).
        worker_redirect_stdouts=False,
        broker_credentials=faust_credentials(settings),
    )
    online = (inference_settings or InferenceSettings()).online
    worker = Worker(app, settings, ws, loader, online)
    # Never commits past an unanswered input; counts offsets gone before they were read.
    install_consumer(app, on_skip=worker.count_skipped)
    app.recstream = worker  # type: ignore[attr-defined]
    topics = settings.topics
    inputs = app.topic(
        topics.user_events,
        topics.search_text,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def serve(
        stream: faust.StreamT[bytes],
        agent: str,
        handle: Callable[[Sequence[Any]], Awaitable[asyncio.Future[None]]],
    ) -> None:
        """One agent's loop: micro-batches, ``handle`` each, ack a batch's offsets once
        its outputs are delivered (at-least-once)."""
        acks = AckPipeline(stream, depth=ws.max_inflight_batches)
        batches = take_ready(
            stream,
            ws.batch_max_size,
            ws.batch_max_wait_s,
            auto_ack=False,
            behind=first_older_than(ws.batch_behind_s),
            catch_up=ws.batch_catch_up_s,
        )
        try:
            async for events in batches:
                delivered = await handle(events)
                await acks.add(events, delivered)
        except Exception as exc:
            # Bad input never gets here (it is dead-lettered): this is a bug or a
            # delivery failure. A restarted agent would leave this batch unacked
            # forever, blocking commits, while /readyz kept saying ready; so the
            # whole worker stops (non-zero exit, supervisor restarts it) and its
            # uncommitted events are consumed again.
            log.critical("%s agent failed; stopping the worker", agent, exc_info=exc)
            worker.readiness.failed = True
            raise

    @app.agent(inputs, name="recommend", concurrency=1)
    async def recommend(stream: faust.StreamT[bytes]) -> None:
        await worker.rollout.control.loaded.wait()
        # Nothing is answered from a catalog still being replayed: the bundle may
        # still hold items deleted since (readiness says catalog_caught_up: false).
        if not worker.catalog.caught_up.is_set():
            log.info("waiting for the catalog (%s) to catch up", settings.topics.item_updates)
            await worker.catalog.caught_up.wait()
        await serve(stream, "recommend", worker.handle_batch)

    feedback_topic = app.topic(topics.item_feedback, key_serializer="raw", value_serializer="raw")

    @app.agent(feedback_topic, name="learn", concurrency=1)
    async def learn(stream: faust.StreamT[bytes]) -> None:
        # Folds what clicks teach items into the learned table; its outputs gate its
        # input offsets, and a failure stops the worker (as recommend).
        try:
            await serve(stream, "learn", worker.handle_feedback)
        finally:
            worker.learn_changelog.leave()

    catalog_topic = app.topic(topics.item_updates, key_serializer="raw", value_serializer="raw")

    @app.agent(catalog_topic, name="forget", concurrency=1)
    async def forget(stream: faust.StreamT[bytes]) -> None:
        # Forwards catalog deletes to the deleted item's learner (item-feedback is keyed
        # by item): the learned state of a deleted item goes with it.
        await serve(stream, "forget", worker.handle_catalog)

    async def restarting(run: Callable[[], Awaitable[None]], what: str) -> None:
        # A follower owns a plain consumer: if it fails (broker gone, auth), start over
        # from the beginning of its topic (idempotent) rather than go stale.
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in 2 s", what)
                await asyncio.sleep(2.0)

    @app.task
    async def follow_learned() -> None:
        # Applies every learned item state to the live model.
        await restarting(worker.learned.run, "learned-item follower")

    @app.task
    async def load_model() -> None:
        await worker.rollout.maybe_reload()

    @app.timer(ws.reload_interval_s)
    async def reload_model() -> None:
        await worker.rollout.maybe_reload()

    @app.task
    async def follow_catalog() -> None:
        await restarting(worker.catalog.run, "catalog follower")

    @app.timer(5.0)
    async def consumer_lag() -> None:
        await worker.update_lag()

    @app.timer(30.0)
    async def maintain_index() -> None:
        await worker.maintain_indexes()

    register_views(
        app,
        metrics=worker.metrics,
        readiness=worker.readiness,
        trending=worker.trending,
        latest=worker.latest if ws.serve_user_recommendations else None,
    )
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
