"""The item residual's hard norm bound (``delta_bound``): exact projection, never exceeded.

A trained item may move from its content vector (text + the shared offset) by at most
``delta_bound`` times that vector's norm, so in the served unit-norm space it stays within
a cap of cosine ``sqrt(1 - bound**2)`` around its text-only vector.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import torch

from tests.unit.training_models.conftest import cyclic_sequences, random_unit
from training.item_space import ItemSpace
from training.metrics import evaluate
from training.sequence_model import SequenceModelConfig
from training.sequence_train import SequenceTrainConfig, train_sequence_model
from training.split import EvalCases

N_ITEMS, DIM = 40, 32
MODEL = SequenceModelConfig(dim=DIM, d_model=32, n_layers=1, n_heads=2, max_len=10, dropout=0.0)
TRAIN = SequenceTrainConfig(
    epochs=6, batch_size=64, lr=1e-2, patience=6, residual_dropout=0.0, bf16=False, seed=0
)


def _space(bound: float | None) -> ItemSpace:
    warm = np.ones(8, dtype=bool)
    warm[6:] = False
    space = ItemSpace(random_unit(8, DIM, seed=3), warm, delta_bound=bound)
    with torch.no_grad():
        space.shared.copy_(torch.from_numpy(random_unit(1, DIM, seed=4)[0]) * 0.3)
    return space


def test_projection_is_the_exact_euclidean_projection_onto_each_ball() -> None:
    space = _space(0.25)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        raw = torch.from_numpy(rng.standard_normal((8, DIM)).astype(np.float32))
        raw[1] *= 1e-3  # well inside its ball: must not move
        space.residual.copy_(raw)
    limit = 0.25 * space.content().detach().norm(dim=-1)
    moved = space.project_()
    after = space.residual.detach()
    inside = raw.norm(dim=-1) <= limit
    assert moved == int((~inside).sum()) and moved >= 6
    # rows inside are untouched; rows outside land ON the sphere, in their own direction
    assert torch.equal(after[inside], raw[inside])
    torch.testing.assert_close(after[~inside].norm(dim=-1), limit[~inside], rtol=1e-6, atol=0)
    cos = torch.nn.functional.cosine_similarity(after[~inside], raw[~inside], dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-6)
    # the projection is the nearest point of the ball: no random point of it is closer
    for i in torch.nonzero(~inside).flatten().tolist():
        probe = torch.randn(2000, DIM)
        probe = probe / probe.norm(dim=-1, keepdim=True) * limit[i] * torch.rand(2000, 1)
        assert (probe - raw[i]).norm(dim=-1).min() >= (after[i] - raw[i]).norm() - 1e-5
    space.project_()  # idempotent, to float rounding (a row on its sphere may be 1 ulp out)
    torch.testing.assert_close(space.residual.detach(), after, rtol=1e-6, atol=0)


def test_no_bound_leaves_residuals_alone() -> None:
    space = _space(None)
    with torch.no_grad():
        space.residual.normal_()
    before = space.residual.detach().clone()
    assert space.project_() == 0
    assert torch.equal(space.residual.detach(), before)


@pytest.mark.parametrize("bad", [0.0, -0.5])
def test_a_bound_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="delta_bound"):
        _space(bad)
    with pytest.raises(ValueError, match="delta_bound"):
        SequenceTrainConfig(delta_bound=bad)


def _train(bound: float | None):
    seqs = cyclic_sequences(N_ITEMS, n_users=120, length=14, seed=0)
    valid = EvalCases(
        users=np.arange(len(seqs), dtype=np.int32),
        histories=[s[:-2] for s in seqs],
        targets=np.asarray([s[-2] for s in seqs], np.int32),
    )
    return train_sequence_model(
        [s[:-2] for s in seqs],
        random_unit(N_ITEMS, DIM, seed=1),
        lambda f: evaluate(f, valid, N_ITEMS, ks=(1, 10), progress=False),
        MODEL,
        dataclasses.replace(TRAIN, delta_bound=bound),
        progress=False,
    )


class _Watched(ItemSpace):
    """Records, at every forward (each training step and validation), the largest
    residual-to-content norm ratio the model is about to use."""

    seen: ClassVar[list[float]] = []

    def forward(self, residual_dropout: float = 0.0) -> torch.Tensor:
        with torch.no_grad():
            ratio = self.residual.norm(dim=-1) / self.content().norm(dim=-1)
        _Watched.seen.append(float(ratio.max()))
        return super().forward(residual_dropout)


def test_a_trained_residual_never_exceeds_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    bound = 0.2
    monkeypatch.setattr("training.sequence_train.ItemSpace", _Watched)
    _Watched.seen = []
    unbounded = _train(None).space
    # the successor pattern pulls residuals far past the bound when nothing holds them
    ratio = unbounded.residual.detach().norm(dim=-1) / unbounded.content().detach().norm(dim=-1)
    assert ratio.max() > 2 * bound
    _Watched.seen = []
    space = _train(bound).space  # the kept (best, moving-average) weights
    # every step trained (and every validation scored) with residuals inside the bound
    assert len(_Watched.seen) > 20 and max(_Watched.seen) <= bound * (1 + 1e-5)
    ratio = space.residual.detach().norm(dim=-1) / space.content().detach().norm(dim=-1)
    assert ratio.max() <= bound * (1 + 1e-5)
    # the bound binds: the residuals sit on (the moving average: just inside) their spheres
    assert ratio.max() >= bound * 0.9
    # served: every item within the cap cos >= sqrt(1 - bound^2) of its text-only vector
    cos = (space.export() * space.export_content()).sum(1)
    assert cos.min() >= np.sqrt(1 - bound**2) - 1e-5
