"""SASRec-style causal transformer over item VECTORS (not ids), so items unseen
in training can still appear in a history: they enter as their text vectors.

Sequences are left-padded, most recent item last (``mask`` 1 = real item).
Positions are counted from the end, so the embedding of "the latest item" is
the same whatever the padded length — that keeps dynamic-length ONNX exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

_NEG = -1e4  # additive mask; finite so fully padded rows never produce NaN


@dataclass(frozen=True)
class SequenceModelConfig:
    dim: int = 384  # item space dimension (input and output)
    d_model: int = 64  # transformer width
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50  # longest history the encoder reads
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:  # 1.0 would zero every activation (and divide by 0)
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class _Dropout(nn.Module):
    """Inverted dropout from a ``rand`` mask: the same distribution as ``nn.Dropout`` at about
    half its CPU cost (``bernoulli_`` was 12 % of a training step). Identity in eval mode,
    so nothing of it reaches the exported graph.

    Tried and reverted: a mask of random bytes (7 elements per int64 draw, 4x less time than
    ``rand``), statistically the same mask, lowered ml-100k test NDCG@10 on three seeds out
    of three (mean 0.109 against 0.116) for reasons not found (bench/RESULTS.md, session 9)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))


class _Block(nn.Module):
    """Pre-LN transformer block with hand-written attention (exports cleanly to ONNX)."""

    def __init__(self, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )
        self.drop = _Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, c = h.shape
        hs = c // self.n_heads
        q, k, v = self.qkv(self.ln1(h)).split(c, dim=-1)  # 3 x (B,T,C)
        q = q.view(b, t, self.n_heads, hs).transpose(1, 2)  # (B,nh,T,hs)
        k = k.view(b, t, self.n_heads, hs).transpose(1, 2)
        v = v.view(b, t, self.n_heads, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs) + bias  # (B,nh,T,T)
        att = self.drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, c)  # (B,T,C)
        h = h + self.drop(self.proj(y))
        return h + self.drop(self.ff(self.ln2(h)))

    def last(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` at the last position only (B,C): its query alone, every
        position's key and value. ``bias`` (B,1,1,T) is the last row of the attention
        bias. For serving, where only the latest state is read (eval mode)."""
        b, t, c = h.shape
        hs = c // self.n_heads
        x = self.ln1(h)  # (B,T,C)
        w, bq = self.qkv.weight, self.qkv.bias  # (3C,C), (3C,)
        q = F.linear(x[:, -1:], w[:c], bq[:c])  # (B,1,C)
        k = F.linear(x, w[c : 2 * c], bq[c : 2 * c])  # (B,T,C)
        v = F.linear(x, w[2 * c :], bq[2 * c :])
        q = q.view(b, 1, self.n_heads, hs).transpose(1, 2)  # (B,nh,1,hs)
        k = k.view(b, t, self.n_heads, hs).transpose(1, 2)  # (B,nh,T,hs)
        v = v.view(b, t, self.n_heads, hs).transpose(1, 2)
        att = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(hs) + bias, dim=-1)  # (B,nh,1,T)
        y = (att @ v).transpose(1, 2).reshape(b, 1, c)  # (B,1,C)
        h = h[:, -1:] + self.proj(y)
        return (h + self.ff(self.ln2(h)))[:, 0]  # (B,C)


class SequenceEncoder(nn.Module):
    """``forward(item_vectors (B,T,D), mask (B,T)) -> user_vector (B,D)``, L2-normalised."""

    causal: torch.Tensor  # (max_len, max_len) additive causal mask buffer

    def __init__(self, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.dim, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, cfg.d_model) * 0.02)  # row -1 = latest
        self.drop = _Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.dim)
        causal = torch.triu(torch.full((cfg.max_len, cfg.max_len), _NEG), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)

    def all_positions(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """User vectors after every position: (B,T,D), L2-normalised."""
        return self.head(self.hidden(self.in_proj(x), mask))

    def hidden(self, px: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Transformer states (B,T,C) after every position, given ``in_proj(x)`` (B,T,C):
        training projects the (N,D) catalog once and gathers (N,C) rows, 4-6x less work
        than projecting (B,T,D)."""
        t = px.shape[1]
        m = mask.unsqueeze(-1)  # (B,T,1)
        h = px * m + self.pos[self.cfg.max_len - t :]  # (B,T,C)
        h = self.drop(h)
        # causal (T,T) + padded keys (B,1,1,T); a padded query still sees itself: no NaN
        bias = self.causal[:t, :t] + (1.0 - mask)[:, None, None, :] * _NEG  # (B,1,T,T)
        for block in self.blocks:
            h = block(h, bias)
        return h

    def last_state(self, px: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The final state of the latest position only (B,C), given ``in_proj(x)`` (B,T,C):
        what serving reads, with the last block's other positions skipped (their keys
        and values are still computed). ``head(last_state(...))`` equals ``forward``."""
        t = px.shape[1]
        h = px * mask.unsqueeze(-1) + self.pos[self.cfg.max_len - t :]  # (B,T,C)
        bias = self.causal[:t, :t] + (1.0 - mask)[:, None, None, :] * _NEG  # (B,1,T,T)
        *early, final = self.blocks
        for block in early:
            h = block(h, bias)
        return cast(_Block, final).last(h, bias[:, :, -1:, :])

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """States (...,C) -> L2-normalised user vectors (...,D). Training scores through
        :meth:`head_logits` instead, at the positions that have a target only."""
        return F.normalize(self.out_proj(self.ln_f(h)), dim=-1)

    def head_logits(
        self,
        h: torch.Tensor,
        items: torch.Tensor,
        scale: torch.Tensor,
        item_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``scale * head(h) @ items.T + item_bias`` (P,W) for unit-norm ``items`` (W,D),
        computed in the C-wide space: the output projection moves onto the items, so the
        (P,W) product costs C+1 instead of D multiply-adds per pair (65 vs 384) and the
        scale and the user norm scale the (P,C+1) rows, not the (P,W) matrix. A training
        step is ~10 % faster. ``item_bias`` (W,) rides in the same product as one more
        column (training puts -1e4 on items that must not be candidates)."""
        h = self.ln_f(h)  # (P,C)
        norm = self.out_proj(h).float().norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (P,1)
        left = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=-1) * (scale / norm)  # (P,C+1)
        w, b = self.out_proj.weight, self.out_proj.bias  # (D,C), (D,)
        right = torch.cat([items @ w, (items @ b)[:, None]], dim=-1)  # (W,C+1)
        if item_bias is not None:
            left = torch.cat([left, left.new_ones(left.shape[0], 1)], dim=-1)  # (P,C+2)
            right = torch.cat([right, item_bias[:, None].to(right.dtype)], dim=-1)  # (W,C+2)
        return left @ right.T

    def forward(self, item_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.all_positions(item_vectors, mask)[:, -1]  # (B,D) at the latest item
