"""``recstream train`` (registered by training/cli.py); ``recstream evaluate`` is in tools/cli.py.

Heavy imports (torch, transformers) happen inside the commands so
``recstream --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from recstream.errors import RecstreamError


class TextModeOpt(StrEnum):
    frozen = "frozen"
    full = "full"
    lora = "lora"


class SplitOpt(StrEnum):
    loo = "loo"
    cold = "cold"
    temporal = "temporal"


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def print_metrics_table(title: str, metrics: dict[str, Any], keys: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in _flat(metrics).items():
        if any(s in k for s in keys):
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)


SHOWN_METRICS = (
    "ndcg@",
    "recall@",
    "mrr@10",
    "coverage",
    "precision@",
    "hit@",
    "hub_",
    "cos_vs",
    "_ms",
    "_s",
    "n_cases",
)


def train(
    dataset: Annotated[
        str, typer.Option(help="ml-100k, ml-1m, an event log (JSONL) or a RecBole dir.")
    ] = "ml-100k",
    out: Annotated[
        Path, typer.Option(help="Bundles directory; the bundle goes to OUT/<version>.")
    ] = Path("bundles"),
    quick: Annotated[
        bool, typer.Option(help="Fast preset (~1-3 min on ml-100k, 2 cores).")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(help="Max sequence-encoder epochs (early stopping).")
    ] = None,
    text_mode: Annotated[
        TextModeOpt | None,
        typer.Option(
            help="Text tower: frozen, full fine-tune (default; --quick: frozen), or LoRA."
        ),
    ] = None,
    text_steps: Annotated[
        int | None, typer.Option(help="Text-tower tuning steps (full/lora).")
    ] = None,
    split: Annotated[
        SplitOpt,
        typer.Option(
            help="loo; cold (10% of items never trained); or temporal: train only on what "
            "happened before T, the time of the --split-at quantile interaction (items and "
            "users first seen at or after T are new; replay them with `recstream evaluate "
            "--protocol stream`)."
        ),
    ] = SplitOpt.loo,
    split_at: Annotated[
        float,
        typer.Option(
            help="--split temporal: the quantile of interactions, in time order, whose time is T.",
        ),
    ] = 0.7,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Wall-clock budget of the sequence stage, minutes: an epoch starts only "
            "if one more of the last epoch's length fits. Default 17."
        ),
    ] = None,
    window_stride: Annotated[
        int | None,
        typer.Option(
            help="Training windows step back this many items (1..max_len; smaller = more "
            "context per target, more windows). Default: 5, with 100-item windows, for "
            "up to 300k training interactions; else 10 with the model's 50."
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(
            help="Sequence-encoder dropout, 0 <= p < 1, on any data size. Default: 0.2, "
            "or 0.05 above 300k training interactions (where the time budget, not "
            "overfitting, ends training)."
        ),
    ] = None,
    ema_epochs: Annotated[
        float | None,
        typer.Option(
            help="Validate and export a moving average of the sequence weights over about "
            "this many epochs (0 = the raw weights). Default: the config's."
        ),
    ] = None,
    history_mask: Annotated[
        bool,
        typer.Option(
            help="Leave the items a user already had out of each training softmax, as "
            "evaluation and serving leave them out of the ranking (--no-history-mask: "
            "keep them as negatives, the earlier objective)."
        ),
    ] = True,
    delta_bound: Annotated[
        float | None,
        typer.Option(
            help="Cap on each trained item's learned delta from its text-only vector, as a "
            "share of that vector's norm (cos(item, text-only) >= sqrt(1 - bound^2)); "
            "0 = unbounded. Default: the config's."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, init and shuffling.")] = 0,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch intra-op threads (default 2, the machines' cores). On a machine "
            "shared with other work, 1 can be faster: a parallel region waits for its "
            "slowest thread, and an oversubscribed core deschedules it."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train the text tower and sequence encoder, write a verified bundle, print metrics."""
    from recstream.settings import Settings
    from training.train import TrainConfig, train_bundle

    cache_dir = Settings().cache_dir  # a frozen tower's item vectors are cached here
    cfg = TrainConfig.quick_preset() if quick else TrainConfig()
    text = cfg.text
    if text_mode is not None:
        text = dataclasses.replace(text, mode=text_mode.value)
    if text_steps is not None:
        text = dataclasses.replace(text, steps=text_steps)
    seq = dataclasses.replace(cfg.seq, seed=seed, mask_history=history_mask)
    if epochs:
        seq = dataclasses.replace(seq, epochs=epochs)
    if max_minutes:
        seq = dataclasses.replace(seq, max_minutes=max_minutes)
    if window_stride is not None:
        if not 1 <= window_stride <= cfg.model.max_len:
            raise typer.BadParameter(
                f"must be in 1..{cfg.model.max_len}", param_hint="--window-stride"
            )
        seq = dataclasses.replace(seq, window_stride=window_stride)
    model = cfg.model
    if dropout is not None:
        try:  # SequenceModelConfig checks the range; the refusal names the flag
            model = dataclasses.replace(model, dropout=dropout)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dropout") from exc
        seq = dataclasses.replace(seq, large_data_dropout=None)
    if ema_epochs is not None:
        if ema_epochs < 0:
            raise typer.BadParameter("must be >= 0 (0 = off)", param_hint="--ema-epochs")
        seq = dataclasses.replace(seq, ema_epochs=ema_epochs or None)
    if not 0.0 < split_at < 1.0:
        raise typer.BadParameter("must be strictly between 0 and 1", param_hint="--split-at")
    if delta_bound is not None:
        if delta_bound < 0:
            raise typer.BadParameter("must be >= 0 (0 = unbounded)", param_hint="--delta-bound")
        seq = dataclasses.replace(seq, delta_bound=delta_bound or None)
    text = dataclasses.replace(text, seed=seed)
    if threads is not None and threads < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--threads")
    cfg = dataclasses.replace(
        cfg,
        text=text,
        seq=seq,
        model=model,
        split=split.value,
        split_at=split_at,
        seed=seed,
        threads=threads or cfg.threads,
    )
    try:
        path = train_bundle(dataset, out, cfg, progress=not as_json, cache_dir=cache_dir)
    except RecstreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    manifest = json.loads((path / "manifest.json").read_text())
    if as_json:
        typer.echo(json.dumps({"bundle": str(path), "metrics": manifest["metrics"]}, indent=2))
        return
    print_metrics_table(
        f"offline metrics ({manifest['dataset']}, text tower {cfg.text.mode})",
        manifest["metrics"],
        SHOWN_METRICS,
    )
    typer.echo(f"bundle: {path}")


def register(app: typer.Typer) -> None:
    # ``recstream evaluate`` is tools.cli's: its stream protocol drives the worker's code
    app.command()(train)
