"""Worker model loaders for tests, named by ``RECSTREAM_WORKER_LOADER`` (the worker's
working directory is the repository root, so ``tests.`` imports)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from inference.recommender import OnnxRecommender
from inference.settings import InferenceSettings
from inference.types import Recommender


def default_loader(path: Path) -> Recommender:
    """The serving core, with settings from this worker's environment (this is its edge)."""
    return OnnxRecommender.load(path, InferenceSettings())


def slow(path: Path) -> Recommender:
    """The real bundle, loaded after ``RECSTREAM_TEST_LOAD_DELAY_S`` (as on a busy machine)."""
    time.sleep(float(os.environ.get("RECSTREAM_TEST_LOAD_DELAY_S", "4")))
    return default_loader(path)


class _Broken:
    """The real recommender, but its results are malformed: a bug in the serving core."""

    def __init__(self, inner: Recommender) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def recommend_batch(self, requests: Sequence[Any]) -> list[Any]:
        return [replace(r, items=None) for r in self._inner.recommend_batch(requests)]


def broken(path: Path) -> Recommender:
    """Loads and verifies the bundle, then answers with results the worker cannot emit."""
    return _Broken(default_loader(path))  # type: ignore[return-value]
