"""Leave-one-out and cold-item splits: no leakage, file-order ties, seeded cold items."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.types import Catalog, Dataset, Interactions
from training.split import (
    cold_item_split,
    cold_target_mask,
    known_before,
    leave_one_out,
    split_time,
    user_sequences,
)


def _interactions(users: list[int], items: list[int], ts: list[float]) -> Interactions:
    return Interactions(
        user=np.asarray(users, np.int32),
        item=np.asarray(items, np.int32),
        ts=np.asarray(ts, np.float64),
        user_ids=[f"u{i}" for i in range(max(users) + 1)],
    )


def _random_dataset(seed: int = 0, n_users: int = 40, n_items: int = 60) -> Dataset:
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        k = int(rng.integers(3, 20))
        users += [u] * k
        items += rng.choice(n_items, size=k, replace=False).tolist()  # no repeats per user
        ts += rng.integers(0, 5, size=k).astype(float).tolist()  # many ties
    perm = rng.permutation(len(users))  # file order not grouped by user
    inter = _interactions([users[i] for i in perm], [items[i] for i in perm], [ts[i] for i in perm])
    ids = [str(i) for i in range(n_items)]
    cat = Catalog(ids, ids, ids, [{} for _ in ids])
    return Dataset("synthetic", cat, inter)


def test_ties_keep_file_order_not_item_id_order() -> None:
    # user 0: file order 5, 3, 9, 1 all at t=100, then 7 at t=50 (earlier, listed last)
    inter = _interactions([0, 0, 0, 0, 0], [5, 3, 9, 1, 7], [100, 100, 100, 100, 50])
    assert user_sequences(inter)[0].tolist() == [7, 5, 3, 9, 1]
    split = leave_one_out(inter)
    assert split.test.targets.tolist() == [1]  # item-id tie-breaking would give 9
    assert split.valid.targets.tolist() == [9]  # ... and 5
    assert split.train_sequences[0].tolist() == [7, 5, 3]
    assert split.test.histories[0].tolist() == [7, 5, 3, 9]


def test_no_test_or_valid_interaction_reaches_training() -> None:
    ds = _random_dataset()
    inter = ds.interactions
    split = leave_one_out(inter)
    counts = np.bincount(inter.user)
    assert len(split.test) == len(split.valid) == int((counts >= 3).sum())
    for case, (u, tgt, vtgt) in enumerate(
        zip(split.test.users, split.test.targets, split.valid.targets, strict=True)
    ):
        train = split.train_sequences[u]
        assert tgt not in train and vtgt not in train  # items are unique per user here
        assert len(train) + 2 == counts[u]
        # time order: everything in training happened no later than the targets
        ts_of = {
            int(i): t
            for i, t in zip(inter.item[inter.user == u], inter.ts[inter.user == u], strict=True)
        }
        assert max(ts_of[int(i)] for i in train) <= ts_of[int(vtgt)] <= ts_of[int(tgt)]
        assert split.test.histories[case].tolist() == [*train.tolist(), int(vtgt)]
    assert split.cold_items.size == 0


def test_short_users_train_whole_without_cases() -> None:
    inter = _interactions([0, 0, 1, 1, 1], [1, 2, 3, 4, 5], [1, 2, 1, 2, 3])
    split = leave_one_out(inter)
    assert split.test.users.tolist() == [1]
    assert split.train_sequences[0].tolist() == [1, 2]
    with pytest.raises(ValueError):
        leave_one_out(inter, min_len=2)


def test_cold_split_removes_cold_items_from_training_and_is_seeded() -> None:
    ds = _random_dataset()
    a = cold_item_split(ds, frac=0.1, seed=3)
    b = cold_item_split(ds, frac=0.1, seed=3)
    c = cold_item_split(ds, frac=0.1, seed=4)
    seen = np.unique(ds.interactions.item)
    assert len(a.cold_items) == round(0.1 * len(seen)) > 0
    assert np.array_equal(a.cold_items, b.cold_items)
    assert not np.array_equal(a.cold_items, c.cold_items)
    for seq in a.train_sequences:
        assert not np.isin(seq, a.cold_items).any()
    # evaluation cases are exactly those of the plain split (only training shrinks)
    plain = leave_one_out(ds.interactions)
    assert np.array_equal(a.test.targets, plain.test.targets)
    mask = cold_target_mask(a)
    assert mask.dtype == bool and mask.sum() == np.isin(plain.test.targets, a.cold_items).sum()
    with pytest.raises(ValueError):
        cold_item_split(ds, frac=0.0)


def test_temporal_split_time_never_cuts_a_run_of_equal_timestamps() -> None:
    # 10 events; the 0.5-quantile event (index 5 in time order) shares ts 30 with two others
    ts = [10, 20, 30, 30, 30, 30, 40, 50, 60, 70]
    inter = _interactions([0] * 10, list(range(10)), ts)
    t = split_time(inter, 0.5)
    assert t == 30.0
    before = inter.ts < t
    assert before.sum() == 2  # every event at 30 goes to the stream, none to training
    with pytest.raises(ValueError):
        split_time(inter, 1.0)


def test_known_before_keeps_only_the_past_and_renumbers_densely() -> None:
    ds = _random_dataset(seed=3)
    inter = ds.interactions
    t = split_time(inter, 0.6)
    known = known_before(ds, t)
    k = known.interactions
    assert len(k) == int((inter.ts < t).sum())
    assert (k.ts < t).all()
    # the same interactions, in file order, by external ids
    past = inter.ts < t
    expect = [
        (inter.user_ids[u], ds.catalog.item_ids[i])
        for u, i in zip(inter.user[past], inter.item[past], strict=True)
    ]
    got = [(k.user_ids[u], known.catalog.item_ids[i]) for u, i in zip(k.user, k.item, strict=True)]
    assert got == expect
    # only items and users seen before t, catalog order kept, every row used
    assert set(known.catalog.item_ids) == {ds.catalog.item_ids[i] for i in inter.item[past]}
    rows = [ds.catalog.rows[i] for i in known.catalog.item_ids]
    assert rows == sorted(rows)
    assert set(np.unique(k.item)) == set(range(len(known.catalog)))
    assert set(np.unique(k.user)) == set(range(k.n_users))
    # leave-one-out inside the past: no target at or after t can exist
    split = leave_one_out(k)
    assert len(split.test) > 0
