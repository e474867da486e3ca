"""Write a :class:`training.split.Split` as RecBole benchmark files (exactly the same cases).

RecBole's sequential "benchmark_filename" mode reads pre-augmented rows
``user_id, item_id_list, item_id`` and does no sorting or splitting of its own,
so it trains on our ``train_sequences`` (every prefix -> next item, as RecBole's
own augmentation does) and is evaluated on our valid/test cases. Item tokens are
catalog rows. Lists keep the most recent ``max_len`` items (RecBole would keep
the OLDEST ones if it truncated itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.split import EvalCases, Split

__all__ = ["write_benchmark_files"]

_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def _row(user: int, hist: np.ndarray, target: int, max_len: int) -> str:
    return f"{user}\t{' '.join(map(str, hist[-max_len:].tolist()))}\t{target}\n"


def write_benchmark_files(split: Split, work: Path, name: str, *, max_len: int = 50) -> Path:
    """Write ``work/<name>/<name>.{train,valid,test}.inter`` and ``work/cases.npz``."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    with (d / f"{name}.train.inter").open("w") as fh:
        fh.write(_HEADER)
        for user, seq in enumerate(split.train_sequences):
            for i in range(1, len(seq)):
                fh.write(_row(user, seq[:i], int(seq[i]), max_len))
    arrays: dict[str, np.ndarray] = {}
    for part, cases in (("valid", split.valid), ("test", split.test)):
        _write_cases(d / f"{name}.{part}.inter", cases, max_len)
        arrays[f"{part}_targets"] = cases.targets.astype(np.int64)
        arrays[f"{part}_hist"] = np.concatenate(cases.histories).astype(np.int64)
        arrays[f"{part}_offsets"] = np.cumsum([0] + [len(h) for h in cases.histories])
    np.savez(work / "cases.npz", **arrays)
    return d


def _write_cases(path: Path, cases: EvalCases, max_len: int) -> None:
    with path.open("w") as fh:
        fh.write(_HEADER)
        for user, hist, target in zip(cases.users, cases.histories, cases.targets, strict=True):
            if len(hist) == 0:
                raise ValueError(f"user {user}: a case with an empty history cannot go to RecBole")
            fh.write(_row(int(user), hist, int(target), max_len))
