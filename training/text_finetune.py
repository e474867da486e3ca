"""Contrastive fine-tuning of the text tower (full or LoRA), M6-Rec style.

Two kinds of pairs, half a batch each, in-batch negatives (InfoNCE):

* behaviour pairs — the text of an item and the text of the item the same user
  chose next (training sequences only), so text alone carries taste signal and a
  cold item's text vector lands near what its audience watches;
* attribute queries — short requests written from an item's genres and decade
  ("comedy movies from the 90s") against item texts; every in-batch item that
  satisfies the request counts as a positive (multi-positive InfoNCE).

The query phrasings here are deliberately not the evaluation's
(training/queries.py) so the text-query metric is not measured on its own
training templates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from training.data.types import Catalog
from training.lora import apply_lora, merge_lora
from training.text_tower import TextEncoder
from training.tokenization import encode_batch

log = logging.getLogger(__name__)

TextMode = Literal["frozen", "full", "lora"]

_TEMPLATES_ONE = (
    "{g}",
    "{g} movies",
    "some {g} from the {decade}",
    "{g} made in the {decade}",
    "recommend me {g}",
)
_TEMPLATES_TWO = ("{g} and {g2}", "{g} {g2} from the {decade}")
_WORDS = {"Sci-Fi": "sci-fi", "Children's": "kids", "Film-Noir": "noir"}


@dataclass(frozen=True)
class TextTuneConfig:
    mode: TextMode = "full"  # best of the three on ml-100k, weak evidence (bench/RESULTS.md)
    steps: int = 80  # optimizer steps (each: `batch_size` behaviour + query pairs)
    batch_size: int = 24
    lr_full: float = 2e-5
    lr_lora: float = 5e-4
    lora_rank: int = 8
    lora_alpha: float = 16.0
    temperature: float = 0.05
    max_length: int = 32  # tokens; titles + year + genres fit
    max_minutes: float = 5.0
    seed: int = 0


@dataclass
class TextTuneReport:
    mode: str
    trainable_params: int
    total_params: int
    steps: int
    seconds: float
    final_loss: float


def _query(
    catalog: Catalog, row: int, rng: np.random.Generator
) -> tuple[str, frozenset[str], int | None]:
    genres = catalog.genres(row)
    year = catalog.year(row)
    decade = (year // 10 * 10) if year else None
    two = len(genres) >= 2 and rng.random() < 0.3
    picked = list(rng.choice(genres, size=2 if two else 1, replace=False))
    words = [_WORDS.get(g, g.lower()) for g in picked]
    templates: tuple[str, ...] = _TEMPLATES_TWO if two else _TEMPLATES_ONE
    if decade is None:
        templates = tuple(t for t in templates if "{decade}" not in t) or ("{g}",)
    template = str(rng.choice(templates))
    text = template.format(g=words[0], g2=words[-1], decade=f"{decade}s")
    return text, frozenset(picked), (decade if "{decade}" in template else None)


def _matches(catalog: Catalog, row: int, genres: frozenset[str], decade: int | None) -> bool:
    if not genres <= set(catalog.genres(row)):
        return False
    year = catalog.year(row)
    return decade is None or (year is not None and year // 10 * 10 == decade)


def _info_nce(a: torch.Tensor, b: torch.Tensor, pos: torch.Tensor, temp: float) -> torch.Tensor:
    """Multi-positive InfoNCE: -log sum_{j in pos(i)} softmax(a_i . b / temp)_j."""
    logits = a @ b.T / temp  # (B,B)
    log_p = logits.log_softmax(-1)
    return -(log_p.masked_fill(~pos, -1e4).logsumexp(-1)).mean()


def fine_tune_text(
    encoder: TextEncoder,
    tok: Tokenizer,
    catalog: Catalog,
    train_sequences: Sequence[np.ndarray],
    cfg: TextTuneConfig,
    *,
    progress: bool = True,
) -> TextTuneReport:
    """Tune ``encoder`` in place per ``cfg.mode``; LoRA is merged back before returning."""
    total = sum(p.numel() for p in encoder.parameters())
    if cfg.mode == "frozen" or cfg.steps <= 0:
        for p in encoder.parameters():
            p.requires_grad_(False)
        return TextTuneReport(cfg.mode, 0, total, 0, 0.0, float("nan"))
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.mode == "lora":
        trainable = apply_lora(encoder.bert, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
        lr = cfg.lr_lora
    else:
        for p in encoder.parameters():
            p.requires_grad_(True)
        trainable = total
        lr = cfg.lr_full
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    seqs = [np.asarray(s, np.int64) for s in train_sequences if len(s) >= 2]
    prev = np.concatenate([s[:-1] for s in seqs])  # consecutive (item, next item) pairs
    nxt = np.concatenate([s[1:] for s in seqs])
    chosen = np.concatenate(seqs)  # items users chose, popularity-weighted for queries
    with_genres = chosen[[bool(catalog.genres(int(r))) for r in chosen]]
    texts = catalog.texts
    encoder.train()
    loss_value = float("nan")
    bar = tqdm(range(cfg.steps), desc=f"text tower ({cfg.mode})", disable=not progress, leave=False)
    done = 0
    for _step in bar:
        pick = rng.integers(0, len(prev), size=cfg.batch_size)
        a_rows, b_rows = prev[pick], nxt[pick]
        q_rows = with_genres[rng.integers(0, len(with_genres), size=cfg.batch_size)]
        queries = [_query(catalog, int(r), rng) for r in q_rows]
        batch = [texts[r] for r in a_rows] + [texts[r] for r in b_rows]
        batch += [q[0] for q in queries] + [texts[r] for r in q_rows]
        ids, mask = encode_batch(tok, batch)
        z = encoder(torch.from_numpy(ids), torch.from_numpy(mask))  # (4B,D)
        za, zb, zq, zi = z.split(cfg.batch_size)
        same_next = torch.from_numpy(b_rows[:, None] == b_rows[None, :])  # duplicates are positives
        qpos = torch.tensor(
            [[_matches(catalog, int(r), g, d) for r in q_rows] for _, g, d in queries]
        )
        qpos |= torch.eye(cfg.batch_size, dtype=torch.bool)
        loss = 0.5 * (
            _info_nce(za, zb, same_next, cfg.temperature)
            + _info_nce(
                zb, za, torch.from_numpy(a_rows[:, None] == a_rows[None, :]), cfg.temperature
            )
        ) + _info_nce(zq, zi, qpos, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        done += 1
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if (time.perf_counter() - t0) / 60 > cfg.max_minutes:
            log.warning(
                "text tuning stopped by its %.1f min budget after %d steps", cfg.max_minutes, done
            )
            break
    if cfg.mode == "lora":
        merge_lora(encoder.bert)
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder.eval()
    secs = time.perf_counter() - t0
    log.info(
        "text tower %s: %d/%d trainable, %d steps, %.1fs", cfg.mode, trainable, total, done, secs
    )
    return TextTuneReport(cfg.mode, trainable, total, done, secs, loss_value)
