"""Which users see the canary: a stable salted hash of ``user_id``.

A user's **point** is a number in [0, 1) computed from the salt and the user id
alone, so every worker, every restart and any other program agrees on it:

    digest = SHA-256( UTF-8(salt) || 0x00 || UTF-8(user_id) )
    point  = (first 8 bytes of digest, as an unsigned big-endian integer) / 2**64

A user is in the ``canary`` bucket when ``point < canary_share``, else in
``control``. Raising the share only moves control users into the canary (the
users already in it stay); a new salt reshuffles everyone. Python::

    d = hashlib.sha256(salt.encode() + b"\\0" + user_id.encode()).digest()
    point = int.from_bytes(d[:8], "big") / 2**64

``control`` is served by the bundle the ``CURRENT`` pointer names, ``canary`` by
the one ``CANDIDATE`` names (``stream.rollout``); with no canary bundle serving,
everyone is in ``control`` whatever their point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Literal

from inference.types import Recommender

__all__ = ["CANARY", "CONTROL", "Bucket", "Buckets", "Canary", "bucket_point"]

Bucket = Literal["control", "canary"]
CONTROL: Final = "control"
CANARY: Final = "canary"
_SCALE = float(2**64)


def bucket_point(salt: str, user_id: str) -> float:
    """The user's point in [0, 1) (see the module docstring; other languages reproduce it)."""
    digest = hashlib.sha256(salt.encode() + b"\0" + user_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


class Buckets:
    """Assigns users to ``control`` or ``canary`` by their point and the canary's share."""

    def __init__(self, salt: str, canary_share: float) -> None:
        if not 0.0 <= canary_share <= 1.0:
            raise ValueError(f"canary_share must be in [0, 1], got {canary_share}")
        self.salt = salt
        self.canary_share = canary_share
        self._prefix = hashlib.sha256(salt.encode() + b"\0")  # copied per user: salt hashed once

    def of(self, user_id: str) -> Bucket:
        h = self._prefix.copy()
        h.update(user_id.encode())
        point = int.from_bytes(h.digest()[:8], "big") / _SCALE
        return CANARY if point < self.canary_share else CONTROL


@dataclass(frozen=True, slots=True)
class Canary:
    """The canary of one batch: its recommender and who gets it (taken once per batch)."""

    recommender: Recommender
    buckets: Buckets
