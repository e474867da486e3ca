"""``recstream kafka start|stop|status``: the project's own local Apache Kafka.

Topics are made by ``recstream topics`` (``stream.topics``), for any brokers.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from recstream.errors import RecstreamError
from recstream.settings import LocalKafkaSettings, Settings

kafka_app = typer.Typer(
    help=(
        "Run a real single-node Apache Kafka (KRaft) on 127.0.0.1 from Maven jars: no Docker.\n\n"
        "Jars are cached under RECSTREAM_CACHE_DIR, data and logs live under "
        "RECSTREAM_STATE_DIR/kafka/<port>. Needs Java 17+ and Maven on PATH."
    ),
    no_args_is_help=True,
)
console = Console(stderr=True)

PortOpt = Annotated[
    int | None, typer.Option(help="Broker port (default RECSTREAM_LOCAL_KAFKA__PORT or 9092).")
]


def _broker(port: int | None):  # -> LocalKafka, imported lazily for a fast --help
    from recstream.localkafka import LocalKafka

    settings = Settings()
    cfg = settings.local_kafka
    if port is not None:
        cfg = LocalKafkaSettings(**{**cfg.model_dump(), "port": port, "controller_port": port + 1})
    return LocalKafka(cfg, settings.state_dir / "kafka" / str(cfg.port), settings.cache_dir)


def _fail(exc: RecstreamError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


@kafka_app.command()
def start(port: PortOpt = None) -> None:
    """Start the broker (idempotent) and wait until it answers a metadata request."""
    broker = _broker(port)
    if broker.pid() is not None:
        console.print(f"Kafka is already running at {broker.bootstrap} (pid {broker.pid()})")
        typer.echo(broker.bootstrap)
        return
    try:
        with console.status(f"starting Apache Kafka on {broker.bootstrap} ..."):
            status = broker.start()
    except RecstreamError as exc:
        raise _fail(exc) from exc
    console.print(
        f"Kafka is up at [bold]{status.bootstrap}[/bold] (pid {status.pid}); "
        f"logs: {broker.log_file}"
    )
    typer.echo(status.bootstrap)


@kafka_app.command()
def stop(port: PortOpt = None) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after a timeout)."""
    broker = _broker(port)
    console.print("stopped" if broker.stop() else f"no broker running for {broker.home}")


@kafka_app.command()
def status(port: PortOpt = None) -> None:
    """Say whether the broker runs and answers; exit code 1 when it does not."""
    from recstream.kafka_admin import wait_for_broker

    broker = _broker(port)
    st = broker.status()
    if not st.running:
        console.print(f"not running ({broker.home})")
        raise typer.Exit(code=1)
    try:
        n = asyncio.run(wait_for_broker(st.bootstrap, timeout_s=5))
    except RecstreamError as exc:
        raise _fail(exc) from exc
    console.print(f"running at {st.bootstrap} (pid {st.pid}), {n} broker(s) in metadata")
