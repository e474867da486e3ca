"""The sequence encoder learns a deterministic next-item pattern, and not a shuffled one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.unit.training_models.conftest import cyclic_sequences, random_unit
from training.metrics import evaluate
from training.sequence_model import SequenceEncoder, SequenceModelConfig
from training.sequence_train import (
    AUTO_STRIDE_MAX_TARGETS,
    NOT_A_CANDIDATE,
    SequenceScorer,
    SequenceTrainConfig,
    _Ema,
    fit_to_data,
    make_windows,
    pad_histories,
    seen_before,
    train_sequence_model,
)
from training.split import EvalCases

# 32-d item vectors: at 16-d a few random neighbours lie so close (e.g. items 7 and 17) that
# with the history out of the softmax (fewer negatives per step) they stayed confused, HR@1
# 0.92-0.93 on two training seeds of three; at 32-d every seed reaches 1.0 either way
N_ITEMS, DIM = 40, 32
MODEL = SequenceModelConfig(dim=DIM, d_model=32, n_layers=1, n_heads=2, max_len=10, dropout=0.0)
TRAIN = SequenceTrainConfig(
    epochs=12, batch_size=64, lr=1e-2, patience=3, residual_dropout=0.0, bf16=False, seed=0
)


def _cases(seqs: list[np.ndarray]) -> tuple[list[np.ndarray], EvalCases, EvalCases]:
    def cases(k: int) -> EvalCases:
        return EvalCases(
            users=np.arange(len(seqs), dtype=np.int32),
            histories=[s[:-k] for s in seqs],
            targets=np.asarray([s[-k] for s in seqs], np.int32),
        )

    return [s[:-2] for s in seqs], cases(2), cases(1)


def _fit_and_test(seqs: list[np.ndarray], cfg: SequenceTrainConfig = TRAIN) -> dict[str, float]:
    train, valid, test = _cases(seqs)
    result = train_sequence_model(
        train,
        random_unit(N_ITEMS, DIM, seed=1),
        lambda f: evaluate(f, valid, N_ITEMS, ks=(1, 10), progress=False),
        MODEL,
        cfg,
        progress=False,
    )
    with torch.no_grad():
        scorer = SequenceScorer(result.encoder, result.space())
    return evaluate(scorer, test, N_ITEMS, ks=(1, 10), progress=False)


@pytest.mark.parametrize("mask_history", [False, True])
def test_learns_the_successor_pattern(mask_history: bool) -> None:
    cfg = dataclasses.replace(TRAIN, mask_history=mask_history)
    metrics = _fit_and_test(cyclic_sequences(N_ITEMS, n_users=120, length=14, seed=0), cfg)
    assert metrics["hr@1"] >= 0.95


def test_seen_before_marks_each_position_s_earlier_items_but_not_its_target() -> None:
    pad = 6
    # a window of 6 (two padded slots); its last 3 positions' targets are 2, 1 and 0, which
    # the user already had at position 2 (a re-consumption)
    inp = torch.tensor([[pad, pad, 0, 3, 2, 1]])
    tgt = torch.tensor([[2, 1, 0]])
    seen = torch.zeros(3, pad, dtype=torch.bool)
    seen[seen_before(inp, tgt, n_items=pad)] = True  # rows = the 3 target positions
    assert seen[0].nonzero().flatten().tolist() == [0, 3]  # 2, 1 come later; pad is no item
    assert seen[1].nonzero().flatten().tolist() == [0, 2, 3]
    assert seen[2].nonzero().flatten().tolist() == [1, 2, 3]  # 0 is the target: a candidate
    # two windows: the second's rows follow the first's
    rows, _ = seen_before(torch.cat([inp, inp]), torch.cat([tgt, tgt]), n_items=pad)
    assert rows.max().item() == 5 and len(rows) == 16


def test_masked_history_gets_no_probability_and_backward_runs_through_the_fill() -> None:
    enc = SequenceEncoder(SequenceModelConfig(dim=8, d_model=8, max_len=4))
    items = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1).requires_grad_()
    inp, tgt = torch.tensor([[5, 0, 1, 2]]), torch.tensor([[1, 2, 3]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = enc.head_logits(torch.randn(3, 8), items, torch.tensor(20.0))
        logits.index_put_(seen_before(inp, tgt, 5), logits.new_tensor(NOT_A_CANDIDATE))
    loss = torch.nn.functional.cross_entropy(logits.float(), tgt[0])
    loss.backward()  # in place on the product's output: autograd must accept it
    probs = torch.softmax(logits.float(), dim=-1)
    assert probs[2, [0, 1, 2]].max().item() == 0.0  # the last position had seen 0, 1, 2
    assert probs[0, 1].item() > 0.0  # ... the first had not seen its target 1 yet
    assert items.grad is not None and torch.isfinite(items.grad).all()


def test_shuffled_control_stays_near_chance() -> None:
    rng = np.random.default_rng(3)
    seqs = [rng.permutation(N_ITEMS)[:14].astype(np.int32) for _ in range(120)]
    metrics = _fit_and_test(seqs)
    assert metrics["hr@1"] <= 0.15  # chance is ~1/27 after masking the history


def test_no_epoch_starts_that_would_pass_the_budget() -> None:
    """Each validation advances a fake clock by a minute: with a 2.5-minute budget, a third
    epoch would end at minute 3, so training stops after two."""
    now = [0.0]

    def validate(score: object) -> dict[str, float]:
        now[0] += 60.0
        return {"ndcg@10": 0.0}

    seqs = cyclic_sequences(N_ITEMS, n_users=20, length=8, seed=0)
    result = train_sequence_model(
        seqs,
        random_unit(N_ITEMS, DIM, seed=1),
        validate,
        MODEL,
        dataclasses.replace(TRAIN, patience=99, max_minutes=2.5),
        progress=False,
        clock=lambda: now[0],
    )
    assert len(result.history) == 2
    assert result.seconds <= 150.0


def test_windows_are_left_padded_and_aligned() -> None:
    inputs, targets = make_windows([np.array([5, 6, 7, 8])], max_len=3, pad=99)
    assert inputs.tolist() == [[5, 6, 7]]  # cut from the end: one full window
    assert targets[0].tolist() == [6, 7, 8]
    inputs, targets = make_windows([np.arange(6)], max_len=3, pad=99)
    assert inputs.tolist() == [[2, 3, 4], [99, 0, 1]]
    assert targets.tolist() == [[3, 4, 5], [-1, 1, 2]]
    assert pad_histories([np.array([1, 2])], 4, pad=9).tolist() == [[9, 9, 1, 2]]


def test_strided_windows_train_every_target_once_with_context() -> None:
    inputs, targets = make_windows([np.arange(6)], max_len=3, pad=99, stride=1)
    assert inputs.tolist() == [[2, 3, 4], [1, 2, 3], [0, 1, 2], [99, 0, 1], [99, 99, 0]]
    assert targets.tolist() == [[-1, -1, 5], [-1, -1, 4], [-1, -1, 3], [-1, -1, 2], [-1, -1, 1]]
    seq = np.arange(100, 137)
    for stride in (1, 4, 7, 10):
        inputs, targets = make_windows([seq], max_len=10, pad=-9, stride=stride)
        kept = np.sort(targets[targets >= 0])
        assert kept.tolist() == seq[1:].tolist()  # each target exactly once
        for row_i, row_t in zip(inputs, targets, strict=True):
            for pos in np.flatnonzero(row_t >= 0):  # context = real items up to the target
                context = int((row_i[: pos + 1] != -9).sum())
                assert context >= min(10 - stride + 1, int(row_t[pos]) - 100)
    with pytest.raises(ValueError):
        make_windows([seq], max_len=10, pad=-9, stride=11)


def test_ema_tracks_and_swaps_without_losing_either_copy() -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    ema = _Ema([w], decay=0.75)
    with torch.no_grad():
        w.fill_(4.0)
    ema.update()  # shadow: 0 + (4 - 0) * 0.25
    assert torch.allclose(ema.shadow[0], torch.full((3,), 1.0))
    ema.swap()
    assert torch.allclose(w, torch.full((3,), 1.0))
    ema.swap()
    assert torch.allclose(w, torch.full((3,), 4.0))
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError):
            _Ema([w], decay=bad)


def test_ema_training_still_learns_the_pattern() -> None:
    seqs = cyclic_sequences(N_ITEMS, n_users=120, length=14, seed=0)
    # the kept (averaged) weights, scored on the test cases
    metrics = _fit_and_test(seqs, dataclasses.replace(TRAIN, ema_epochs=0.5))
    assert metrics["hr@1"] >= 0.95


@pytest.mark.parametrize(
    "bad",
    [
        {"ema_epochs": 0.0},
        {"ema_epochs": -1.0},
        {"window_stride": 0},
        {"window_stride": "x"},
        {"large_data_dropout": 1.0},
        {"large_data_dropout": -0.1},
    ],
)
def test_config_refuses_bad_values_before_any_training(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SequenceTrainConfig(**bad)  # type: ignore[arg-type]


def test_model_config_refuses_a_width_the_heads_do_not_divide() -> None:
    with pytest.raises(ValueError, match="multiple of n_heads"):
        SequenceModelConfig(d_model=95, n_heads=2)


@pytest.mark.parametrize("dropout", [1.0, -0.1, 1.5])
def test_model_config_refuses_a_dropout_outside_0_1(dropout: float) -> None:
    with pytest.raises(ValueError, match="dropout must be in"):
        SequenceModelConfig(dropout=dropout)


def test_auto_sizes_small_data_with_long_windows_and_large_with_the_model_s() -> None:
    auto, model = SequenceTrainConfig(), SequenceModelConfig(max_len=50)
    assert auto.window_stride == "auto" and auto.small_data_max_len == 100
    assert fit_to_data(auto, model, AUTO_STRIDE_MAX_TARGETS) == (
        dataclasses.replace(model, max_len=100),
        5,
    )
    assert auto.large_data_dropout == 0.05 and model.dropout == 0.2
    assert fit_to_data(auto, model, AUTO_STRIDE_MAX_TARGETS + 1) == (
        dataclasses.replace(model, dropout=0.05),
        10,
    )
    keep_dropout = SequenceTrainConfig(large_data_dropout=None)
    assert fit_to_data(keep_dropout, model, AUTO_STRIDE_MAX_TARGETS + 1) == (model, 10)
    keep = SequenceTrainConfig(small_data_max_len=None)
    assert fit_to_data(keep, SequenceModelConfig(max_len=4), 10) == (
        SequenceModelConfig(max_len=4),
        4,  # capped at the window
    )
    assert fit_to_data(SequenceTrainConfig(window_stride=7), model, 10) == (model, 7)
    assert fit_to_data(SequenceTrainConfig(window_stride=None), model, 10) == (model, 50)


def test_training_exports_the_resolved_window_length() -> None:
    seqs = cyclic_sequences(N_ITEMS, n_users=30, length=8, seed=0)
    cfg = dataclasses.replace(TRAIN, epochs=1, window_stride="auto", small_data_max_len=6)
    result = train_sequence_model(
        seqs,
        random_unit(N_ITEMS, DIM, seed=1),
        lambda f: {"ndcg@10": 0.0},
        MODEL,
        cfg,
        progress=False,
    )
    assert result.encoder.cfg.max_len == 6 and result.window_stride == 5


def test_head_on_selected_states_matches_all_positions() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(MODEL).eval()
    x = torch.from_numpy(random_unit(2 * 6, DIM, seed=4)).view(2, 6, DIM)
    mask = torch.tensor([[0.0, 0, 1, 1, 1, 1], [1.0] * 6])
    full = enc.all_positions(x, mask)  # (2,6,D)
    keep = torch.tensor([[False, False, True, False, True, True], [True] * 3 + [False] * 3])
    picked = enc.head(enc.hidden(enc.in_proj(x), mask)[keep])
    assert torch.allclose(picked, full[keep], atol=1e-6)


def test_head_logits_equal_scaled_cosines_with_the_items() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(MODEL).eval()
    with torch.no_grad():  # a non-zero bias, so the folded bias column is exercised
        enc.out_proj.bias.normal_()
    h = torch.randn(7, MODEL.d_model)
    items = torch.from_numpy(random_unit(11, DIM, seed=5))
    scale = torch.tensor(13.0)
    expected = scale * enc.head(h) @ items.T  # (7,11)
    assert torch.allclose(enc.head_logits(h, items, scale), expected, atol=1e-4)


def test_dropout_keeps_the_expected_value_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    drop = SequenceEncoder(dataclasses.replace(MODEL, dropout=0.3)).drop
    x = torch.ones(200_000)
    y = drop.train()(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.01  # survivors scaled by 1/(1-p)
    assert torch.equal(drop.eval()(x), x)


def test_padding_does_not_change_the_user_vector() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(MODEL).eval()
    x = torch.from_numpy(random_unit(4, DIM, seed=2))[None]  # (1,4,D)
    short = enc(x, torch.ones(1, 4))
    padded = enc(torch.cat([torch.zeros(1, 3, DIM), x], 1), torch.tensor([[0.0] * 3 + [1.0] * 4]))
    assert torch.allclose(short, padded, atol=1e-5)
    assert torch.allclose(short.norm(dim=-1), torch.ones(1))


@pytest.mark.parametrize("length", [1, 10])
def test_fully_padded_rows_stay_finite(length: int) -> None:
    enc = SequenceEncoder(MODEL).eval()
    out = enc(torch.zeros(2, length, DIM), torch.zeros(2, length))
    assert torch.isfinite(out).all()


def test_cold_items_get_text_plus_shared_offset_only() -> None:
    from training.item_space import ItemSpace

    text = random_unit(6, DIM, seed=5)
    warm = np.array([True, True, True, False, False, True])
    space = ItemSpace(text, warm)
    with torch.no_grad():
        space.residual.normal_()
        space.shared.normal_()
    out = space.export()
    offset = space.shared.detach().numpy() - text.mean(0)  # learned shift minus the centre
    np.testing.assert_allclose(space.text_offset().detach().numpy(), offset, atol=1e-6)
    cold = text[3:5] + offset
    np.testing.assert_allclose(
        out[3:5], cold / np.linalg.norm(cold, axis=1, keepdims=True), atol=1e-6
    )
    warm0 = text[0] + offset
    assert not np.allclose(out[0], warm0 / np.linalg.norm(warm0), atol=1e-3)  # has a residual
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_centring_spreads_text_only_scores() -> None:
    """Text vectors sharing a common component: centring removes it, so a user's scores
    over text-only items spread out instead of sitting in a narrow band."""
    from training.item_space import ItemSpace

    common = random_unit(1, DIM, seed=6)
    text = 2.0 * common + 0.5 * random_unit(30, DIM, seed=7)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cold = np.zeros(30, dtype=bool)  # all text-only
    user = torch.from_numpy(random_unit(1, DIM, seed=8)[0])
    raw = ItemSpace(text, cold, centre=False).eval()
    centred = ItemSpace(text, cold).eval()
    with torch.no_grad():
        spread_raw = (raw() @ user).std()
        spread_centred = (centred() @ user).std()
    assert spread_centred > 2 * spread_raw
    np.testing.assert_allclose(centred.centre.numpy(), text.mean(0), atol=1e-6)
