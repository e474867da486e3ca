"""An atomically swappable reference to the serving object, with leases.

The stream reads the current recommender under a lease; a hot reload builds
the new one aside and calls :meth:`BundleHandle.swap`. Requests already
holding the old object finish on it; it is closed when its last lease ends.

    with handle.lease() as rec:          # rec stays valid (and unclosed) inside
        results = rec.recommend_batch(requests)
    handle.swap(new_rec)                 # new leases get new_rec at once
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from inference.errors import InferenceError

log = logging.getLogger(__name__)


class Closeable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closeable)


class _Slot(Generic[T]):
    __slots__ = ("leases", "obj", "retired")

    def __init__(self, obj: T) -> None:
        self.obj = obj
        self.leases = 0
        self.retired = False


class BundleHandle(Generic[T]):
    """Holds one serving object; thread-safe swap and lease (a lock held for O(1) work)."""

    def __init__(self, obj: T | None = None) -> None:
        self._lock = threading.Lock()
        self._slot: _Slot[T] | None = _Slot(obj) if obj is not None else None

    @property
    def current(self) -> T | None:
        """The object new leases get (peek only: it may be closed after a swap)."""
        slot = self._slot
        return slot.obj if slot is not None else None

    @contextmanager
    def lease(self) -> Iterator[T]:
        """Borrow the current object; it is not closed before the block ends."""
        with self._lock:
            slot = self._slot
            if slot is None:
                raise InferenceError("no bundle loaded yet: swap() one in before serving")
            slot.leases += 1
        try:
            yield slot.obj
        finally:
            with self._lock:
                slot.leases -= 1
                close_now = slot.retired and slot.leases == 0
            if close_now:
                self._close(slot.obj)

    def swap(self, new: T) -> T | None:
        """Make ``new`` current; the previous object is closed once unleased. Returns it."""
        with self._lock:
            old, self._slot = self._slot, _Slot(new)
            if old is None:
                return None
            old.retired = True
            close_now = old.leases == 0
        if close_now:
            self._close(old.obj)
        return old.obj

    def close(self) -> None:
        """Retire the current object (closed now or when its last lease ends)."""
        with self._lock:
            old, self._slot = self._slot, None
            if old is None:
                return
            old.retired = True
            close_now = old.leases == 0
        if close_now:
            self._close(old.obj)

    @staticmethod
    def _close(obj: Closeable) -> None:
        try:
            obj.close()
        except Exception:  # a failing close must not break the request that ended the lease
            log.exception("closing retired serving object %r failed", obj)
