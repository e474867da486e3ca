"""Serving core: bundle loading, ONNX encoders, FAISS index, fusion. Never imports torch.

Names are imported on first use, so ``import inference.cli`` (and ``recstream
--help``) does not pay for numpy, onnxruntime or faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.bundle import Bundle, load_bundle
    from inference.recommender import OnnxRecommender, load_recommender
    from inference.settings import InferenceSettings
    from inference.types import Recommender, Request, Result, ScoredItem

_EXPORTS = {
    "Bundle": "inference.bundle",
    "InferenceSettings": "inference.settings",
    "OnnxRecommender": "inference.recommender",
    "Recommender": "inference.types",
    "Request": "inference.types",
    "Result": "inference.types",
    "ScoredItem": "inference.types",
    "load_bundle": "inference.bundle",
    "load_recommender": "inference.recommender",
}

__all__ = [
    "Bundle",
    "InferenceSettings",
    "OnnxRecommender",
    "Recommender",
    "Request",
    "Result",
    "ScoredItem",
    "load_bundle",
    "load_recommender",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
