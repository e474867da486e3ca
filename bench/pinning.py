"""CPU pinning for benchmarks: a process (every thread of it) kept on chosen cores.

On a 2-core machine the worker, the broker and the load generator otherwise fight
for both cores, and a latency figure then measures the scheduler more than the
worker (bench/RESULTS.md, "floor investigation"). ``bench/latency.py --pin`` puts
the benchmark and the broker it starts on one core and the worker alone on the
other; what remains is the worker's own cost.

Linux affinity is per thread and a new thread inherits its creator's, so a process
is pinned by setting every task under ``/proc/PID/task``; :class:`Pinner` repeats
that every ``interval`` seconds while the process runs, which also catches threads
created before the first pass (NOTES.md, "Measured in round 2's planning").
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def parse_cpus(text: str) -> frozenset[int]:
    """``"0"``, ``"1,3"`` or ``"2-5"`` → a set of CPU numbers (checked against this machine)."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise ValueError(f"CPUs {sorted(cpus)} are not a subset of this process's {sorted(usable)}")
    return frozenset(cpus)


def tasks(pid: int) -> list[int]:
    """Thread ids of ``pid`` (empty once it has exited)."""
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


def pin_process(pid: int, cpus: frozenset[int]) -> int:
    """Put every thread of ``pid`` on ``cpus``; returns how many had to be moved."""
    moved = 0
    for tid in tasks(pid):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            if os.sched_getaffinity(tid) != cpus:
                os.sched_setaffinity(tid, cpus)
                moved += 1
    return moved


@contextlib.contextmanager
def spawning_on(cpus: frozenset[int]) -> Iterator[None]:
    """Run the block (a ``Popen``) with the calling thread on ``cpus``, so the child
    starts there; the thread's own affinity is restored after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Pinner:
    """Keeps a process's threads on ``cpus`` until :meth:`stop` (a daemon thread).

    ``moved`` counts threads found elsewhere and moved back: a few right after the
    process starts, then none, unless something in it sets its own affinity.
    """

    def __init__(self, pid: int, cpus: frozenset[int], interval: float = 0.5) -> None:
        self.pid = pid
        self.cpus = cpus
        self.interval = interval
        self.moved = pin_process(pid, cpus)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pin-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.moved += pin_process(self.pid, self.cpus)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> bool:
        """True if every thread of the process is on ``cpus`` right now."""
        cpus = self.cpus
        ok = True
        for tid in tasks(self.pid):
            with contextlib.suppress(OSError):
                ok = ok and os.sched_getaffinity(tid) == cpus
        return ok
