"""The RecBole peers get exactly our cases, each list cut to its most recent ``max_len`` items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.recbole_files import write_benchmark_files
from training.split import EvalCases, Split


def _rows(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()[1:]]


def test_lists_keep_the_most_recent_max_len_items(tmp_path: Path) -> None:
    seq = np.arange(10, 20, dtype=np.int32)  # one user, ten items
    split = Split(
        train_sequences=[seq[:-2]],
        valid=EvalCases(np.array([0], np.int32), [seq[:-2]], np.array([seq[-2]], np.int32)),
        test=EvalCases(np.array([0], np.int32), [seq[:-1]], np.array([seq[-1]], np.int32)),
        cold_items=np.empty(0, np.int32),
    )
    d = write_benchmark_files(split, tmp_path, "b", max_len=3)
    train = _rows(d / "b.train.inter")
    assert [r[2] for r in train] == [str(i) for i in range(11, 18)]  # every prefix -> next
    assert train[-1][1] == "14 15 16"  # newest three, oldest first
    assert train[0][1] == "10"
    assert _rows(d / "b.test.inter") == [["0", "16 17 18", "19"]]
    wide = write_benchmark_files(split, tmp_path / "w", "b", max_len=100)
    assert _rows(wide / "b.test.inter")[0][1] == " ".join(map(str, range(10, 19)))
    # the scoring side reads the full histories, whatever the lists' cut
    npz = np.load(tmp_path / "cases.npz")
    assert npz["test_hist"].tolist() == list(range(10, 19))
