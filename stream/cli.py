"""``recstream worker|replay|tail|demo``: run and watch the streaming recommender.

Heavy imports (faust, aiokafka, training) happen inside the commands so
``recstream --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(replay)
    app.command()(tail)
    app.command()(demo)


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
    from stream.app import create_app
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
    run_worker(create_app(worker_settings=ws), loglevel)


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


def replay(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, or a path to an event log.")] = (
        "ml-100k"
    ),
    rate: Annotated[float, typer.Option(help="Events per second.")] = 100.0,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    query_fraction: Annotated[float, typer.Option(help="Share of search-text events.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for the synthesized queries.")] = 0,
) -> None:
    """Publish a dataset's interactions in time order as live events (ts = now).

    About ``query_fraction`` of the events are synthesized search queries built
    from the genres/decade of the item the user clicks next.
    """
    import asyncio

    from recstream.settings import Settings
    from stream.replay import dataset_events, publish

    settings = Settings()
    events = dataset_events(dataset, query_fraction=query_fraction, seed=seed)
    sent = asyncio.run(
        publish(events, settings=settings, rate=rate, limit=limit, duration=duration)
    )
    typer.echo(f"published {sent} events to {settings.bootstrap}")


def tail(
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle for titles (default: the served one).")
    ] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = False,
    limit: Annotated[int | None, typer.Option(help="Exit after this many messages.")] = None,
) -> None:
    """Print recommendations as they are emitted, with item titles and latency."""
    import asyncio

    from recstream.settings import Settings
    from stream.tail import Titles, follow

    settings = Settings()
    titles = Titles.from_bundle(bundle or settings.bundles)
    asyncio.run(follow(settings, titles, from_beginning=from_beginning, limit=limit))


def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    rate: Annotated[float, typer.Option(help="Replayed events per second.")] = 50.0,
    web_port: Annotated[int, typer.Option(help="The demo worker's HTTP port.")] = 6066,
) -> None:
    """The whole system on this machine, one command.

    Starts a local Apache Kafka, fetches MovieLens-100K, trains a quick bundle
    (cached under the state dir), starts a worker, replays events plus a few
    text-only new users, and shows live recommendations with titles and a
    latency summary. Ctrl-C stops everything it started.
    """
    from stream.demo import run_demo

    run_demo(duration=duration, rate=rate, web_port=web_port)
