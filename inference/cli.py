"""``recstream`` commands of the serving core (heavy imports inside the commands)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def _quiet_faiss() -> None:
    # faiss logs every CPU-feature probe at INFO; say nothing unless it fails.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _bundle_path(bundle: Path | None) -> Path:
    from inference.bundle import find_latest
    from recstream.settings import Settings

    if bundle is not None:
        return bundle
    root = Settings().bundles
    latest = find_latest(root)
    if latest is None:
        raise typer.BadParameter(
            f"no bundle under {root}: pass --bundle DIR", param_hint="--bundle"
        )
    return latest


def recommend(
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Bundle directory <bundle_dir>/<version> (default: newest in bundle_dir)."
        ),
    ] = None,
    history: Annotated[
        str, typer.Option(help="Comma-separated item ids the user consumed, oldest first.")
    ] = "",
    query: Annotated[str | None, typer.Option(help="What the user typed.")] = None,
    query_age: Annotated[float, typer.Option(help="Seconds since the query was typed.")] = 0.0,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items to return.")] = 10,
    int8: Annotated[
        bool,
        typer.Option(help="Use the int8 text encoder if the bundle has one (--no-int8: fp32)."),
    ] = True,
) -> None:
    """Recommend for one user from a bundle: history and/or query in, ranked items out."""
    from rich.console import Console
    from rich.table import Table

    from inference.errors import BundleError
    from inference.recommender import OnnxRecommender
    from inference.settings import InferenceSettings
    from inference.types import Request

    _quiet_faiss()
    path = _bundle_path(bundle)
    try:
        rec = OnnxRecommender.load(path, InferenceSettings(prefer_int8=int8))
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    hist = [h.strip() for h in history.split(",") if h.strip()]
    unknown = [h for h in hist if rec.index.row(h) is None]
    res = rec.recommend(Request("cli", history=hist, query=query, query_age_s=query_age, k=k))
    table = Table(title=f"bundle {rec.model_version}: {len(res.items)} items")
    for col in ("#", "item_id", "title", "score", "sources", "because"):
        table.add_column(col)
    for rank, it in enumerate(res.items, 1):
        because = it.because if it.because == query else rec.title(it.because or "") or it.because
        table.add_row(
            str(rank),
            it.item_id,
            rec.title(it.item_id) or "",
            f"{it.score:.4f}",
            ",".join(it.sources),
            because or "",
        )
    console = Console()
    console.print(table)
    if unknown:
        console.print(f"[yellow]ignored unknown history items: {', '.join(unknown)}")
    ms = {stage: f"{sec * 1e3:.2f} ms" for stage, sec in res.timings.items()}
    console.print(f"timings: {ms}")


def verify_bundle(path: Annotated[Path, typer.Argument(help="Bundle directory to check.")]) -> None:
    """Check every sha256 of a bundle; exit 2 with the reason if it is refused."""
    from inference.bundle import verify_bundle as verify
    from inference.errors import BundleError

    try:
        manifest = verify(path)
    except BundleError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"ok: {manifest.version} ({len(manifest.files)} files verified, dim {manifest.dim})")


def tiny_bundle(
    out: Annotated[Path, typer.Argument(help="Directory to write <out>/<version> into.")],
    version: Annotated[str, typer.Option(help="Bundle version name.")] = "tiny-1",
    items: Annotated[int, typer.Option(min=8, help="Catalog size.")] = 200,
    dim: Annotated[int, typer.Option(min=4, help="Vector dimension.")] = 32,
    index: Annotated[str, typer.Option(help="flat or hnsw.")] = "flat",
) -> None:
    """Write a small synthetic but real bundle (ONNX, tokenizer, FAISS) for demos and tests."""
    from inference.testing import build_tiny_bundle

    _quiet_faiss()
    if index not in ("flat", "hnsw"):
        raise typer.BadParameter("flat or hnsw", param_hint="--index")
    path = build_tiny_bundle(out, n_items=items, dim=dim, version=version, index_kind=index)  # type: ignore[arg-type]
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend)
    app.command("verify-bundle")(verify_bundle)
    app.command("tiny-bundle")(tiny_bundle)
