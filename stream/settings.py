"""Worker settings (environment prefix ``RECSTREAM_WORKER_``).

Shared things (bootstrap servers, topic names, state and bundle directories)
come from :class:`recstream.settings.Settings` (prefix ``RECSTREAM_``); this
class holds only what the streaming worker itself decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """How one streaming worker batches, stores state, serves HTTP and reloads models."""

    model_config = SettingsConfigDict(env_prefix="RECSTREAM_WORKER_", frozen=True, extra="ignore")

    # Faust application id = Kafka consumer group and prefix of changelog topics.
    app_id: str = "recstream"
    # The event loop of the worker's threads: uvloop (libuv; the asyncio machinery was a
    # real share of a worker's CPU, bench/RESULTS.md issue 24) or the standard library's.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Micro-batching: a batch closes when it holds this many events ...
    batch_max_size: int = Field(default=64, ge=1, le=10_000)
    # ... or this many seconds after its first event arrived (0: take what is queued).
    batch_max_wait_s: float = Field(default=0.002, ge=0, le=5.0)
    # Behind (a batch's first event older than batch_behind_s, more than one event in
    # it): wait up to batch_catch_up_s more for the batch to fill, since the backlog is
    # already fetched; bigger batches are what lets a worker catch up (0: off).
    batch_behind_s: float = Field(default=0.05, gt=0, le=60.0)
    batch_catch_up_s: float = Field(default=0.03, ge=0, le=5.0)
    # Batches whose outputs may await broker acks while the next batch is processed.
    max_inflight_batches: int = Field(default=8, ge=1, le=1000)
    # Table store: rocksdb:// is durable across restarts; memory:// for tests.
    store: str = "rocksdb://"
    # RocksDB memory per table partition (3 tables x the worker's partitions): Faust's
    # defaults (64 MB memtables x 3 and a 2 GiB block cache, each per partition) let a
    # worker's RSS climb by hundreds of MB before it levels off. Bounded here:
    # memtables write_buffer_mb x max_write_buffers, plus the block cache.
    rocksdb_write_buffer_mb: int = Field(default=4, ge=1, le=1024)
    rocksdb_max_write_buffers: int = Field(default=2, ge=2, le=16)
    rocksdb_block_cache_mb: int = Field(default=16, ge=1, le=65_536)
    # Directory for the rocksdb store and faust's data (default <state_dir>/worker/<app_id>).
    data_dir: Path | None = None
    # A stop (SIGTERM, SIGINT) that takes longer ends the process: Faust's shutdown waits
    # for a broker that is gone forever. Keep it below the supervisor's grace period
    # (Kubernetes 60 s, compose 30 s).
    stop_timeout_s: float = Field(default=15.0, ge=1.0, le=600.0)
    # GET /users/{id}/recommendations: a user's latest recommendation, whose "because"
    # names items they consumed. Anyone who reaches the web port can read any user's:
    # keep the port private (README, "Who can read what") or turn this off.
    serve_user_recommendations: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # Most recent items handed to the sequence encoder, which reads the last max_length of
    # them (the bundle's manifest: 100 for small training sets, else 50), so keep this >= it.
    sequence_length: int = Field(default=100, ge=1, le=1000)
    # Most recent consumed items never recommended again (>= sequence_length); the
    # whole window is rewritten to the changelog on every click, so keep it modest.
    exclude_window: int = Field(default=100, ge=1, le=10_000)
    top_k: int = Field(default=10, ge=1, le=1000)
    # A bundle version directory (fixed), or a bundles root to follow (hot reload):
    # default <state_dir>/bundles. See stream.model for how a root is followed.
    bundle: Path | None = None
    reload_interval_s: float = Field(default=5.0, gt=0)
    # "module:function" that loads a bundle directory into a Recommender, instead of
    # the serving core (tests and experiments); resolved once, when the app is built.
    loader: str | None = None
    # Partitions of changelog topics; must equal the input topics' partition count.
    partitions: int = Field(default=4, ge=1)
    # Trending window (seconds) for the windowed item-count table.
    trending_window_s: float = Field(default=3600.0, gt=0)
    # Model work disabled (forward an empty recommendation): measures the floor.
    passthrough: bool = False
    # A query older than this no longer steers recommendations (seconds).
    query_ttl_s: float = Field(default=1800.0, gt=0)
    # Canary (stream/buckets.py, stream/rollout.py): the share of users served by the
    # bundle the CANDIDATE pointer names, when there is one; the others get CURRENT's.
    canary_share: float = Field(default=0.1, ge=0.0, le=1.0)
    # Salt of the user -> bucket hash; changing it reshuffles who is in the canary.
    bucket_salt: str = Field(default="recstream", min_length=1)
    # Live feedback (stream/feedback.py): every click judged against the user's latest
    # earlier list. Off: nothing is remembered or counted (the cost baseline).
    feedback: bool = True
    # A hit is a click on one of the first feedback_k items (HR@k, MRR@k).
    feedback_k: int = Field(default=10, ge=1, le=1000)
    # Lists remembered per user: a click is judged against the newest one emitted
    # before it, which can be older than the last when events outrun answers.
    feedback_lists_per_user: int = Field(default=4, ge=1, le=100)
    # Users remembered (least recently answered forgotten first).
    feedback_max_users: int = Field(default=100_000, ge=1)
    # Online item learning (stream/learning.py): each answered click teaches its item
    # through item-feedback. Off (the default until its cost at 1,000 ev/s is measured,
    # bench/learning_lag.py): no feedback is produced; learned states already in the
    # table are still applied, and deletes still clear them.
    online_learning: bool = False

    def table_options(self) -> dict[str, int]:
        """Faust table ``options`` (passed to faust's RocksDBOptions; memory:// ignores them)."""
        mb = 1024 * 1024
        return {
            "write_buffer_size": self.rocksdb_write_buffer_mb * mb,
            "max_write_buffer_number": self.rocksdb_max_write_buffers,
            "block_cache_size": self.rocksdb_block_cache_mb * mb,
        }
