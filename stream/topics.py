"""Every Kafka topic a worker reads or writes, with the settings the deployment asks for.

One list, used by ``recstream topics`` (the compose service and the Kubernetes
Job run it), by every worker before it starts (``stream.cli``) and by the
tests, so what runs is what was tested:

- user-events, search-text (inputs, co-partitioned by user), recommendations and
  item-feedback (internal: what clicks teach items, keyed by item, co-partitioned
  with the ``item_learned`` table): ``RECSTREAM_WORKER_PARTITIONS`` partitions (the
  count of the inputs and of item-feedback is keyed), delete;
- item-updates (the catalog, read whole at start):
  ``TOPIC_POLICY__ITEM_UPDATES_PARTITIONS``, compact;
- recstream-dlq: ``TOPIC_POLICY__DLQ_PARTITIONS``, delete;
- ``<app_id>-<table>-changelog`` (Faust's names for table state):
  ``RECSTREAM_WORKER_PARTITIONS`` (keyed), compact;
- ``<app_id>-__assignor-__leader`` (Faust's group leader election): 1, delete.

All of them get ``RECSTREAM_TOPIC_POLICY__REPLICATION_FACTOR`` and
``__MIN_INSYNC_REPLICAS``. A delete on item-updates must outlive compaction:
its tombstone (a null value) is kept as long as a plain record
(``delete.retention.ms`` unbounded), or a restarted worker would serve the
deleted item again from its bundle.
"""

from __future__ import annotations

from recstream.settings import Settings
from recstream.topics import TopicAction, TopicSpec, reconcile
from stream.settings import WorkerSettings

__all__ = ["TABLES", "changelog_topic", "ensure_worker_topics", "leader_topic", "worker_topics"]

# The worker's Faust tables (stream.app); their changelogs are topics like any other.
TABLES = ("user_sequence", "user_interest", "trending", "item_learned")
FOREVER_MS = str(2**63 - 1)  # Kafka's Long.MAX_VALUE: "never"


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def leader_topic(app_id: str) -> str:
    """Faust's leader-assignor topic (one per consumer group)."""
    return f"{app_id}-__assignor-__leader"


def worker_topics(settings: Settings, ws: WorkerSettings) -> list[TopicSpec]:
    """The spec of every topic the workers of ``ws.app_id`` use."""
    policy = settings.topic_policy
    names = settings.topics

    def spec(name: str, partitions: int, cleanup: str, *, keyed: bool = False, **extra: str):
        configs = {
            "cleanup.policy": cleanup,
            "min.insync.replicas": str(policy.min_insync_replicas),
            **{k.replace("_", "."): v for k, v in extra.items()},
        }
        return TopicSpec(name, partitions, policy.replication_factor, configs, keyed=keyed)

    return [
        spec(names.user_events, ws.partitions, "delete", keyed=True),
        spec(names.search_text, ws.partitions, "delete", keyed=True),
        spec(names.recommendations, ws.partitions, "delete"),
        # what clicks teach items, keyed by item; the learned table is co-partitioned
        spec(names.item_feedback, ws.partitions, "delete", keyed=True),
        spec(
            names.item_updates,
            policy.item_updates_partitions,
            "compact",
            delete_retention_ms=FOREVER_MS,
        ),
        spec(names.dlq, policy.dlq_partitions, "delete"),
        *(
            spec(changelog_topic(ws.app_id, table), ws.partitions, "compact", keyed=True)
            for table in TABLES
        ),
        spec(leader_topic(ws.app_id), 1, "delete"),
    ]


async def ensure_worker_topics(
    settings: Settings, ws: WorkerSettings, *, apply: bool = True
) -> list[TopicAction]:
    """Create or align every topic of :func:`worker_topics` on the configured brokers."""
    return await reconcile(
        settings.bootstrap, worker_topics(settings, ws), security=settings.security, apply=apply
    )
