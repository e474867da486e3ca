"""``recstream worker``: run one streaming worker (the tools around it are ``tools.cli``).

Heavy imports (faust, aiokafka) happen inside the command so ``recstream --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(worker)


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
    loglevel: Annotated[str, typer.Option(help="Faust worker log level.")] = "warning",
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
    from stream.app import create_app

    run_worker(create_app(worker_settings=ws), loglevel)


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


def run_worker(faust_app: object, loglevel: str = "warning") -> None:
    """Run a Faust worker for ``faust_app`` until SIGINT/SIGTERM.

    A worker that stopped because Faust would have skipped input records
    (``stream.consumer.RecordsSkipped``) restarts itself in place (same command,
    same pid): it re-reads from the last commit, in order, which is what a
    supervisor restart would do, without waiting for one.
    """
    import os
    import sys

    from faust import Worker

    from stream import consumer

    try:
        Worker(faust_app, loglevel=loglevel).execute_from_commandline()  # type: ignore[arg-type]
    finally:
        restarts = int(os.environ.get("RECSTREAM_WORKER_SELF_RESTARTS", "0"))
        if consumer.skipped_records() and restarts < MAX_SELF_RESTARTS:
            os.environ["RECSTREAM_WORKER_SELF_RESTARTS"] = str(restarts + 1)
            sys.stderr.write(f"recstream worker: restarting in place ({restarts + 1})\n")
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
