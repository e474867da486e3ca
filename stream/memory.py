"""This process's resident memory, for ``recstream_model_memory_bytes``.

What a bundle holds is measured as the growth of the process's resident set
while it loads (in the loading thread), after glibc has been asked to give its
free pages back (``malloc_trim``), so memory freed by an earlier bundle is not
silently reused and counted as zero. It is an estimate: the event loop keeps
serving meanwhile and allocates a little too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

__all__ = ["resident_bytes", "trim"]


def resident_bytes() -> int:
    """Resident set size in bytes (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def trim() -> None:
    """Return free heap pages to the kernel (glibc only; a no-op elsewhere)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
