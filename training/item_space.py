"""Item vectors = L2norm(text vector + learned residual); cold items use text only.

The residual carries what behaviour knows and text does not (popularity,
taste clusters). It is zero-initialised, weight-decayed, and randomly dropped
during training ("residual dropout"), so the sequence encoder also learns to
score items through their text vectors alone — which is all a cold item has.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ItemSpace(nn.Module):
    text: torch.Tensor  # (N,D) buffer
    warm: torch.Tensor  # (N,) buffer, 1.0 = seen in training

    def __init__(self, text_vectors: np.ndarray, warm: np.ndarray) -> None:
        """``text_vectors`` (N,D) float32; ``warm`` (N,) bool, items seen in training."""
        super().__init__()
        self.register_buffer(
            "text", torch.from_numpy(np.ascontiguousarray(text_vectors, np.float32))
        )
        self.register_buffer("warm", torch.from_numpy(warm.astype(np.float32)))
        self.residual = nn.Parameter(torch.zeros_like(self.text))  # (N,D)

    def forward(self, residual_dropout: float = 0.0) -> torch.Tensor:
        """(N,D) normalised item vectors; drops each warm item's residual with the given rate."""
        keep = self.warm
        if self.training and residual_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= residual_dropout).to(keep.dtype)
        return F.normalize(self.text + self.residual * keep[:, None], dim=-1)

    @torch.no_grad()
    def export(self) -> np.ndarray:
        """The serving item vectors (no dropout)."""
        return F.normalize(self.text + self.residual * self.warm[:, None], dim=-1).numpy()
