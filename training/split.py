"""Evaluation splits: time-ordered leave-one-out, a seeded cold-item variant, and a
global temporal split for the prequential stream protocol.

Time order is a STABLE sort on ``ts``: interactions with equal timestamps keep
their file order (never item-id order, which leaks; see training/data/types.py).
Per user with at least ``min_len`` interactions: the last one is the test target,
the second last the validation target, the rest is training. Shorter users go to
training whole and get no evaluation case. No test or validation target ever
appears in ``train_sequences``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.types import Catalog, Dataset, Interactions, SearchLog

__all__ = [
    "EvalCases",
    "Split",
    "cold_item_split",
    "cold_target_mask",
    "known_before",
    "leave_one_out",
    "split_time",
    "time_order",
    "user_sequences",
]


@dataclass(frozen=True)
class EvalCases:
    users: np.ndarray  # (B,) int32 user index
    histories: list[np.ndarray]  # per case: item rows oldest -> newest, all before the target
    targets: np.ndarray  # (B,) int32 item rows

    def __post_init__(self) -> None:
        b = self.users.shape[0]
        if self.targets.shape != (b,) or len(self.histories) != b:
            raise ValueError(
                f"EvalCases: users {self.users.shape}, targets {self.targets.shape}, "
                f"{len(self.histories)} histories"
            )

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Split:
    train_sequences: list[np.ndarray]  # per user index: item rows in time order, targets removed
    valid: EvalCases  # history = seq[:-2], target = seq[-2]
    test: EvalCases  # history = seq[:-1], target = seq[-1]
    cold_items: np.ndarray  # (C,) int32 item rows absent from training (empty unless cold split)


def user_sequences(interactions: Interactions) -> list[np.ndarray]:
    """Per user index, its item rows in time order (stable: ties keep file order)."""
    by_time = np.argsort(interactions.ts, kind="stable")  # (E,)
    order = by_time[np.argsort(interactions.user[by_time], kind="stable")]  # user, then time
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    return np.split(interactions.item[order], np.cumsum(counts)[:-1])


def leave_one_out(interactions: Interactions, *, min_len: int = 3) -> Split:
    if min_len < 3:
        raise ValueError(
            f"min_len must be >= 3 (a train item, a valid and a test target), got {min_len}"
        )
    return _loo(user_sequences(interactions), min_len, np.empty(0, np.int32))


def cold_item_split(dataset: Dataset, *, frac: float = 0.1, seed: int = 0) -> Split:
    """Leave-one-out where a seeded random ``frac`` of the interacted items never reach training.

    Evaluation cases are those of :func:`leave_one_out`; their histories and targets
    may contain cold items (a text-aware model sees them through their text).
    """
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    seen = np.unique(dataset.interactions.item)
    n_cold = round(frac * len(seen))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(seen, size=n_cold, replace=False)).astype(np.int32)
    return _loo(user_sequences(dataset.interactions), 3, cold)


def cold_target_mask(split: Split, cases: EvalCases | None = None) -> np.ndarray:
    """(B,) bool: which cases' target is a cold item (default: the test cases)."""
    cases = split.test if cases is None else cases
    return np.isin(cases.targets, split.cold_items)


def _loo(sequences: list[np.ndarray], min_len: int, cold: np.ndarray) -> Split:
    train, valid, test = [], [], []
    for user, seq in enumerate(sequences):
        if len(seq) < min_len:
            train.append(seq)
            continue
        train.append(seq[:-2])
        valid.append((user, seq[:-2], seq[-2]))
        test.append((user, seq[:-1], seq[-1]))
    if len(cold):
        train = [seq[~np.isin(seq, cold)] for seq in train]
    return Split(
        train_sequences=train,
        valid=_cases(valid),
        test=_cases(test),
        cold_items=cold,
    )


def _cases(rows: list[tuple[int, np.ndarray, int]]) -> EvalCases:
    return EvalCases(
        users=np.asarray([r[0] for r in rows], np.int32),
        histories=[r[1] for r in rows],
        targets=np.asarray([r[2] for r in rows], np.int32),
    )


def time_order(interactions: Interactions) -> np.ndarray:
    """(E,) event indices in time order; ties keep file order (stable sort)."""
    return np.argsort(interactions.ts, kind="stable")


def split_time(interactions: Interactions, quantile: float) -> float:
    """T: the timestamp of the ``quantile`` interaction in time order (0 < quantile < 1).

    Events with ``ts < T`` are before the split; every event at ``T`` or later is in
    the stream, so a run of equal timestamps is never cut in two.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"the split quantile must be in (0, 1), got {quantile}")
    n = len(interactions)
    if n == 0:
        raise ValueError("cannot split an empty interaction log")
    order = time_order(interactions)
    return float(interactions.ts[order[min(int(quantile * n), n - 1)]])


def known_before(dataset: Dataset, t: float) -> Dataset:
    """``dataset`` as it was known at time ``t``: the interactions with ``ts < t``, in file
    order, the items they touch (catalog order kept) and the users who made them.

    Item rows and user indices are renumbered densely; item and user ids are kept,
    so the bundle's ``items.jsonl`` names exactly the items a catalog taken at ``t``
    would hold.
    """
    inter = dataset.interactions
    keep = inter.ts < t
    if not keep.any():
        raise ValueError(f"no interaction happened before {t}: nothing to train on")
    items = np.unique(inter.item[keep])  # (I,) old rows, ascending = catalog order
    users = np.unique(inter.user[keep])  # (U,)
    item_row = np.full(len(dataset.catalog), -1, np.int64)
    item_row[items] = np.arange(len(items))
    user_row = np.full(inter.n_users, -1, np.int64)
    user_row[users] = np.arange(len(users))
    cat = dataset.catalog
    catalog = Catalog(
        item_ids=[cat.item_ids[i] for i in items],
        titles=[cat.titles[i] for i in items],
        texts=[cat.texts[i] for i in items],
        attributes=[cat.attributes[i] for i in items],
    )
    interactions = Interactions(
        user=user_row[inter.user[keep]].astype(np.int32),
        item=item_row[inter.item[keep]].astype(np.int32),
        ts=inter.ts[keep],
        user_ids=[inter.user_ids[u] for u in users],
    )
    search = dataset.search
    if search is not None:  # queries typed before t by users who are kept
        q = (search.ts < t) & (user_row[search.user] >= 0)
        search = SearchLog(
            user=user_row[search.user[q]].astype(np.int32),
            text=[x for x, k in zip(search.text, q, strict=True) if k],
            ts=search.ts[q],
        )
    return Dataset(dataset.name, catalog, interactions, search)
