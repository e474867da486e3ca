"""``recstream worker``: run one streaming worker (the tools around it are ``tools.cli``).

Heavy imports (faust, aiokafka) happen inside the command so ``recstream --help``
stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recstream.settings import Settings

if TYPE_CHECKING:
    from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(topics)


def worker(
    bundle: Annotated[
        Path | None,
        typer.Option(help="Bundle version dir (fixed) or bundles root (followed, hot reload)."),
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port: /metrics /readyz ...")] = None,
    store: Annotated[str | None, typer.Option(help="Table store: rocksdb:// or memory://.")] = None,
    passthrough: Annotated[
        bool, typer.Option(help="Disable model work: forward empty recs (latency floor).")
    ] = False,
    loglevel: Annotated[
        str,
        typer.Option(
            help="Log level of recstream's own loggers; the libraries (Faust, aiokafka, "
            "faiss) stay at WARNING at least."
        ),
    ] = "warning",
) -> None:
    """Run one streaming worker (Faust) against the configured Kafka.

    Settings come from RECSTREAM_* (bootstrap, topics, bundle_dir) and
    RECSTREAM_WORKER_* (batching, store, web port, ...); options here override them.
    Several workers with the same RECSTREAM_WORKER_APP_ID share the partitions.
    """
    from stream.settings import WorkerSettings

    overrides: dict[str, object] = {}
    if bundle is not None:
        overrides["bundle"] = bundle
    if web_port is not None:
        overrides["web_port"] = web_port
    if store is not None:
        overrides["store"] = store
    if passthrough:
        overrides["passthrough"] = True
    ws = WorkerSettings().model_copy(update=overrides)
    use_event_loop(ws.event_loop)  # before anything makes a loop: Faust's threads use it too
    settings = Settings()
    _ensure_topics(settings, ws, apply=True)
    from stream.app import create_app

    run_worker(create_app(settings, ws), loglevel, ws.stop_timeout_s)


def topics(
    check: Annotated[
        bool, typer.Option(help="Change nothing; exit 1 if any topic is missing or differs.")
    ] = False,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the brokers.")] = 60.0,
) -> None:
    """Create or configure every topic the workers use, as the settings ask.

    Inputs, recommendations, the DLQ, item-updates (compacted), the tables'
    changelogs (compacted) and Faust's leader topic, each with
    RECSTREAM_TOPIC_POLICY__REPLICATION_FACTOR and __MIN_INSYNC_REPLICAS.
    Missing topics are created and configs aligned; a partition count that
    users' state is keyed on, or a replication factor below the one asked, is
    an error (exit 1) and left alone. Every worker does the same at start.
    """
    from stream.settings import WorkerSettings

    actions = _ensure_topics(Settings(), WorkerSettings(), apply=not check, wait_s=wait_s)
    for action in actions:
        typer.echo(action.describe())
    if check and any(a.action != "ok" for a in actions):
        raise typer.Exit(code=1)


def _ensure_topics(settings: Settings, ws: WorkerSettings, *, apply: bool, wait_s: float = 60.0):
    """Reconcile the topics (``stream.topics``); a clear error and exit 1 if it cannot."""
    import asyncio

    from recstream.errors import RecstreamError
    from recstream.kafka_admin import wait_for_broker
    from stream.topics import ensure_worker_topics

    async def run():
        await wait_for_broker(
            settings.bootstrap, timeout_s=wait_s, security=settings.security, quiet=False
        )
        return await ensure_worker_topics(settings, ws, apply=apply)

    try:
        return asyncio.run(run())
    except RecstreamError as exc:
        typer.echo(f"recstream: topics: {exc}", err=True)
        raise typer.Exit(code=1) from exc


def use_event_loop(kind: str) -> None:
    """Make new event loops (the worker's and its consumer thread's) ``kind`` loops.

    uvloop is a core dependency except on Windows, where it does not exist: there the
    worker says so and runs the standard library's loop."""
    import asyncio
    import logging

    if kind != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        logging.getLogger(__name__).warning(
            "RECSTREAM_WORKER_EVENT_LOOP=uvloop but uvloop is not installed: using asyncio's"
        )
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


MAX_SELF_RESTARTS = 10


def run_worker(faust_app: object, loglevel: str = "warning", stop_timeout_s: float = 15.0) -> None:
    """Run a Faust worker for ``faust_app`` until SIGINT/SIGTERM.

    ``loglevel`` is recstream's; the libraries (Faust, aiokafka, faiss) log at
    WARNING at least, and an uncaught exception is one record. A stop
    that takes longer than ``stop_timeout_s`` (Faust's consumer thread retrying a
    broker that is gone never returns) ends the process: nothing acknowledged is
    lost, uncommitted offsets are read again at the next start.

    A worker that stopped because Faust would have skipped input records
    (``stream.consumer.RecordsSkipped``) restarts itself in place (same command,
    same pid): it re-reads from the last commit, in order, which is what a
    supervisor restart would do, without waiting for one.
    """
    import os
    import sys

    import faust

    from recstream.logs import log_uncaught_exceptions, set_levels
    from stream import consumer

    deadline = StopDeadline(stop_timeout_s)

    class Worker(faust.Worker):
        def _on_sigterm(self) -> None:
            deadline.arm(signal.SIGTERM)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            deadline.arm(signal.SIGINT)
            super()._on_sigint()

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            set_levels(level)  # ours at ``level``, the libraries at WARNING at least

    log_uncaught_exceptions()
    try:
        Worker(faust_app, loglevel=loglevel).execute_from_commandline()  # type: ignore[arg-type]
    finally:
        restarts = int(os.environ.get("RECSTREAM_WORKER_SELF_RESTARTS", "0"))
        if consumer.skipped_records() and restarts < MAX_SELF_RESTARTS:
            os.environ["RECSTREAM_WORKER_SELF_RESTARTS"] = str(restarts + 1)
            sys.stderr.write(f"recstream worker: restarting in place ({restarts + 1})\n")
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class StopDeadline:
    """Ends the process when a requested stop takes longer than ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self, signum: int) -> None:
        if self._timer is None:  # the first signal counts
            self._timer = threading.Timer(self.seconds, self._expire, args=(signum,))
            self._timer.daemon = True
            self._timer.start()

    def _expire(self, signum: int) -> None:
        log.critical(
            "the worker did not stop within %.0f s of %s; exiting now (offsets not committed "
            "are read again at the next start)",
            self.seconds, signal.Signals(signum).name,
        )  # fmt: skip
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(128 + signum)
