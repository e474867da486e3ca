"""Bucket assignment: stable across processes, faithful to the documented hash, on share."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from stream.buckets import CANARY, CONTROL, Buckets, bucket_point

N_USERS = 100_000


def documented_point(salt: str, user_id: str) -> float:
    """The formula as docs/architecture.md writes it, independently of the module."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], byteorder="big", signed=False) / 2.0**64


def test_points_follow_the_documented_formula() -> None:
    for user in ("u1", "42", "ünïcode-user", "x" * 256):
        assert bucket_point("s", user) == documented_point("s", user)
    # the salt matters; the separator keeps ("ab", "c") apart from ("a", "bc")
    assert bucket_point("s1", "u1") != bucket_point("s2", "u1")
    assert bucket_point("ab", "c") != bucket_point("a", "bc")


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5, 0.9])
def test_shares_within_one_percent_on_100k_users(share: float) -> None:
    buckets = Buckets("recstream", share)
    canary = sum(buckets.of(f"user-{i}") == CANARY for i in range(N_USERS))
    assert abs(canary / N_USERS - share) < 0.01, canary / N_USERS


def test_no_share_and_full_share() -> None:
    users = [str(i) for i in range(2000)]
    assert {Buckets("s", 0.0).of(u) for u in users} == {CONTROL}
    assert {Buckets("s", 1.0).of(u) for u in users} == {CANARY}
    with pytest.raises(ValueError, match="canary_share"):
        Buckets("s", 1.5)


def test_raising_the_share_only_moves_control_users_into_the_canary() -> None:
    users = [f"u{i}" for i in range(20_000)]
    small = {u for u in users if Buckets("s", 0.1).of(u) == CANARY}
    large = {u for u in users if Buckets("s", 0.3).of(u) == CANARY}
    assert small < large


_CHILD = """
import json, sys
from stream.buckets import Buckets
b = Buckets(sys.argv[1], float(sys.argv[2]))
print(json.dumps([b.of(f"user-{i}") for i in range(int(sys.argv[3]))]))
"""


def test_assignment_is_the_same_in_other_processes_and_hash_seeds() -> None:
    """A restarted worker, or another worker, puts every user in the same bucket
    (nothing depends on Python's per-process string hash)."""
    here = [Buckets("salt-x", 0.5).of(f"user-{i}") for i in range(5000)]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, "salt-x", "0.5", "5000"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(out.stdout) == here
    # and the buckets are not all one value (the comparison above could not fail otherwise)
    counts = np.unique(here, return_counts=True)[1]
    assert len(counts) == 2 and counts.min() > 2000
