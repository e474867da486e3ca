"""Item vectors = L2norm(content + learned residual), content = text vector - centre + shared
offset; cold items use their content vector only (what the served text encoder outputs).

``centre`` is the mean text vector of the catalog (fixed at construction). MiniLM
sentence vectors share a large common component (mean pairwise cosine ~0.4 on
MovieLens titles), which squeezes every text-only item's score into a narrow
band; warm items get their spread back from their residuals, cold items cannot.
Centring lets the distinctive part of the text decide (as BERT-whitening does
for sentence similarity).

The residual carries what behaviour knows and text does not (popularity,
taste clusters). It is zero-initialised, weight-decayed, and randomly dropped
during training ("residual dropout"), so the sequence encoder also learns to
score items through their text vectors alone — which is all a cold item has.

With ``delta_bound`` set, the residual is a norm-bounded delta as in "Let It Go?
Not Quite" (RecSys 2025): after every optimiser step :meth:`ItemSpace.project_`
puts each residual back into the ball ``||r_i|| <= delta_bound * ||content_i||``
(a hard bound, not a penalty). In the served unit-norm space that is a cap
around the item's text-only vector: ``cos(item_i, L2norm(content_i)) >=
sqrt(1 - delta_bound**2)`` for a bound below 1, so a trained item stays where its
text put it, give or take the bound, and trained and new items share one space.
Without it (None) the residual is unbounded, as before.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ItemSpace(nn.Module):
    """``item = L2norm(text + shared + residual)``; a text-only item is ``L2norm(text + shared)``.

    ``shared`` is one learned offset applied to EVERY text vector (it is baked into
    the exported text encoder, see :class:`ServingTextEncoder`), so an item that
    arrives with text only lands where the model expects items, instead of
    competing unshifted against warm items whose residuals carry popularity.
    """

    text: torch.Tensor  # (N,D) buffer
    warm: torch.Tensor  # (N,) buffer, 1.0 = seen in training
    centre: torch.Tensor  # (D,) buffer, subtracted from every text vector

    def __init__(
        self,
        text_vectors: np.ndarray,
        warm: np.ndarray,
        *,
        centre: bool = True,
        delta_bound: float | None = None,
    ) -> None:
        """``text_vectors`` (N,D) float32; ``warm`` (N,) bool, items seen in training;
        ``centre`` subtracts the catalog's mean text vector; ``delta_bound`` caps each
        residual's norm at this share of its content vector's (None = unbounded; see the
        module docstring)."""
        super().__init__()
        if delta_bound is not None and not delta_bound > 0:
            raise ValueError(f"delta_bound must be > 0 (None = unbounded), got {delta_bound}")
        self.delta_bound = delta_bound
        self.register_buffer(
            "text", torch.from_numpy(np.ascontiguousarray(text_vectors, np.float32))
        )
        mean = self.text.mean(0) if centre and len(self.text) else torch.zeros(self.text.shape[1])
        self.register_buffer("centre", mean)
        self.register_buffer("warm", torch.from_numpy(warm.astype(np.float32)))
        self.residual = nn.Parameter(torch.zeros_like(self.text))  # (N,D)
        self.shared = nn.Parameter(torch.zeros(self.text.shape[1]))  # (D,)

    def forward(self, residual_dropout: float = 0.0) -> torch.Tensor:
        """(N,D) normalised item vectors; drops each warm item's residual with the given rate."""
        keep = self.warm
        if self.training and residual_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= residual_dropout).to(keep.dtype)
        return F.normalize(self.content() + self.residual * keep[:, None], dim=-1)

    def text_offset(self) -> torch.Tensor:
        """(D,) what every text vector gets added: ``shared - centre`` (the serving offset)."""
        return self.shared - self.centre

    def content(self) -> torch.Tensor:
        """(N,D) the content vectors ``text + text_offset()``, before normalisation."""
        return self.text + self.text_offset()

    @torch.no_grad()
    def project_(self) -> int:
        """Put every residual back into its ball ``||r_i|| <= delta_bound * ||content_i||``
        (the Euclidean projection: a row outside is scaled onto the sphere, a row inside is
        untouched); returns how many rows moved. A no-op without a bound."""
        if self.delta_bound is None:
            return 0
        limit = self.delta_bound * self.content().norm(dim=-1)  # (N,)
        norm = self.residual.norm(dim=-1)  # (N,)
        over = norm > limit
        if over.any():
            self.residual[over] *= (limit[over] / norm[over])[:, None]
        return int(over.sum())

    @torch.no_grad()
    def export(self) -> np.ndarray:
        """The serving item vectors (no dropout)."""
        vectors = self.content() + self.residual * self.warm[:, None]
        return F.normalize(vectors, dim=-1).numpy()

    @torch.no_grad()
    def export_content(self) -> np.ndarray:
        """(N,D) the served text-only vectors ``L2norm(content)``: what the served text encoder
        gives each catalog item's text, and the centre of its bound's cap."""
        return F.normalize(self.content(), dim=-1).numpy()


class ServingTextEncoder(nn.Module):
    """The text tower as served: ``L2norm(tower(text) + offset)``, for queries and new items.

    ``offset`` is :meth:`ItemSpace.text_offset` (learned shift minus the catalog centre).
    """

    shared: torch.Tensor  # (D,) buffer

    def __init__(self, tower: nn.Module, shared: torch.Tensor) -> None:
        super().__init__()
        self.tower = tower
        self.register_buffer("shared", shared.detach().clone())
        self.dim = int(shared.shape[0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower(input_ids, attention_mask) + self.shared, dim=-1)
