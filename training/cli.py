"""Commands of the training package: ``data`` (training/data/cli.py) and, once it
exists, ``train`` (training/models_cli.py; ``evaluate`` is tools/cli.py's). Two modules so the two
halves can change without touching each other."""

from __future__ import annotations

import importlib

import typer


def register(app: typer.Typer) -> None:
    from training.data.cli import register as register_data

    register_data(app)
    try:
        models_cli = importlib.import_module("training.models_cli")
    except ModuleNotFoundError as exc:
        if exc.name != "training.models_cli":
            raise
    else:
        models_cli.register(app)
