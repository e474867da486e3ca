"""``recstream kafka start|stop|status``: the project's own local Apache Kafka."""

from __future__ import annotations

import typer

kafka_app = typer.Typer(
    help="Run a real single-node Apache Kafka (KRaft) on 127.0.0.1 from Maven jars.",
    no_args_is_help=True,
)
