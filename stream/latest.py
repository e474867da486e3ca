"""The latest recommendation this worker emitted per user, for ``/users/{id}/recommendations``.

Bounded (least recently answered users are forgotten first) and kept as the
record's value bytes exactly as produced to the ``recommendations`` topic, so the
endpoint serves what the user's apps received, without re-encoding.
"""

from __future__ import annotations

from collections import OrderedDict

LATEST_RECS_MAX = 100_000


class LatestRecommendations:
    def __init__(self, max_users: int = LATEST_RECS_MAX) -> None:
        self.max_users = max_users
        self._by_user: OrderedDict[str, bytes] = OrderedDict()

    def remember(self, user_id: str, value: bytes) -> None:
        self._by_user[user_id] = value
        self._by_user.move_to_end(user_id)
        while len(self._by_user) > self.max_users:
            self._by_user.popitem(last=False)

    def get(self, user_id: str) -> bytes | None:
        return self._by_user.get(user_id)

    def __len__(self) -> int:
        return len(self._by_user)
