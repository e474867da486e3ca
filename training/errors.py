"""Errors raised by the training side (subclasses of :mod:`recstream.errors`)."""

from __future__ import annotations

from recstream.errors import BundleError, DataError, RecstreamError

__all__ = ["BundleError", "DataError", "TrainingError"]


class TrainingError(RecstreamError):
    """Training could not run or produced an unusable model (e.g. a failed parity check)."""
