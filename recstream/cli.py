"""The ``recstream`` command line.

Each package contributes its commands through ``<package>.cli.register(app)``;
those modules import heavy libraries (torch, faust) inside the commands, so
``recstream --help`` stays fast and works without the ``train`` extra.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from recstream import __version__
from recstream.kafka_cli import kafka_app
from recstream.logs import configure_logging
from recstream.malloc import reexec_with_tcmalloc, training_command

app = typer.Typer(
    name="recstream",
    help="Real-time, open-ended streaming recommender (Kafka + Faust + ONNX + FAISS).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(kafka_app, name="kafka")

_PLUGIN_MODULES = ("training.cli", "stream.cli", "tools.cli", "inference.cli")


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    configure_logging(log_level)


@app.command()
def schema(
    out: Annotated[
        Path | None,
        typer.Option(help="Write one <topic>.schema.json per topic into this directory."),
    ] = None,
) -> None:
    """Print (or write) the JSON Schema of every topic's messages, for producers in any language."""
    from recstream.schemas import dump_json_schemas

    files = dump_json_schemas()
    if out is None:
        for name, text in files.items():
            typer.echo(f"# {name}\n{text}")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    typer.echo(f"wrote {len(files)} schemas to {out}")


def _register_plugins() -> None:
    for name in _PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that package has no commands (yet)
                continue
            raise
        module.register(app)


_register_plugins()


def main() -> None:
    if training_command(sys.argv[1:]):  # torch trains ~1.8x faster under tcmalloc
        reexec_with_tcmalloc([sys.executable, "-m", "recstream", *sys.argv[1:]])
    app(prog_name="recstream")
